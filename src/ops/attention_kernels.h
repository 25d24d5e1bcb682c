#pragma once
// The fused CPU attention loops behind ops::blocked_attention, for AVX-512 (attention_avx512.cpp,
// the only file compiled with -mavx512f; picked at run time when the CPU has it). Free of
// LibTorch, and nothing here may be an inline function or a template shared with other files:
// the linker could keep the AVX-512 copy for every caller.
//
// Why not two BLAS products per block: with heads of 32 the products' inner dimension is 32, so
// OpenBLAS spends as long packing the keys again for every block as multiplying, and the masked
// softmax is three more passes over the scores. Here the scores of a block of rows are made,
// masked, exponentiated and summed while they sit in cache, every key block packed once per
// head-batch (the transposed keys and values the caller passes).

#include <cstdint>

namespace aligndetr::ops::attention_kernel {

// One block of `rows` query rows of one head-batch against the keys [c0, c1) of `keys`; every
// row has `dim` elements, 16, 32 or 64 (queries, keys and values alike).
struct Block {
  int64_t rows, keys, c0, c1, dim;
  const float* q;           // [rows, dim], already scaled
  const float* k;           // [keys, dim]
  const float* kt;          // [dim, keys]
  const float* v;           // [keys, dim]
  const float* vt;          // [dim, keys] (backward only)
  const bool* attn_mask;    // [rows, keys], true = masked, or null
  const bool* key_padding;  // [keys], true = masked, or null
  float* scratch;           // rows x (c1 - c0) floats forward, twice that backward
};

// out [rows, dim] = softmax(q k^T, masked) v over the keys [c0, c1) (the rest masked);
// lse [rows] = each row's log-sum-exp, for backward. A row with every key masked is NaN.
void forward(const Block& b, float* out, float* lse);

// From the forward's lse and row_dot [rows] = <grad_out, out> per row: grad_q [rows, dim]
// written, grad_k and grad_v [keys, dim] added to (rows [c0, c1) only).
void backward(const Block& b, const float* grad_out, const float* row_dot, const float* lse,
              float* grad_q, float* grad_k, float* grad_v);

}  // namespace aligndetr::ops::attention_kernel
