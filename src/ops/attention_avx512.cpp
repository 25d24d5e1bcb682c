// The fused attention loops (attention_kernels.h) for AVX-512F. This file alone is compiled with
// -mavx512f, and ops::blocked_attention calls it only on a CPU that has AVX-512F.

#include <immintrin.h>
#include <math.h>

#include "attention_kernels.h"

namespace aligndetr::ops::attention_kernel {
namespace {

constexpr int64_t kLanes = 16;

// The first `left` lanes (all 16 from 16 on, none below 1).
__mmask16 lanes(int64_t left) {
  if (left <= 0) return 0;
  return left >= kLanes ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
}

// A tile of N rows as a type, so that a generic lambda can take it as a template argument.
template <int N>
struct Rows {
  static constexpr int value = N;
};

// tile(Rows<N>{}, first) for the last `left` rows if N == left, else the same for N - 1, ...
template <int N, typename Tile>
void last_tile(int64_t left, int64_t first, Tile& tile) {
  if constexpr (N >= 1) {
    if (left == N) return tile(Rows<N>{}, first);
    last_tile<N - 1>(left, first, tile);
  }
}

// tile(Rows<R>{}, first) over [0, n) in tiles of R rows, then one tile of the n % R rows left:
// each tile's accumulators are registers, so its height is a compile-time constant.
template <int R, typename Tile>
void by_tiles(int64_t n, Tile&& tile) {
  static_assert(R >= 1 && R <= 8, "tiles of 1 to 8 rows");
  int64_t first = 0;
  for (; first + R <= n; first += R) tile(Rows<R>{}, first);
  last_tile<R - 1>(n - first, first, tile);
}

// The lanes whose bool is true, of up to 16 bools (the rest false).
__mmask16 true_lanes(const bool* flags, int64_t left) {
  __m128i bytes;
  if (left >= kLanes) {
    bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(flags));
  } else {
    alignas(16) unsigned char tail[kLanes] = {};
    __builtin_memcpy(tail, flags, size_t(left));
    bytes = _mm_load_si128(reinterpret_cast<const __m128i*>(tail));
  }
  const __m512i words = _mm512_cvtepu8_epi32(bytes);
  return _mm512_test_epi32_mask(words, words);
}

// exp(x) for the softmax's arguments (x <= 0), NaN kept: Cephes' single-precision polynomial on
// x - n ln2 (n = round(x / ln2), ln2 split in two for an exact product), scaled by 2^n. Below
// -87.3 (results under float's smallest normal, and -inf) it is 0, as a masked score must be.
__m512 exp16(__m512 x) {
  const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_NLT_UQ);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  return _mm512_maskz_mov_ps(live, _mm512_scalef_ps(p, n));
}

// s[r][j] = sum_e a[r][e] bt[e][j] for R rows and j < m: the 2R accumulators of a 32-key strip
// stay in registers over the whole inner dimension.
template <int R>
void score_rows(const float* a, int64_t dim, const float* bt, int64_t ldb, int64_t m, float* s,
                int64_t lds) {
  for (int64_t j = 0; j < m; j += 2 * kLanes) {
    const __mmask16 m0 = lanes(m - j), m1 = lanes(m - j - kLanes);
    __m512 acc[R][2];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    const float* col = bt + j;
    for (int64_t e = 0; e < dim; ++e, col += ldb) {
      const __m512 b0 = _mm512_maskz_loadu_ps(m0, col);
      const __m512 b1 = _mm512_maskz_loadu_ps(m1, col + kLanes);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m512 x = _mm512_set1_ps(a[r * dim + e]);
        acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      _mm512_mask_storeu_ps(s + r * lds + j, m0, acc[r][0]);
      _mm512_mask_storeu_ps(s + r * lds + j + kLanes, m1, acc[r][1]);
    }
  }
}

void scores(const float* a, int64_t rows, int64_t dim, const float* bt, int64_t ldb, int64_t m,
            float* s) {
  by_tiles<8>(rows, [&](auto tile, int64_t r) {
    score_rows<decltype(tile)::value>(a + r * dim, dim, bt, ldb, m, s + r * m, m);
  });
}

// out[o] (+)= sum_i w[o * wo + i * wi] x[i] for R outputs, x and out rows of 16 NV floats: the
// products of a block of probabilities (or score gradients) with values, keys or queries, in
// either orientation of the block.
template <int R, int NV>
void accumulate_rows(const float* w, int64_t wo, int64_t wi, const float* x, int64_t n, float* out,
                     bool add) {
  __m512 acc[R][NV];
#pragma GCC unroll 8
  for (int o = 0; o < R; ++o) {
#pragma GCC unroll 4
    for (int t = 0; t < NV; ++t) acc[o][t] = _mm512_setzero_ps();
  }
  for (int64_t i = 0; i < n; ++i, x += NV * kLanes, w += wi) {
    __m512 xv[NV];
#pragma GCC unroll 4
    for (int t = 0; t < NV; ++t) xv[t] = _mm512_loadu_ps(x + t * kLanes);
#pragma GCC unroll 8
    for (int o = 0; o < R; ++o) {
      const __m512 c = _mm512_set1_ps(w[o * wo]);
#pragma GCC unroll 4
      for (int t = 0; t < NV; ++t) acc[o][t] = _mm512_fmadd_ps(c, xv[t], acc[o][t]);
    }
  }
#pragma GCC unroll 8
  for (int o = 0; o < R; ++o) {
#pragma GCC unroll 4
    for (int t = 0; t < NV; ++t) {
      float* dst = out + (o * NV + t) * kLanes;
      _mm512_storeu_ps(dst, add ? _mm512_add_ps(_mm512_loadu_ps(dst), acc[o][t]) : acc[o][t]);
    }
  }
}

template <int NV>
void accumulate(const float* w, int64_t wo, int64_t wi, const float* x, int64_t n, int64_t outs,
                float* out, bool add) {
  constexpr int R = NV == 4 ? 4 : 8;  // 16 accumulators at most
  by_tiles<R>(outs, [&](auto tile, int64_t o) {
    accumulate_rows<decltype(tile)::value, NV>(w + o * wo, wo, wi, x, n, out + o * NV * kLanes,
                                               add);
  });
}

void accumulate(int64_t dim, const float* w, int64_t wo, int64_t wi, const float* x, int64_t n,
                int64_t outs, float* out, bool add) {
  switch (dim / kLanes) {
    case 1:
      return accumulate<1>(w, wo, wi, x, n, outs, out, add);
    case 2:
      return accumulate<2>(w, wo, wi, x, n, outs, out, add);
    default:
      return accumulate<4>(w, wo, wi, x, n, outs, out, add);
  }
}

// The lanes of keys [j, j + 16) of a row that its masks hide.
__mmask16 hidden(const bool* row_mask, const bool* key_padding, int64_t j, int64_t m) {
  __mmask16 h = 0;
  if (row_mask) h |= true_lanes(row_mask + j, m - j);
  if (key_padding) h |= true_lanes(key_padding + j, m - j);
  return h;
}

// A row of m scores, in place, to its softmax (hidden keys 0); returns the log-sum-exp.
float softmax_row(float* s, int64_t m, const bool* row_mask, const bool* key_padding) {
  const __m512 ninf = _mm512_set1_ps(-__builtin_inff());
  __m512 top = ninf;
  for (int64_t j = 0; j < m; j += kLanes) {
    const __mmask16 in = lanes(m - j);
    __m512 x = _mm512_maskz_loadu_ps(in, s + j);
    const __mmask16 h = hidden(row_mask, key_padding, j, m);
    if (h) {
      x = _mm512_mask_mov_ps(x, h, ninf);
      _mm512_mask_storeu_ps(s + j, in, x);
    }
    top = _mm512_mask_max_ps(top, in, top, x);
  }
  const float max = _mm512_reduce_max_ps(top);
  const __m512 shift = _mm512_set1_ps(max);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < m; j += kLanes) {
    const __mmask16 in = lanes(m - j);
    const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(in, s + j), shift));
    _mm512_mask_storeu_ps(s + j, in, e);
    sum = _mm512_mask_add_ps(sum, in, sum, e);
  }
  const float total = _mm512_reduce_add_ps(sum);
  const __m512 inv = _mm512_set1_ps(1.0f / total);
  for (int64_t j = 0; j < m; j += kLanes) {
    const __mmask16 in = lanes(m - j);
    _mm512_mask_storeu_ps(s + j, in, _mm512_mul_ps(_mm512_maskz_loadu_ps(in, s + j), inv));
  }
  return max + logf(total);
}

// A row of m scores, in place, to the forward's probabilities exp(s - lse) (hidden keys 0).
void probabilities_row(float* s, int64_t m, const bool* row_mask, const bool* key_padding,
                       float lse) {
  const __m512 shift = _mm512_set1_ps(lse);
  for (int64_t j = 0; j < m; j += kLanes) {
    const __mmask16 in = lanes(m - j);
    const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(in, s + j), shift));
    const __mmask16 h = hidden(row_mask, key_padding, j, m);
    _mm512_mask_storeu_ps(s + j, in, _mm512_maskz_mov_ps(__mmask16(~h), e));
  }
}

const bool* row_mask(const Block& b, int64_t r) {
  return b.attn_mask ? b.attn_mask + r * b.keys + b.c0 : nullptr;
}

}  // namespace

void forward(const Block& b, float* out, float* lse) {
  const int64_t m = b.c1 - b.c0;
  const bool* padding = b.key_padding ? b.key_padding + b.c0 : nullptr;
  float* s = b.scratch;
  scores(b.q, b.rows, b.dim, b.kt + b.c0, b.keys, m, s);
  for (int64_t r = 0; r < b.rows; ++r) lse[r] = softmax_row(s + r * m, m, row_mask(b, r), padding);
  accumulate(b.dim, s, m, 1, b.v + b.c0 * b.dim, m, b.rows, out, false);
}

void backward(const Block& b, const float* grad_out, const float* row_dot, const float* lse,
              float* grad_q, float* grad_k, float* grad_v) {
  const int64_t m = b.c1 - b.c0;
  const bool* padding = b.key_padding ? b.key_padding + b.c0 : nullptr;
  float* p = b.scratch;
  float* ds = b.scratch + b.rows * m;
  scores(b.q, b.rows, b.dim, b.kt + b.c0, b.keys, m, p);
  for (int64_t r = 0; r < b.rows; ++r)
    probabilities_row(p + r * m, m, row_mask(b, r), padding, lse[r]);
  // d softmax: p * (dp - sum_j p_j dp_j), with dp = grad_out v^T.
  scores(grad_out, b.rows, b.dim, b.vt + b.c0, b.keys, m, ds);
  for (int64_t r = 0; r < b.rows; ++r) {
    const __m512 dot = _mm512_set1_ps(row_dot[r]);
    float* dsr = ds + r * m;
    const float* pr = p + r * m;
    for (int64_t j = 0; j < m; j += kLanes) {
      const __mmask16 in = lanes(m - j);
      const __m512 g = _mm512_sub_ps(_mm512_maskz_loadu_ps(in, dsr + j), dot);
      _mm512_mask_storeu_ps(dsr + j, in, _mm512_mul_ps(_mm512_maskz_loadu_ps(in, pr + j), g));
    }
  }
  accumulate(b.dim, ds, m, 1, b.k + b.c0 * b.dim, m, b.rows, grad_q, false);
  accumulate(b.dim, ds, 1, m, b.q, b.rows, m, grad_k + b.c0 * b.dim, true);
  accumulate(b.dim, p, 1, m, grad_out, b.rows, m, grad_v + b.c0 * b.dim, true);
}

}  // namespace aligndetr::ops::attention_kernel
