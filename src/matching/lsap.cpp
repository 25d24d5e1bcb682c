// Shortest augmenting path assignment (Jonker & Volgenant 1987; the rectangular form of
// Crouse 2016, "On implementing 2D rectangular assignment algorithms"). Each row in turn is
// joined to the matching by a Dijkstra search over reduced costs c[i][j] - u[i] - v[j]; the dual
// potentials u, v keep the reduced costs non-negative, so every search is exact.

#include "aligndetr/matching/lsap.h"

#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

namespace aligndetr::matching {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Solves a rows <= cols problem; returns the column of each row.
class Solver {
 public:
  Solver(const double* cost, int64_t rows, int64_t cols)
      : c_(cost),
        nr_(rows),
        nc_(cols),
        u_(rows, 0.0),
        v_(cols, 0.0),
        shortest_(cols, kInf),
        path_(cols, -1),
        col4row_(rows, -1),
        row4col_(cols, -1),
        remaining_(cols) {
    visited_rows_.reserve(rows);
    visited_cols_.reserve(cols);
  }

  std::vector<int64_t> solve() {
    for (int64_t row = 0; row < nr_; ++row) augment(row);
    return col4row_;
  }

 private:
  // Dijkstra from a free row until it reaches a free column, then flips the path.
  void augment(int64_t start) {
    int64_t n_remaining = nc_;
    // Columns are scanned from the last one down so that ties resolve the same way every run.
    for (int64_t k = 0; k < nc_; ++k) remaining_[k] = nc_ - 1 - k;
    std::fill(shortest_.begin(), shortest_.end(), kInf);
    visited_rows_.clear();
    visited_cols_.clear();

    double min_val = 0;
    int64_t i = start;
    int64_t sink = -1;
    while (sink < 0) {
      visited_rows_.push_back(i);
      const double* row = c_ + i * nc_;
      const double base = min_val - u_[i];
      double lowest = kInf;
      int64_t best = -1;
      for (int64_t k = 0; k < n_remaining; ++k) {
        const int64_t j = remaining_[k];
        const double r = base + row[j] - v_[j];
        if (r < shortest_[j]) {
          path_[j] = i;
          shortest_[j] = r;
        }
        // Among equally short paths a free column ends the search soonest.
        if (shortest_[j] < lowest || (shortest_[j] == lowest && row4col_[j] < 0)) {
          lowest = shortest_[j];
          best = k;
        }
      }
      if (lowest == kInf) {
        throw std::invalid_argument(
            "linear_sum_assignment: cost matrix is infeasible (the +inf entries leave no "
            "complete assignment)");
      }
      min_val = lowest;
      const int64_t j = remaining_[best];
      if (row4col_[j] < 0) {
        sink = j;
      } else {
        i = row4col_[j];
      }
      visited_cols_.push_back(j);
      remaining_[best] = remaining_[--n_remaining];
    }

    // Dual update keeps the reduced costs of matched pairs at zero and all others >= 0.
    u_[start] += min_val;
    for (int64_t r : visited_rows_) {
      if (r != start) u_[r] += min_val - shortest_[col4row_[r]];
    }
    for (int64_t j : visited_cols_) v_[j] -= min_val - shortest_[j];

    for (int64_t j = sink;;) {
      const int64_t r = path_[j];
      row4col_[j] = r;
      std::swap(col4row_[r], j);
      if (r == start) break;
    }
  }

  const double* c_;
  int64_t nr_, nc_;
  std::vector<double> u_, v_, shortest_;
  std::vector<int64_t> path_, col4row_, row4col_, remaining_;
  std::vector<int64_t> visited_rows_, visited_cols_;
};

void check_entries(const double* cost, int64_t n) {
  for (int64_t k = 0; k < n; ++k) {
    const double x = cost[k];
    if (std::isnan(x) || x == -kInf) {
      throw std::invalid_argument("linear_sum_assignment: cost matrix entry " + std::to_string(k) +
                                  " is " + (std::isnan(x) ? "NaN" : "-inf") +
                                  " (only finite values and +inf for forbidden pairs are allowed)");
    }
  }
}

}  // namespace

Assignment linear_sum_assignment(const double* cost, int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0) {
    throw std::invalid_argument("linear_sum_assignment: negative matrix size");
  }
  Assignment out;
  if (rows == 0 || cols == 0) return out;
  check_entries(cost, rows * cols);

  // The solver matches every row, so a tall matrix is solved as its transpose.
  const bool transpose = rows > cols;
  std::vector<double> transposed;
  if (transpose) {
    transposed.resize(static_cast<size_t>(rows * cols));
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < cols; ++j) transposed[j * rows + i] = cost[i * cols + j];
    }
  }
  const std::vector<int64_t> match =
      transpose ? Solver(transposed.data(), cols, rows).solve() : Solver(cost, rows, cols).solve();

  const int64_t n = static_cast<int64_t>(match.size());
  out.rows.resize(n);
  out.cols.resize(n);
  if (!transpose) {
    std::iota(out.rows.begin(), out.rows.end(), 0);
    out.cols = match;
    return out;
  }
  // match[j] is the row of column j; report the pairs sorted by row.
  std::vector<int64_t> col_of_row(rows, -1);
  for (int64_t j = 0; j < n; ++j) col_of_row[match[j]] = j;
  int64_t k = 0;
  for (int64_t i = 0; i < rows; ++i) {
    if (col_of_row[i] >= 0) {
      out.rows[k] = i;
      out.cols[k] = col_of_row[i];
      ++k;
    }
  }
  return out;
}

Assignment linear_sum_assignment(const std::vector<double>& cost, int64_t rows, int64_t cols) {
  if (static_cast<int64_t>(cost.size()) != rows * cols) {
    throw std::invalid_argument("linear_sum_assignment: " + std::to_string(cost.size()) +
                                " entries for a " + std::to_string(rows) + "x" +
                                std::to_string(cols) + " matrix");
  }
  return linear_sum_assignment(cost.data(), rows, cols);
}

}  // namespace aligndetr::matching
