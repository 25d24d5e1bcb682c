#include <limits>
#include <string>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "aligndetr/model/denoising.h"
#include "aligndetr/model/dino_transformer.h"
#include "aligndetr/ops/attention.h"

namespace aligndetr {
namespace {

// Dense attention from plain operators: the definition blocked_attention must reproduce.
torch::Tensor dense_attention(const torch::Tensor& q, const torch::Tensor& k,
                              const torch::Tensor& v, const torch::Tensor& attn_mask,
                              const torch::Tensor& key_padding_mask, int64_t heads) {
  const double inf = std::numeric_limits<double>::infinity();
  auto s = torch::bmm(q, k.transpose(1, 2));
  if (attn_mask.defined()) s = s.masked_fill(attn_mask.unsqueeze(0), -inf);
  if (key_padding_mask.defined()) {
    const auto kpm = key_padding_mask.repeat_interleave(heads, 0).unsqueeze(1);
    s = s.masked_fill(kpm, -inf);
  }
  return torch::bmm(s.softmax(-1), v);
}

TEST(BlockedAttention, EqualsDenseAttentionWithMasksAndGradients) {
  torch::manual_seed(0);
  const int64_t B = 2, H = 3, Lq = 10, Lk = 7, E = 4, Ev = 5;
  const auto opts = torch::TensorOptions().dtype(torch::kDouble).requires_grad(true);
  const auto q = torch::randn({B * H, Lq, E}, opts);
  const auto k = torch::randn({B * H, Lk, E}, opts);
  const auto v = torch::randn({B * H, Lk, Ev}, opts);
  auto mask = torch::rand({Lq, Lk}) < 0.3;
  mask.select(1, 0).fill_(false);  // every row keeps a key
  auto kpm = torch::zeros({B, Lk}, torch::kBool);
  kpm[1].narrow(0, 4, 3).fill_(true);
  const auto g = torch::randn({B * H, Lq, Ev}, torch::kDouble);
  // Blocks of 3 rows: three full blocks and one of one row per head-batch.
  for (const bool with_masks : {false, true}) {
    const auto m = with_masks ? mask : torch::Tensor();
    const auto p = with_masks ? kpm : torch::Tensor();
    const auto ours = ops::blocked_attention(q, k, v, m, p, H, 3);
    const auto expect = dense_attention(q, k, v, m, p, H);
    EXPECT_LT((ours - expect).abs().max().item<double>(), 1e-12) << with_masks;
    const auto grads = torch::autograd::grad({ours}, {q, k, v}, {g});
    const auto expect_grads = torch::autograd::grad({expect}, {q, k, v}, {g});
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_LT((grads[i] - expect_grads[i]).abs().max().item<double>(), 1e-12)
          << with_masks << " input " << i;
    }
  }
  // The masks matter: without them the result differs.
  EXPECT_GT((ops::blocked_attention(q, k, v, mask, kpm, H, 3) -
             ops::blocked_attention(q, k, v, {}, {}, H, 3))
                .abs()
                .max()
                .item<double>(),
            1e-3);
}

// float32 heads of 16, 32 and 64 (the AVX-512 loops where the CPU has them, and the BLAS path)
// against dense attention in double, at sizes that fill no register tile exactly, under DINO's
// mask (whose blocks skip the keys none of their rows sees) and a key padding mask.
TEST(BlockedAttention, FusedLoopsAndBlasPathEqualDenseAttentionInFloat) {
  if (std::string(ops::blocked_attention_kernel()) != "avx512") {
    GTEST_SKIP() << "this CPU has no AVX-512F: the BLAS path is tested in double above";
  }
  torch::manual_seed(2);
  // Three denoising groups of 2 x 3 queries before 33 matching ones: 51 rows.
  const int64_t B = 2, H = 2, groups = 3, max_gt = 3, matching = 33;
  const int64_t Lq = groups * 2 * max_gt + matching;
  const auto mask = model::denoising_attention_mask(groups, max_gt, matching, torch::kCPU);
  auto kpm = torch::zeros({B, Lq}, torch::kBool);
  kpm[1].narrow(0, Lq - 5, 5).fill_(true);
  for (const int64_t E : {16, 32, 64}) {
    const auto make = [&] {
      return torch::randn({B * H, Lq, E}, torch::requires_grad())
          .mul(0.5)
          .detach()
          .requires_grad_();
    };
    const auto q = make(), k = make(), v = make();
    const auto g = torch::randn({B * H, Lq, E});
    const auto qd = q.detach().to(torch::kDouble).requires_grad_();
    const auto kd = k.detach().to(torch::kDouble).requires_grad_();
    const auto vd = v.detach().to(torch::kDouble).requires_grad_();
    for (const bool with_padding : {false, true}) {
      const auto p = with_padding ? kpm : torch::Tensor();
      const auto expect = dense_attention(qd, kd, vd, mask, p, H);
      const auto expect_grads =
          torch::autograd::grad({expect}, {qd, kd, vd}, {g.to(torch::kDouble)});
      for (const bool fused : {true, false}) {
        // Blocks of 8 rows: the last of 51 has 3.
        const auto ours = ops::blocked_attention(q, k, v, mask, p, H, 8, fused);
        ASSERT_EQ(ours.scalar_type(), torch::kFloat);
        EXPECT_LT((ours.to(torch::kDouble) - expect).abs().max().item<double>(), 2e-6)
            << "E " << E << " fused " << fused << " padding " << with_padding;
        const auto grads = torch::autograd::grad({ours}, {q, k, v}, {g});
        for (size_t i = 0; i < 3; ++i) {
          EXPECT_LT((grads[i].to(torch::kDouble) - expect_grads[i]).abs().max().item<double>(),
                    1e-5)
              << "E " << E << " fused " << fused << " padding " << with_padding << " input " << i;
        }
      }
    }
  }
}

// A row that sees no key is NaN in both paths, as in dense attention; the other rows are not.
TEST(BlockedAttention, ARowWithEveryKeyMaskedIsNaN) {
  torch::manual_seed(3);
  const auto q = torch::randn({2, 20, 32}), k = torch::randn({2, 17, 32}),
             v = torch::randn({2, 17, 32});
  auto mask = torch::zeros({20, 17}, torch::kBool);
  mask[4].fill_(true);
  for (const bool fused : {true, false}) {
    const auto out = ops::blocked_attention(q, k, v, mask, {}, 1, 8, fused);
    EXPECT_TRUE(out.select(1, 4).isnan().all().item<bool>()) << fused;
    EXPECT_FALSE(out.narrow(1, 5, 15).isnan().any().item<bool>()) << fused;
    EXPECT_FALSE(out.narrow(1, 0, 4).isnan().any().item<bool>()) << fused;
  }
}

TEST(BlockedAttention, RefusesInputsOfTheWrongShape) {
  const auto q = torch::randn({4, 5, 2}), k = torch::randn({4, 6, 2}), v = torch::randn({4, 6, 3});
  EXPECT_THROW(ops::blocked_attention(q, k, v, {}, {}, 3), c10::Error);  // 4 % 3 heads
  EXPECT_THROW(ops::blocked_attention(q, k.narrow(2, 0, 1), v, {}, {}, 2), c10::Error);
  EXPECT_THROW(ops::blocked_attention(q, k, v, torch::zeros({5, 5}, torch::kBool), {}, 2),
               c10::Error);
  EXPECT_THROW(ops::blocked_attention(q, k, v, {}, torch::zeros({2, 5}, torch::kBool), 2),
               c10::Error);
}

// On the CPU SelfAttention runs the blocked attention; it must give what LibTorch's
// MultiheadAttention gives with the same parameters, forward and backward.
TEST(BlockedAttention, SelfAttentionEqualsLibTorchsMultiheadAttention) {
  torch::manual_seed(1);
  const int64_t B = 2, Q = 9, D = 16, H = 4;
  model::SelfAttention ours(D, H);
  auto mha = ours->named_children()["attn"]->as<torch::nn::MultiheadAttention>();
  ASSERT_NE(mha, nullptr);
  const auto x = torch::randn({B, Q, D}, torch::requires_grad());
  const auto pos = torch::randn({B, Q, D});
  auto mask = torch::rand({Q, Q}) < 0.4;
  mask.select(1, 2).fill_(false);
  auto kpm = torch::zeros({B, Q}, torch::kBool);
  kpm[0].narrow(0, 6, 3).fill_(true);
  const auto y = ours(x, pos, mask, kpm);

  const auto qk = (x + pos).transpose(0, 1);
  const auto additive =
      torch::zeros({Q, Q}).masked_fill(mask, -std::numeric_limits<float>::infinity());
  const auto expect =
      std::get<0>(mha->forward(qk, qk, x.transpose(0, 1), kpm, false, additive)).transpose(0, 1);
  EXPECT_LT((y - expect).abs().max().item<float>(), 1e-5);

  const auto g = torch::randn(y.sizes());
  const std::vector<torch::Tensor> inputs{x, mha->in_proj_weight, mha->out_proj->weight};
  const auto grads = torch::autograd::grad({y}, inputs, {g});
  const auto expect_grads = torch::autograd::grad({expect}, inputs, {g});
  for (size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_LT((grads[i] - expect_grads[i]).abs().max().item<float>(), 1e-4) << i;
  }
}

}  // namespace
}  // namespace aligndetr
