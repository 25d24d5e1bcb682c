#pragma once
// Many-to-one matching by GT copies (paper Sec. 3.4, Eq. 8): the one-to-one assignment problem
// against k copies of every ground truth gives each GT k distinct queries. Pure C++.

#include <cstdint>
#include <vector>

namespace aligndetr::matching {

// Copies per GT for an image with `queries` queries and `gts` GT boxes: at most half the queries
// are matched, and never fewer than one copy (the released code could reach 0 and fail).
int64_t effective_k(int64_t queries, int64_t gts, int64_t k);

// (query, GT) pairs sorted by GT, each GT's queries contiguous and in increasing query order.
struct GroupedPairs {
  std::vector<int64_t> query;
  std::vector<int64_t> gt;
  int64_t k = 1;  // copies used (effective_k)
};

// Matches a queries x gts cost matrix (row-major) with effective_k(queries, gts, k) copies of
// every GT column.
GroupedPairs match_with_copies(const double* cost, int64_t queries, int64_t gts, int64_t k);

}  // namespace aligndetr::matching
