// Shortest augmenting path assignment (Jonker & Volgenant 1987; the rectangular form of
// Crouse 2016, "On implementing 2D rectangular assignment algorithms"). Each row in turn is
// joined to the matching by a Dijkstra search over reduced costs c[i][j] - u[i] - v[j]; the dual
// potentials u, v keep the reduced costs non-negative, so every search is exact.

#include "aligndetr/matching/lsap.h"

#include <algorithm>
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

  // `finite`: no +inf entries, so the cheap reduction below is safe to run first.
  std::vector<int64_t> solve(bool finite) {
    if (finite && nc_ >= 2) reduce_rows();
    for (int64_t row = 0; row < nr_; ++row) {
      if (col4row_[row] < 0) augment(row);
    }
    return col4row_;
  }

 private:
  // Augmenting row reduction (Jonker & Volgenant, Sec. 4.2): a free row takes the column of its
  // smallest reduced cost c - v, lowering that column's v by the gap to its second smallest so
  // the column stays its best choice; the evicted owner, if any, is reassigned next. Most rows of
  // a random matrix end up assigned this way, and only the rest need a shortest-path search.
  // Invariant: every assigned row's column minimizes its c - v. Square problems start from the
  // column minima; rectangular ones from v = 0, because an unmatched column must keep v = 0 and
  // v only ever decreases on assigned columns here.
  void reduce_rows() {
    if (nr_ == nc_) {
      std::fill(v_.begin(), v_.end(), kInf);
      for (int64_t i = 0; i < nr_; ++i) {
        const double* row = c_ + i * nc_;
        for (int64_t j = 0; j < nc_; ++j) v_[j] = std::min(v_[j], row[j]);
      }
    }
    std::vector<int64_t> free_rows(nr_);
    std::iota(free_rows.begin(), free_rows.end(), 0);
    for (int pass = 0; pass < 2 && !free_rows.empty(); ++pass) {
      std::vector<int64_t> next;
      // Bounds the chains of evictions; rows left over go to the exact search.
      int64_t budget = 4 * nc_;
      for (size_t k = 0; k < free_rows.size(); ++k) {
        const int64_t i = free_rows[k];
        const double* row = c_ + i * nc_;
        double u1 = kInf, u2 = kInf;
        int64_t j1 = -1, j2 = -1;
        for (int64_t j = 0; j < nc_; ++j) {
          const double h = row[j] - v_[j];
          if (h < u2) {
            if (h < u1) {
              u2 = u1;
              j2 = j1;
              u1 = h;
              j1 = j;
            } else {
              u2 = h;
              j2 = j;
            }
          }
        }
        const bool strict = u1 < u2;
        if (strict) {
          v_[j1] -= u2 - u1;
        } else if (row4col_[j1] >= 0) {
          j1 = j2;  // a tie: prefer taking a free column, or at least one not just taken
        }
        const int64_t evicted = row4col_[j1];
        row4col_[j1] = i;
        col4row_[i] = j1;
        if (evicted >= 0) {
          col4row_[evicted] = -1;
          if (strict && budget-- > 0) {
            free_rows[k--] = evicted;  // reassign it right away
          } else {
            next.push_back(evicted);
          }
        }
      }
      free_rows.swap(next);
    }
    for (int64_t i = 0; i < nr_; ++i) {
      if (col4row_[i] >= 0) u_[i] = c_[i * nc_ + col4row_[i]] - v_[col4row_[i]];
    }
  }

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

// Returns whether every entry is finite (none is +inf).
bool check_entries(const double* cost, int64_t n) {
  bool finite = true;
  for (int64_t k = 0; k < n; ++k) {
    const double x = cost[k];
    if (std::isnan(x) || x == -kInf) {
      throw std::invalid_argument("linear_sum_assignment: cost matrix entry " + std::to_string(k) +
                                  " is " + (std::isnan(x) ? "NaN" : "-inf") +
                                  " (only finite values and +inf for forbidden pairs are allowed)");
    }
    finite = finite && x != kInf;
  }
  return finite;
}

}  // namespace

Assignment linear_sum_assignment(const double* cost, int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0) {
    throw std::invalid_argument("linear_sum_assignment: negative matrix size");
  }
  Assignment out;
  if (rows == 0 || cols == 0) return out;
  const bool finite = check_entries(cost, rows * cols);

  // The solver matches every row, so a tall matrix is solved as its transpose.
  const bool transpose = rows > cols;
  std::vector<double> transposed;
  if (transpose) {
    transposed.resize(static_cast<size_t>(rows * cols));
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < cols; ++j) transposed[j * rows + i] = cost[i * cols + j];
    }
  }
  const std::vector<int64_t> match = transpose ? Solver(transposed.data(), cols, rows).solve(finite)
                                               : Solver(cost, rows, cols).solve(finite);

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
