#pragma once
// Prime-sample weighting (paper Sec. 3.4, Eq. 6-7).

#include <torch/types.h>

namespace aligndetr::loss {

// 0-based rank of each entry by quality, descending, within its group (entries with the same
// group id, e.g. the k queries matched to one GT). Equal qualities are ranked by position in the
// input: the matcher lists a group's queries in increasing query order, so the lower query index
// gets the better rank. quality and group are 1-D of equal length; returns int64 on their device.
torch::Tensor prime_ranks(const torch::Tensor& quality, const torch::Tensor& group);

// w = exp(-rank / tau): the best query of a group keeps weight 1.
torch::Tensor prime_weights(const torch::Tensor& quality, const torch::Tensor& group, double tau);

}  // namespace aligndetr::loss
