#include "aligndetr/ops/attention.h"

#include <algorithm>
#include <limits>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/torch.h>

#include "aligndetr/ops/autocast.h"
#include "attention_kernels.h"

namespace aligndetr::ops {

#if !defined(ALIGNDETR_KERNEL_AVX512)
// Never called (cpu_has_avx512() is false): the build has no AVX-512 loops.
namespace attention_kernel {
void forward(const Block&, float*, float*) {
  TORCH_CHECK(false, "blocked_attention: this build has no AVX-512 loops");
}
void backward(const Block&, const float*, const float*, const float*, float*, float*, float*) {
  TORCH_CHECK(false, "blocked_attention: this build has no AVX-512 loops");
}
}  // namespace attention_kernel
#endif

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// Every thread of a parallel region runs its products without autograd (the tensors are
// detached; grad mode is thread-local, on by default in the pool's threads) and in the inputs'
// dtype (autocast would narrow them).
struct PlainOps {
  torch::NoGradGuard no_grad;
  AutocastOff no_autocast;
};

bool cpu_has_avx512() {
#if defined(ALIGNDETR_KERNEL_AVX512)
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
#else
  return false;
#endif
}

// The AVX-512 loops take float32 heads of 16, 32 or 64 with values as wide as keys.
bool fused_loops_take(const torch::Tensor& q, const torch::Tensor& v) {
  const int64_t dim = q.size(2);
  return cpu_has_avx512() && q.scalar_type() == torch::kFloat && v.size(2) == dim &&
         (dim == 16 || dim == 32 || dim == 64);
}

// Keys [c0, c1) hold every key some row of a block may see: the rest, hidden from all its rows,
// are skipped (DINO's 900 matching queries never see its 200 denoising ones: a sixth of the
// decoder's self-attention).
struct KeyRange {
  int64_t c0, c1;
};

// Rows [r0, r0 + n) of the query block `blk`, keys per image and block.
struct Blocks {
  torch::Tensor q, k, v, attn_mask, key_padding_mask;
  int64_t heads, rows;
  // c0, c1 of each image and block, image-major: found by the forward, kept for backward.
  std::vector<int64_t> key_bounds;

  Blocks(torch::Tensor q_, torch::Tensor k_, torch::Tensor v_, torch::Tensor attn_mask_,
         torch::Tensor key_padding_mask_, int64_t heads_, int64_t rows_,
         std::vector<int64_t> key_bounds_ = {})
      : q(std::move(q_)),
        k(std::move(k_)),
        v(std::move(v_)),
        attn_mask(std::move(attn_mask_)),
        key_padding_mask(std::move(key_padding_mask_)),
        heads(heads_),
        rows(rows_),
        key_bounds(std::move(key_bounds_)) {
    if (key_bounds.empty()) find_key_ranges();
  }

  int64_t count() const { return (q.size(1) + rows - 1) / rows; }
  int64_t first_row(int64_t blk) const { return blk * rows; }
  int64_t rows_of(int64_t blk) const { return std::min(rows, q.size(1) - blk * rows); }
  KeyRange range(int64_t i, int64_t blk) const {
    const auto at = size_t(2 * ((i / heads) * count() + blk));
    return {key_bounds[at], key_bounds[at + 1]};
  }

  void find_key_ranges() {
    const int64_t images = q.size(0) / heads, blocks = count(), keys = k.size(1);
    key_bounds.assign(size_t(2 * images * blocks), 0);
    for (size_t j = 1; j < key_bounds.size(); j += 2) key_bounds[j] = keys;
    if (attn_mask.numel() == 0 && key_padding_mask.numel() == 0) return;
    std::vector<char> seen(static_cast<size_t>(keys));
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t r0 = first_row(blk), n = rows_of(blk);
      if (attn_mask.numel() == 0) {
        std::fill(seen.begin(), seen.end(), 1);
      } else {
        std::fill(seen.begin(), seen.end(), 0);
        const bool* m = attn_mask.data_ptr<bool>() + r0 * keys;
        for (int64_t r = 0; r < n; ++r, m += keys) {
          for (int64_t c = 0; c < keys; ++c) seen[size_t(c)] |= char(!m[c]);
        }
      }
      for (int64_t img = 0; img < images; ++img) {
        const bool* pad =
            key_padding_mask.numel() > 0 ? key_padding_mask.data_ptr<bool>() + img * keys : nullptr;
        int64_t c0 = keys, c1 = 0;
        for (int64_t c = 0; c < keys; ++c) {
          if (seen[size_t(c)] && !(pad && pad[c])) {
            c0 = std::min(c0, c);
            c1 = c + 1;
          }
        }
        // A block that sees no key keeps them all: its rows come out NaN, as dense attention's.
        if (c0 < c1) {
          key_bounds[size_t(2 * (img * blocks + blk))] = c0;
          key_bounds[size_t(2 * (img * blocks + blk) + 1)] = c1;
        }
      }
    }
  }

  // The fused loops' view of block `blk` of head-batch i.
  attention_kernel::Block kernel_block(int64_t i, int64_t blk, const torch::Tensor& kt,
                                       const torch::Tensor& vt, float* scratch) const {
    const int64_t r0 = first_row(blk), keys = k.size(1), dim = q.size(2);
    const auto& kr = range(i, blk);
    return {rows_of(blk),
            keys,
            kr.c0,
            kr.c1,
            dim,
            q.data_ptr<float>() + (i * q.size(1) + r0) * dim,
            k.data_ptr<float>() + i * keys * dim,
            kt.data_ptr<float>() + i * dim * keys,
            v.data_ptr<float>() + i * keys * dim,
            vt.defined() ? vt.data_ptr<float>() + i * dim * keys : nullptr,
            attn_mask.numel() > 0 ? attn_mask.data_ptr<bool>() + r0 * keys : nullptr,
            key_padding_mask.numel() > 0 ? key_padding_mask.data_ptr<bool>() + (i / heads) * keys
                                         : nullptr,
            scratch};
  }

  // The BLAS path: the block's masked scores over its keys, softmaxed.
  torch::Tensor probabilities(int64_t i, int64_t blk) const {
    const int64_t r0 = first_row(blk), n = rows_of(blk);
    const auto& kr = range(i, blk);
    const int64_t m = kr.c1 - kr.c0;
    auto s = torch::mm(q[i].narrow(0, r0, n), k[i].narrow(0, kr.c0, m).t());
    const double inf = std::numeric_limits<double>::infinity();
    if (attn_mask.numel() > 0) s.masked_fill_(attn_mask.narrow(0, r0, n).narrow(1, kr.c0, m), -inf);
    if (key_padding_mask.numel() > 0) {
      s.masked_fill_(key_padding_mask[i / heads].narrow(0, kr.c0, m).unsqueeze(0), -inf);
    }
    return torch::softmax(s, -1);
  }
};

class BlockedAttention : public torch::autograd::Function<BlockedAttention> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& attn_mask,
                               const torch::Tensor& key_padding_mask, int64_t heads, int64_t rows,
                               bool fused) {
    // Named, with its inputs, for profilers and the flop count (model::count_flops).
    RECORD_FUNCTION("aligndetr::blocked_attention", std::vector<c10::IValue>({q, k, v}));
    const Blocks b(q.detach().contiguous(), k.detach().contiguous(), v.detach().contiguous(),
                   attn_mask, key_padding_mask, heads, rows);
    auto out = torch::empty({q.size(0), q.size(1), v.size(2)}, v.options());
    const int64_t blocks = b.count();
    torch::Tensor lse;
    if (fused) {
      lse = torch::empty({q.size(0), q.size(1)}, q.options());
      const auto kt = b.k.transpose(1, 2).contiguous();
      at::parallel_for(0, q.size(0) * blocks, 1, [&](int64_t begin, int64_t end) {
        std::vector<float> scratch(size_t(rows * b.k.size(1)));
        for (int64_t t = begin; t < end; ++t) {
          const int64_t i = t / blocks, blk = t % blocks, r0 = b.first_row(blk);
          attention_kernel::forward(b.kernel_block(i, blk, kt, {}, scratch.data()),
                                    out[i].narrow(0, r0, b.rows_of(blk)).data_ptr<float>(),
                                    lse[i].narrow(0, r0, b.rows_of(blk)).data_ptr<float>());
        }
      });
    } else {
      // Inside the parallel region ATen and OpenBLAS run each product on the calling thread.
      at::parallel_for(0, q.size(0) * blocks, 1, [&](int64_t begin, int64_t end) {
        const PlainOps plain;
        for (int64_t t = begin; t < end; ++t) {
          const int64_t i = t / blocks, blk = t % blocks;
          const auto& kr = b.range(i, blk);
          auto o = out[i].narrow(0, b.first_row(blk), b.rows_of(blk));
          torch::mm_out(o, b.probabilities(i, blk), b.v[i].narrow(0, kr.c0, kr.c1 - kr.c0));
        }
      });
      lse = torch::empty({0}, q.options());
    }
    ctx->save_for_backward({b.q, b.k, b.v, out, lse});
    ctx->saved_data["attn_mask"] = attn_mask;
    ctx->saved_data["key_padding_mask"] = key_padding_mask;
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["rows"] = rows;
    ctx->saved_data["fused"] = fused;
    ctx->saved_data["key_bounds"] = b.key_bounds;
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    RECORD_FUNCTION("aligndetr::blocked_attention_backward", std::vector<c10::IValue>());
    const auto saved = ctx->get_saved_variables();
    const auto &out = saved[3], &lse = saved[4];
    const Blocks b(saved[0], saved[1], saved[2], ctx->saved_data["attn_mask"].toTensor(),
                   ctx->saved_data["key_padding_mask"].toTensor(), ctx->saved_data["heads"].toInt(),
                   ctx->saved_data["rows"].toInt(), ctx->saved_data["key_bounds"].toIntVector());
    const PlainOps plain;
    const auto go = grads[0].detach().contiguous();
    // d softmax: p * (dp - sum_j p_j dp_j), and sum_j p_j dp_j = <go, out> per row.
    const auto row_dot = (go * out).sum(-1);
    auto gq = torch::empty_like(b.q), gk = torch::zeros_like(b.k), gv = torch::zeros_like(b.v);
    const int64_t blocks = b.count();
    if (ctx->saved_data["fused"].toBool()) {
      const auto kt = b.k.transpose(1, 2).contiguous(), vt = b.v.transpose(1, 2).contiguous();
      const int64_t dim = b.q.size(2), lq = b.q.size(1);
      // One head-batch per task: its blocks all add into the same gk and gv rows.
      at::parallel_for(0, b.q.size(0), 1, [&](int64_t begin, int64_t end) {
        std::vector<float> scratch(size_t(2 * b.rows * b.k.size(1)));
        for (int64_t i = begin; i < end; ++i) {
          for (int64_t blk = 0; blk < blocks; ++blk) {
            const int64_t row = i * lq + b.first_row(blk);
            attention_kernel::backward(
                b.kernel_block(i, blk, kt, vt, scratch.data()), go.data_ptr<float>() + row * dim,
                row_dot.data_ptr<float>() + row, lse.data_ptr<float>() + row,
                gq.data_ptr<float>() + row * dim, gk[i].data_ptr<float>(), gv[i].data_ptr<float>());
          }
        }
      });
      return {gq, gk, gv, {}, {}, {}, {}, {}};
    }
    at::parallel_for(0, b.q.size(0), 1, [&](int64_t begin, int64_t end) {
      const PlainOps plain;
      for (int64_t i = begin; i < end; ++i) {
        for (int64_t blk = 0; blk < blocks; ++blk) {
          const int64_t r0 = b.first_row(blk), n = b.rows_of(blk);
          const auto& kr = b.range(i, blk);
          const int64_t m = kr.c1 - kr.c0;
          const auto p = b.probabilities(i, blk);
          const auto gob = go[i].narrow(0, r0, n);
          const auto ki = b.k[i].narrow(0, kr.c0, m), vi = b.v[i].narrow(0, kr.c0, m);
          auto ds = torch::mm(gob, vi.t()).sub_(row_dot[i].narrow(0, r0, n).unsqueeze(1)).mul_(p);
          auto gqb = gq[i].narrow(0, r0, n);
          torch::mm_out(gqb, ds, ki);
          gk[i].narrow(0, kr.c0, m).addmm_(ds.t(), b.q[i].narrow(0, r0, n));
          gv[i].narrow(0, kr.c0, m).addmm_(p.t(), gob);
        }
      }
    });
    return {gq, gk, gv, {}, {}, {}, {}, {}};
  }
};

}  // namespace

const char* blocked_attention_kernel() {
  return cpu_has_avx512() ? "avx512" : "blas";
}

torch::Tensor blocked_attention(const torch::Tensor& q, const torch::Tensor& k,
                                const torch::Tensor& v, const torch::Tensor& attn_mask,
                                const torch::Tensor& key_padding_mask, int64_t heads,
                                int64_t block_rows, bool fused) {
  TORCH_CHECK(q.dim() == 3 && k.dim() == 3 && v.dim() == 3 && q.size(0) == k.size(0) &&
                  k.size(0) == v.size(0) && q.size(2) == k.size(2) && k.size(1) == v.size(1),
              "blocked_attention: q [N, Lq, E], k [N, Lk, E], v [N, Lk, Ev], got ", q.sizes(), ", ",
              k.sizes(), ", ", v.sizes());
  TORCH_CHECK(q.is_cpu() && k.is_cpu() && v.is_cpu(), "blocked_attention: CPU tensors only");
  TORCH_CHECK(q.scalar_type() == k.scalar_type() && k.scalar_type() == v.scalar_type(),
              "blocked_attention: q, k and v must share one dtype");
  TORCH_CHECK(heads > 0 && q.size(0) % heads == 0 && block_rows > 0,
              "blocked_attention: ", q.size(0), " head-batches are not a multiple of ", heads,
              " heads, or block_rows ", block_rows, " is not positive");
  TORCH_CHECK(
      !attn_mask.defined() || (attn_mask.scalar_type() == torch::kBool &&
                               attn_mask.sizes() == torch::IntArrayRef({q.size(1), k.size(1)})),
      "blocked_attention: attn_mask must be bool [Lq, Lk]");
  TORCH_CHECK(!key_padding_mask.defined() ||
                  (key_padding_mask.scalar_type() == torch::kBool &&
                   key_padding_mask.sizes() == torch::IntArrayRef({q.size(0) / heads, k.size(1)})),
              "blocked_attention: key_padding_mask must be bool [N / heads, Lk]");
  // LibTorch's custom functions take no undefined tensor: an absent mask travels as an empty one.
  const auto none = torch::empty({0}, q.options().dtype(torch::kBool));
  return BlockedAttention::apply(q, k, v, attn_mask.defined() ? attn_mask.contiguous() : none,
                                 key_padding_mask.defined() ? key_padding_mask.contiguous() : none,
                                 heads, block_rows, fused && fused_loops_take(q, v));
}

}  // namespace aligndetr::ops
