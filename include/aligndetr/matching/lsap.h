#pragma once
// Rectangular linear sum assignment (the problem scipy.optimize.linear_sum_assignment solves),
// without LibTorch so that it builds and tests anywhere.

#include <cstdint>
#include <vector>

namespace aligndetr::matching {

// A minimum-cost matching of min(rows, cols) pairs, sorted by row.
struct Assignment {
  std::vector<int64_t> rows;
  std::vector<int64_t> cols;
};

// Exact minimum-cost assignment of a rows x cols matrix (row-major), by shortest augmenting paths
// with dual potentials (Jonker-Volgenant style). Every row is matched when rows <= cols, every
// column otherwise. +inf marks a forbidden pair. Throws std::invalid_argument on NaN or -inf
// entries and when no complete assignment avoids the forbidden pairs. Deterministic: among
// equally cheap assignments the choice depends only on the matrix (a fixed scan order, no
// randomness, no threads), so it is the same every run.
Assignment linear_sum_assignment(const double* cost, int64_t rows, int64_t cols);
Assignment linear_sum_assignment(const std::vector<double>& cost, int64_t rows, int64_t cols);

}  // namespace aligndetr::matching
