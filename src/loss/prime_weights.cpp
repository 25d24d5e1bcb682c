// Prime-sample weighting, paper Eq. 6-7: among the k queries matched to one GT, the one of rank r
// (by the quality t of Eq. 4) gets w = exp(-r / tau); w scales its soft class target (Eq. 6) and
// its regression losses (Eq. 7), so secondary matches still count, but less.

#include "aligndetr/loss/prime_weights.h"

#include <torch/torch.h>

#include <algorithm>
#include <numeric>
#include <vector>

namespace aligndetr::loss {

torch::Tensor prime_ranks(const torch::Tensor& quality, const torch::Tensor& group) {
  TORCH_CHECK(quality.dim() == 1 && group.dim() == 1 && quality.numel() == group.numel(),
              "prime_ranks: expected two 1-D tensors of equal length, got ", quality.sizes(),
              " and ", group.sizes());
  const auto q = quality.detach().to(torch::kCPU, torch::kDouble).contiguous();
  const auto g = group.to(torch::kCPU, torch::kLong).contiguous();
  const double* qv = q.data_ptr<double>();
  const int64_t* gv = g.data_ptr<int64_t>();
  const int64_t n = q.numel();
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  // Stable: equal (group, quality) keep their input order.
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return gv[a] != gv[b] ? gv[a] < gv[b] : qv[a] > qv[b];
  });
  auto ranks = torch::empty({n}, torch::kLong);
  int64_t* rv = ranks.data_ptr<int64_t>();
  for (int64_t k = 0; k < n; ++k) {
    const bool same_group = k > 0 && gv[order[k]] == gv[order[k - 1]];
    rv[order[k]] = same_group ? rv[order[k - 1]] + 1 : 0;
  }
  return ranks.to(quality.device());
}

torch::Tensor prime_weights(const torch::Tensor& quality, const torch::Tensor& group, double tau) {
  const auto ranks = prime_ranks(quality, group).to(quality.scalar_type());
  return (-ranks / tau).exp();
}

}  // namespace aligndetr::loss
