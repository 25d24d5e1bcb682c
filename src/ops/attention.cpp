#include "aligndetr/ops/attention.h"

#include <limits>

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/torch.h>

#include "aligndetr/ops/autocast.h"

namespace aligndetr::ops {
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

// The masked scores of rows [r0, r0 + n) of head-batch i, softmaxed over all keys.
struct Blocks {
  torch::Tensor q, k, attn_mask, key_padding_mask;
  int64_t heads, rows;

  int64_t count() const { return (q.size(1) + rows - 1) / rows; }

  torch::Tensor probabilities(int64_t i, int64_t r0, int64_t n) const {
    auto s = torch::mm(q[i].narrow(0, r0, n), k[i].t());
    const double inf = std::numeric_limits<double>::infinity();
    if (attn_mask.numel() > 0) s.masked_fill_(attn_mask.narrow(0, r0, n), -inf);
    if (key_padding_mask.numel() > 0)
      s.masked_fill_(key_padding_mask[i / heads].unsqueeze(0), -inf);
    return torch::softmax(s, -1);
  }
};

class BlockedAttention : public torch::autograd::Function<BlockedAttention> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& attn_mask,
                               const torch::Tensor& key_padding_mask, int64_t heads, int64_t rows) {
    // Named, with its inputs, for profilers and the flop count (model::count_flops).
    RECORD_FUNCTION("aligndetr::blocked_attention", std::vector<c10::IValue>({q, k, v}));
    const Blocks b{
        q.detach().contiguous(), k.detach().contiguous(), attn_mask, key_padding_mask, heads, rows};
    const auto vc = v.detach().contiguous();
    auto out = torch::empty({q.size(0), q.size(1), v.size(2)}, v.options());
    const int64_t blocks = b.count();
    // Inside the parallel region ATen and OpenBLAS run each product on the calling thread.
    at::parallel_for(0, q.size(0) * blocks, 1, [&](int64_t begin, int64_t end) {
      const PlainOps plain;
      for (int64_t t = begin; t < end; ++t) {
        const int64_t i = t / blocks, r0 = (t % blocks) * rows;
        const int64_t n = std::min(rows, q.size(1) - r0);
        auto o = out[i].narrow(0, r0, n);
        torch::mm_out(o, b.probabilities(i, r0, n), vc[i]);
      }
    });
    ctx->save_for_backward({b.q, b.k, vc, out});
    ctx->saved_data["attn_mask"] = attn_mask;
    ctx->saved_data["key_padding_mask"] = key_padding_mask;
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["rows"] = rows;
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    RECORD_FUNCTION("aligndetr::blocked_attention_backward", std::vector<c10::IValue>());
    const auto saved = ctx->get_saved_variables();
    const auto &v = saved[2], &out = saved[3];
    const Blocks b{saved[0],
                   saved[1],
                   ctx->saved_data["attn_mask"].toTensor(),
                   ctx->saved_data["key_padding_mask"].toTensor(),
                   ctx->saved_data["heads"].toInt(),
                   ctx->saved_data["rows"].toInt()};
    const PlainOps plain;
    const auto go = grads[0].detach().contiguous();
    // d softmax: p * (dp - sum_j p_j dp_j), and sum_j p_j dp_j = <go, out> per row.
    const auto row_dot = (go * out).sum(-1, true);
    auto gq = torch::empty_like(b.q), gk = torch::zeros_like(b.k), gv = torch::zeros_like(v);
    const int64_t blocks = b.count();
    // One head-batch per task: its blocks all add into the same gk and gv rows.
    at::parallel_for(0, b.q.size(0), 1, [&](int64_t begin, int64_t end) {
      const PlainOps plain;
      for (int64_t i = begin; i < end; ++i) {
        auto gki = gk[i], gvi = gv[i], gqi = gq[i];
        for (int64_t blk = 0; blk < blocks; ++blk) {
          const int64_t r0 = blk * b.rows, n = std::min(b.rows, b.q.size(1) - r0);
          const auto p = b.probabilities(i, r0, n);
          const auto gob = go[i].narrow(0, r0, n);
          auto ds = torch::mm(gob, v[i].t()).sub_(row_dot[i].narrow(0, r0, n)).mul_(p);
          auto gqb = gqi.narrow(0, r0, n);
          torch::mm_out(gqb, ds, b.k[i]);
          gki.addmm_(ds.t(), b.q[i].narrow(0, r0, n));
          gvi.addmm_(p.t(), gob);
        }
      }
    });
    return {gq, gk, gv, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor blocked_attention(const torch::Tensor& q, const torch::Tensor& k,
                                const torch::Tensor& v, const torch::Tensor& attn_mask,
                                const torch::Tensor& key_padding_mask, int64_t heads,
                                int64_t block_rows) {
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
  return BlockedAttention::apply(q, k, v, attn_mask.defined() ? attn_mask : none,
                                 key_padding_mask.defined() ? key_padding_mask : none, heads,
                                 block_rows);
}

}  // namespace aligndetr::ops
