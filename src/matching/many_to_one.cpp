// Many-to-one matching of the paper's Eq. 8: L = sum_{l<L} L_m2o(P_l, G') + L_o2o(P_L, G), where
// G' holds k copies of every ground truth. Solving the one-to-one problem against G' (the cost
// matrix tiled k times side by side) keeps the assignment globally optimal and gives every GT k
// distinct queries.

#include "aligndetr/matching/many_to_one.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

#include "aligndetr/matching/lsap.h"

namespace aligndetr::matching {

int64_t effective_k(int64_t queries, int64_t gts, int64_t k) {
  if (k < 1) throw std::invalid_argument("many-to-one matching: k must be >= 1");
  if (gts == 0) return k;
  return std::max<int64_t>(1, std::min(k, queries / (2 * gts)));
}

GroupedPairs match_with_copies(const double* cost, int64_t queries, int64_t gts, int64_t k) {
  GroupedPairs out;
  out.k = effective_k(queries, gts, k);
  if (gts == 0 || queries == 0) return out;
  const int64_t cols = gts * out.k;
  std::vector<double> tiled(static_cast<size_t>(queries * cols));
  for (int64_t q = 0; q < queries; ++q) {
    for (int64_t c = 0; c < out.k; ++c) {
      std::copy(cost + q * gts, cost + (q + 1) * gts, tiled.begin() + q * cols + c * gts);
    }
  }
  const Assignment a = linear_sum_assignment(tiled.data(), queries, cols);
  // a is sorted by query; a stable sort by GT keeps increasing query order within each group.
  std::vector<size_t> order(a.rows.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t x, size_t y) { return a.cols[x] % gts < a.cols[y] % gts; });
  out.query.reserve(order.size());
  out.gt.reserve(order.size());
  for (size_t idx : order) {
    out.query.push_back(a.rows[idx]);
    out.gt.push_back(a.cols[idx] % gts);
  }
  return out;
}

}  // namespace aligndetr::matching
