#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

#include "aligndetr/matching/lsap.h"

namespace aligndetr::matching {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

double total(const std::vector<double>& c, int64_t cols, const Assignment& a) {
  double s = 0;
  for (size_t k = 0; k < a.rows.size(); ++k) s += c[a.rows[k] * cols + a.cols[k]];
  return s;
}

// Every row (or column, when tall) used once, pairs sorted by row, indices in range.
void expect_valid(const Assignment& a, int64_t rows, int64_t cols) {
  ASSERT_EQ(a.rows.size(), static_cast<size_t>(std::min(rows, cols)));
  ASSERT_EQ(a.cols.size(), a.rows.size());
  std::vector<int> row_used(rows, 0), col_used(cols, 0);
  for (size_t k = 0; k < a.rows.size(); ++k) {
    ASSERT_GE(a.rows[k], 0);
    ASSERT_LT(a.rows[k], rows);
    ASSERT_GE(a.cols[k], 0);
    ASSERT_LT(a.cols[k], cols);
    EXPECT_EQ(row_used[a.rows[k]]++, 0);
    EXPECT_EQ(col_used[a.cols[k]]++, 0);
    if (k > 0) {
      EXPECT_LT(a.rows[k - 1], a.rows[k]);
    }
  }
}

// Minimum over all injective maps of the shorter side into the longer one.
double brute_force(const std::vector<double>& c, int64_t rows, int64_t cols) {
  const bool tall = rows > cols;
  const int64_t n = tall ? cols : rows, m = tall ? rows : cols;
  std::vector<int64_t> perm(m);
  std::iota(perm.begin(), perm.end(), 0);
  double best = kInf;
  // Permutations of m items, only the first n positions matter; duplicates are harmless.
  do {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += tall ? c[perm[i] * cols + i] : c[i * cols + perm[i]];
    best = std::min(best, s);
  } while (std::next_permutation(perm.begin(), perm.end()));
  return best;
}

TEST(Lsap, HandSquare) {
  // Optimum 5 = 1 (0,1) + 2 (1,0) + 2 (2,2); the greedy row minima would collide on column 1.
  const std::vector<double> c = {4, 1, 3, 2, 0, 5, 3, 2, 2};
  const Assignment a = linear_sum_assignment(c, 3, 3);
  expect_valid(a, 3, 3);
  EXPECT_EQ(a.cols, (std::vector<int64_t>{1, 0, 2}));
  EXPECT_DOUBLE_EQ(total(c, 3, a), 5.0);
}

TEST(Lsap, HandWideAndTall) {
  // Wide: row 0 takes column 2 (cost 1), row 1 column 0 (cost 2).
  const std::vector<double> wide = {5, 9, 1, 7, 2, 8, 3, 9};
  Assignment a = linear_sum_assignment(wide, 2, 4);
  expect_valid(a, 2, 4);
  EXPECT_EQ(a.rows, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(a.cols, (std::vector<int64_t>{2, 0}));
  // Tall (the transpose): column 0 takes row 2 and column 1 row 0, reported sorted by row.
  std::vector<double> tall(8);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 2; ++j) tall[i * 2 + j] = wide[j * 4 + i];
  a = linear_sum_assignment(tall, 4, 2);
  expect_valid(a, 4, 2);
  EXPECT_EQ(a.rows, (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(a.cols, (std::vector<int64_t>{1, 0}));
}

TEST(Lsap, NegativeCostsAndForbiddenPairs) {
  const std::vector<double> c = {-1, kInf, -3, kInf, 2, -7};
  const Assignment a = linear_sum_assignment(c, 2, 3);
  expect_valid(a, 2, 3);
  // Row 1 can only use columns 1 and 2; the best is row 0 -> 0 (-1) plus row 1 -> 2 (-7).
  EXPECT_EQ(a.cols, (std::vector<int64_t>{0, 2}));
}

TEST(Lsap, ConstantMatrixIsDeterministic) {
  const std::vector<double> c(16, 1.0);
  const Assignment first = linear_sum_assignment(c, 4, 4);
  expect_valid(first, 4, 4);
  for (int rep = 0; rep < 3; ++rep) EXPECT_EQ(linear_sum_assignment(c, 4, 4).cols, first.cols);
}

TEST(Lsap, EmptyMatrices) {
  EXPECT_TRUE(linear_sum_assignment(std::vector<double>{}, 0, 5).rows.empty());
  EXPECT_TRUE(linear_sum_assignment(std::vector<double>{}, 5, 0).rows.empty());
}

TEST(Lsap, RejectsInvalidEntries) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(linear_sum_assignment(std::vector<double>{1, nan, 2, 3}, 2, 2),
               std::invalid_argument);
  EXPECT_THROW(linear_sum_assignment(std::vector<double>{1, -kInf, 2, 3}, 2, 2),
               std::invalid_argument);
  // Both rows can only use column 0: no complete assignment.
  EXPECT_THROW(linear_sum_assignment(std::vector<double>{1, kInf, 2, kInf}, 2, 2),
               std::invalid_argument);
  EXPECT_THROW(linear_sum_assignment(std::vector<double>{1, 2, 3}, 2, 2), std::invalid_argument);
  try {
    linear_sum_assignment(std::vector<double>{1, nan, 2, 3}, 2, 2);
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("NaN"), std::string::npos) << e.what();
  }
}

TEST(Lsap, MatchesBruteForceOnRandomMatrices) {
  std::mt19937_64 rng(1234);
  std::uniform_real_distribution<double> real(-1.0, 1.0);
  std::uniform_int_distribution<int> small_int(0, 3);  // many ties
  int checked = 0;
  for (int rows = 1; rows <= 6; ++rows) {
    for (int cols = 1; cols <= 6; ++cols) {
      if (std::max(rows, cols) > 6) continue;
      for (int trial = 0; trial < 40; ++trial) {
        std::vector<double> c(rows * cols);
        const bool ties = trial % 2 == 1;
        for (double& x : c) x = ties ? small_int(rng) : real(rng);
        const Assignment a = linear_sum_assignment(c, rows, cols);
        expect_valid(a, rows, cols);
        EXPECT_NEAR(total(c, cols, a), brute_force(c, rows, cols), 1e-12)
            << rows << "x" << cols << " trial " << trial;
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, 36 * 40);
}

TEST(Lsap, TiledColumnsLikeManyToOneMatching) {
  // 7 rows, 2 columns tiled 3 times: each original column gets 3 distinct rows.
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> real(0.0, 1.0);
  std::vector<double> base(7 * 2), tiled(7 * 6);
  for (double& x : base) x = real(rng);
  for (int i = 0; i < 7; ++i)
    for (int j = 0; j < 6; ++j) tiled[i * 6 + j] = base[i * 2 + j % 2];
  const Assignment a = linear_sum_assignment(tiled, 7, 6);
  expect_valid(a, 7, 6);
  EXPECT_NEAR(total(tiled, 6, a), brute_force(tiled, 7, 6), 1e-12);
}

// The shortest-path search alone (what runs when the matrix holds +inf entries) and the search
// after the row reduction must reach the same optimum. A line of +inf that no assignment needs
// switches the reduction off without changing the optimum.
TEST(Lsap, ReductionAgreesWithPlainSearchOnLargerMatrices) {
  std::mt19937_64 rng(99);
  std::uniform_real_distribution<double> real(0.0, 1.0);
  std::uniform_int_distribution<int> small_int(0, 4);
  struct Shape {
    int rows, cols;
    bool ties;
  };
  for (const Shape& shape : {Shape{40, 40, false}, Shape{60, 60, true}, Shape{30, 90, false},
                             Shape{90, 30, false}, Shape{25, 75, true}, Shape{75, 25, true}}) {
    for (int trial = 0; trial < 5; ++trial) {
      const int rows = shape.rows, cols = shape.cols;
      std::vector<double> c(rows * cols);
      for (double& x : c) x = shape.ties ? small_int(rng) : real(rng);
      const Assignment a = linear_sum_assignment(c, rows, cols);
      expect_valid(a, rows, cols);
      // Extend the longer side by one line of +inf.
      std::vector<double> ext;
      int ext_rows = rows, ext_cols = cols;
      if (rows <= cols) {
        ext_cols = cols + 1;
        for (int i = 0; i < rows; ++i) {
          ext.insert(ext.end(), c.begin() + i * cols, c.begin() + (i + 1) * cols);
          ext.push_back(kInf);
        }
      } else {
        ext_rows = rows + 1;
        ext = c;
        ext.insert(ext.end(), cols, kInf);
      }
      const Assignment b = linear_sum_assignment(ext, ext_rows, ext_cols);
      expect_valid(b, ext_rows, ext_cols);
      EXPECT_NEAR(total(c, cols, a), total(ext, ext_cols, b), 1e-9)
          << rows << "x" << cols << " trial " << trial;
    }
  }
}

TEST(Lsap, MatchesBruteForceOnDuplicatedColumnsAndRows) {
  // Tiled columns (many-to-one matching) and repeated rows make many exact ties.
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> real(0.0, 1.0);
  for (int trial = 0; trial < 50; ++trial) {
    const int rows = 3 + trial % 5, n = 1 + trial % 3, k = 2;
    std::vector<double> base(rows * n), c(rows * n * k);
    for (double& x : base) x = real(rng);
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < n * k; ++j) c[i * n * k + j] = base[(trial % 2 ? i % 2 : i) * n + j % n];
    const Assignment a = linear_sum_assignment(c, rows, n * k);
    expect_valid(a, rows, n * k);
    EXPECT_NEAR(total(c, n * k, a), brute_force(c, rows, n * k), 1e-12) << "trial " << trial;
  }
}

}  // namespace
}  // namespace aligndetr::matching
