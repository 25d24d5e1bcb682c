#pragma once
// Scaled dot-product attention that never holds the [heads, queries, keys] probabilities whole.
// Dense attention writes, then reads back four more times (softmax, its backward, two products),
// a tensor of batch x heads x queries x keys: 77 MB per decoder layer for DINO's 900 queries and
// 200 denoising ones at batch 2, each pass bound by memory bandwidth on a CPU, and all six kept
// for backward. Here the queries are taken a block of rows at a time, so the block's scores stay
// in cache; backward recomputes them from q and k (one more small product) instead of storing
// them. The probabilities of a row are those of dense attention: each block spans all the keys.

#include <cstdint>

#include <torch/types.h>

namespace aligndetr::ops {

// q [N, Lq, E] (already scaled), k [N, Lk, E], v [N, Lk, Ev], N = batch x heads with the head
// fastest; attn_mask [Lq, Lk] bool, true where a query may not attend (optional);
// key_padding_mask [N / heads, Lk] bool, true on keys no query sees (optional). Returns
// softmax(q k^T, masked) v as [N, Lq, Ev], differentiable in q, k and v. A row with every key
// masked is NaN, as in LibTorch's attention. CPU tensors, float or double. Keys hidden from every
// row of a block by the masks are skipped. `fused`: float32 heads of 16, 32 or 64 run the fused
// AVX-512 loops where the CPU has them (blocked_attention_kernel()); false, or anything else, runs
// two BLAS products and LibTorch's softmax per block (the baseline of bench_attention).
torch::Tensor blocked_attention(const torch::Tensor& q, const torch::Tensor& k,
                                const torch::Tensor& v, const torch::Tensor& attn_mask,
                                const torch::Tensor& key_padding_mask, int64_t heads,
                                int64_t block_rows = 128, bool fused = true);

// "avx512" where the fused loops run here, "blas" otherwise.
const char* blocked_attention_kernel();

}  // namespace aligndetr::ops
