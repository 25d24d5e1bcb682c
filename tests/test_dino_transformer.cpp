#include <gtest/gtest.h>

#include <algorithm>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "aligndetr/model/dino_transformer.h"
#include "aligndetr/model/layers.h"
#include "aligndetr/util/error.h"
#include "support/op_calls.h"

namespace aligndetr::model {
namespace {

model::DinoTransformerOptions tiny() {
  model::DinoTransformerOptions o;
  o.embed_dim = 32;
  o.num_heads = 4;
  o.num_levels = 2;
  o.num_points = 2;
  o.encoder_layers = 1;
  o.decoder_layers = 2;
  o.ffn_dim = 64;
  o.num_queries = 10;
  return o;
}

model::DinoHeads make_heads(const model::DinoTransformerOptions& o, int64_t classes) {
  model::DinoHeads h;
  for (int64_t i = 0; i <= o.decoder_layers; ++i) {
    h.class_embed.emplace_back(o.embed_dim, classes);
    h.bbox_embed.emplace_back(o.embed_dim, o.embed_dim, 4, 3);
  }
  return h;
}

struct Inputs {
  std::vector<torch::Tensor> feats, masks, pos;
};

Inputs make_inputs(const model::DinoTransformerOptions& o) {
  Inputs in;
  for (int64_t l = 0; l < o.num_levels; ++l) {
    const int64_t h = 8 >> l, w = 6 >> l;
    in.feats.push_back(torch::randn({2, o.embed_dim, h, w}));
    auto m = torch::zeros({2, h, w}, torch::kBool);
    m[1].narrow(1, w / 2, w - w / 2).fill_(true);  // image 1 is half padding on the right
    in.masks.push_back(m);
    in.pos.push_back(torch::randn({2, o.embed_dim, h, w}));
  }
  return in;
}

TEST(Layers, InverseSigmoidAndSineEmbed) {
  const auto x = torch::tensor({0.0, 0.5, 0.9, 1.0}, torch::kFloat64);
  const auto y = model::inverse_sigmoid(x);
  EXPECT_NEAR(y[0].item<double>(), std::log(1e-3 / 1.0), 1e-12);
  EXPECT_NEAR(y[1].item<double>(), 0.0, 1e-12);
  EXPECT_NEAR(y[2].item<double>(), std::log(0.9 / 0.1), 1e-9);
  // sine_embed of (x, y) with 4 features per coordinate: y's block comes first.
  const auto e =
      model::sine_embed(torch::tensor({0.25, 0.5}, torch::kFloat64).view({1, 2}), 4, 100, true);
  ASSERT_EQ(e.sizes(), torch::IntArrayRef({1, 8}));
  // Feature i uses dim_t = 100^(2 floor(i/2) / 4): 1, 1, 10, 10; even -> sin, odd -> cos.
  const double ang_y = 0.5 * 2 * M_PI, ang_x = 0.25 * 2 * M_PI;
  const double expected[8] = {std::sin(ang_y),      std::cos(ang_y),     std::sin(ang_y / 10),
                              std::cos(ang_y / 10), std::sin(ang_x),     std::cos(ang_x),
                              std::sin(ang_x / 10), std::cos(ang_x / 10)};
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(e[0][i].item<double>(), expected[i], 1e-12) << i;
}

// LibTorch's Linear with the same weight and bias as `ours`.
torch::nn::Linear libtorch_twin(const ops::Linear& ours) {
  torch::nn::Linear theirs(ours->options);
  torch::NoGradGuard no_grad;
  theirs->weight.copy_(ours->weight);
  theirs->bias.copy_(ours->bias);
  return theirs;
}

TEST(Layers, LinearEqualsLibTorchsOnAnyLeadingDimensionsWithGradients) {
  torch::manual_seed(0);
  ops::Linear ours(5, 3);
  torch::nn::Linear theirs = libtorch_twin(ours);
  // 3-D, 4-D, and a transposed (non-contiguous) input.
  for (const auto& shape : {std::vector<int64_t>{2, 4, 5}, std::vector<int64_t>{2, 3, 4, 5}}) {
    const auto x = torch::randn(shape, torch::requires_grad());
    const auto y = ours(x);
    EXPECT_EQ(y.sizes().back(), 3);
    EXPECT_TRUE(torch::allclose(y, theirs(x), 1e-6, 1e-6));
    const auto g = torch::randn(y.sizes());
    const auto grads = torch::autograd::grad({y}, {x, ours->weight, ours->bias}, {g});
    const auto expect = torch::autograd::grad({theirs(x)}, {x, theirs->weight, theirs->bias}, {g});
    for (size_t i = 0; i < grads.size(); ++i) {
      EXPECT_TRUE(torch::allclose(grads[i], expect[i], 1e-5, 1e-6)) << i;
    }
  }
  const auto t = torch::randn({4, 2, 5}).transpose(0, 1);
  EXPECT_TRUE(torch::allclose(ours(t), theirs(t), 1e-6, 1e-6));
  // At inference, many rows take oneDNN's 1x1 convolution where the build has oneDNN: the same
  // values to float rounding, in the same layout.
  torch::NoGradGuard no_grad;
  ops::Linear wide(64, 48);
  const auto rows = torch::randn({3, 200, 64});
  const auto y = wide(rows);
  const auto expect = torch::nn::functional::linear(rows, wide->weight, wide->bias);
  EXPECT_EQ(y.sizes(), expect.sizes());
  EXPECT_TRUE(y.is_contiguous());
  EXPECT_LT((y - expect).abs().max().item<float>(), 1e-5);
}

// At inference the oneDNN route packs the weight once and keeps it until the weight or the bias
// changes in any way a user can change them: in place, by a new tensor, by new storage.
TEST(Layers, LinearPacksItsWeightOnceAndRepacksWhenWeightOrBiasChanges) {
  torch::manual_seed(0);
  torch::NoGradGuard no_grad;
  ops::Linear fc(64, 48);
  const auto x = torch::randn({3, 300, 64});
  const auto check = [&](const std::string& when) {
    const auto expect = torch::nn::functional::linear(x, fc->weight, fc->bias);
    const auto y = fc(x);
    EXPECT_EQ(y.sizes(), expect.sizes()) << when;
    EXPECT_LT((y - expect).abs().max().item<float>(), 1e-5) << when;
  };
  const auto packs = [&](bool relu) {
    return testing::calls_of("mkldnn_prepacked::conv2d_prepack",
                             [&] { relu ? fc->forward_relu(x) : fc(x); });
  };
  const bool onednn = at::hasMKLDNN();
  EXPECT_EQ(packs(false), onednn ? 1 : 0);
  EXPECT_EQ(packs(false), 0);
  check("first");
  fc->weight.mul_(-2);
  EXPECT_EQ(packs(false), onednn ? 1 : 0) << "weight changed in place";
  check("weight changed in place");
  fc->bias.add_(0.5);
  EXPECT_EQ(packs(false), onednn ? 1 : 0) << "bias changed in place";
  check("bias changed in place");
  fc->weight = torch::randn({48, 64});
  EXPECT_EQ(packs(false), onednn ? 1 : 0) << "a new weight tensor";
  check("a new weight tensor");
  fc->bias.set_data(torch::randn({48}));
  EXPECT_EQ(packs(false), onednn ? 1 : 0) << "new storage for the bias";
  check("new storage for the bias");
  EXPECT_EQ(packs(true), onednn ? 1 : 0) << "with the ReLU";
  EXPECT_EQ(packs(true), 0);
  // Another number of rows takes the plain route (its own layout), the packed weight stays.
  const auto shorter = x.narrow(1, 0, 290);
  torch::Tensor y;
  EXPECT_EQ(
      testing::calls_of("mkldnn_prepacked::conv2d_prepack", [&] { y = fc->forward_relu(shorter); }),
      0);
  EXPECT_LT((y - torch::nn::functional::linear(shorter, fc->weight, fc->bias).relu())
                .abs()
                .max()
                .item<float>(),
            1e-5);
  EXPECT_EQ(packs(true), 0);
  // The fused ReLU: no negative value left, the product's positive part to rounding.
  const auto expect = torch::nn::functional::linear(x, fc->weight, fc->bias);
  const auto r = fc->forward_relu(x);
  EXPECT_TRUE(r.ge(0).all().item<bool>());
  EXPECT_GT(r.eq(0).sum().item<int64_t>(), r.numel() / 4);
  EXPECT_LT((r - expect.relu()).abs().max().item<float>(), 1e-5);
  // Training takes addmm and leaves the packed weight alone.
  torch::AutoGradMode grad(true);
  EXPECT_EQ(packs(true), 0);
}

// Forwards of one module on several threads at once, each packing or reading the packed weight
// while the others replace it (the weight changes between rounds).
TEST(Layers, LinearForwardsOnSeveralThreadsAtOnce) {
  torch::manual_seed(1);
  torch::NoGradGuard no_grad;
  ops::Linear fc(64, 48);
  const auto x = torch::randn({600, 64});
  for (int round = 0; round < 3; ++round) {
    fc->weight.mul_(-1.5);
    const auto expect = torch::nn::functional::linear(x, fc->weight, fc->bias).relu();
    std::vector<float> worst(4, 0.f);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        const torch::NoGradGuard inner;
        for (int i = 0; i < 10; ++i) {
          const auto y = fc->forward_relu(x);
          worst[t] = std::max(worst[t], (y - expect).abs().max().item<float>());
        }
      });
    }
    for (auto& th : threads) th.join();
    for (int t = 0; t < 4; ++t) EXPECT_LT(worst[t], 1e-5) << "round " << round << " thread " << t;
  }
}

// An in-place op on the output (the FFN's ReLU, the value's padding fill) must not turn the
// product's backward into as_strided's: a zero fill and copies of the whole gradient.
TEST(Layers, LinearOutputIsNotAViewSoInPlaceOpsKeepAPlainBackward) {
  torch::manual_seed(0);
  ops::Linear fc(5, 3);
  const auto x = torch::randn({2, 4, 5}, torch::requires_grad());
  auto y = fc(x);
  EXPECT_FALSE(y.is_view());
  y.relu_();
  EXPECT_EQ(y.grad_fn()->name(), "ReluBackward0");
  const auto g = torch::randn(y.sizes());
  const auto grads = torch::autograd::grad({y}, {x}, {g});
  const auto expect = torch::autograd::grad(
      {torch::relu(torch::nn::functional::linear(x, fc->weight, fc->bias))}, {x}, {g});
  EXPECT_TRUE(torch::allclose(grads[0], expect[0], 1e-5, 1e-6));
}

// In training, many float32 rows take oneDNN's 1x1 convolution forward where the build has oneDNN,
// and BLAS's products backward: LibTorch's values and gradients, a plain output the FFN's ReLU
// writes in place, and no convolution backward.
TEST(Layers, LinearTrainsForwardAsAConvolutionAndBackwardAsProducts) {
  torch::manual_seed(0);
  ops::Linear ours(64, 48);
  torch::nn::Linear theirs = libtorch_twin(ours);
  const auto x = torch::randn({3, 200, 64}, torch::requires_grad());
  const auto g = torch::randn({3, 200, 48});
  const int convolutions = at::hasMKLDNN() ? 1 : 0;
  for (const bool relu : {false, true}) {
    torch::Tensor y;
    EXPECT_EQ(
        testing::calls_of("aten::convolution", [&] { y = relu ? ours->forward_relu(x) : ours(x); }),
        convolutions)
        << relu;
    EXPECT_FALSE(y.is_view());
    if (relu) {
      EXPECT_EQ(y.grad_fn()->name(), "ReluBackward0");
    }
    const auto plain = theirs(x);
    const auto expect_y = relu ? torch::relu(plain) : plain;
    EXPECT_LT((y - expect_y).abs().max().item<float>(), 1e-5) << relu;
    std::vector<torch::Tensor> grads;
    EXPECT_EQ(
        testing::calls_of("aten::convolution_backward",
                          [&] {
                            grads = torch::autograd::grad({y}, {x, ours->weight, ours->bias}, {g});
                          }),
        0);
    const auto expect = torch::autograd::grad({expect_y}, {x, theirs->weight, theirs->bias}, {g});
    for (size_t i = 0; i < grads.size(); ++i) {
      EXPECT_TRUE(torch::allclose(grads[i], expect[i], 1e-4, 1e-4)) << relu << " " << i;
    }
  }
  // Second derivatives (create_graph): the backward's products record their own backward.
  const auto second = [&](const std::function<torch::Tensor(const torch::Tensor&)>& f) {
    const auto gx = torch::autograd::grad({f(x).square().sum()}, {x}, {}, true, true)[0];
    return torch::autograd::grad({gx.sum()}, {x})[0];
  };
  EXPECT_TRUE(torch::allclose(second([&](const torch::Tensor& t) { return ours(t); }),
                              second([&](const torch::Tensor& t) { return theirs(t); }), 1e-4,
                              1e-4));
  // A frozen layer passes the gradient to its input alone.
  for (auto& p : ours->parameters()) p.set_requires_grad(false);
  const auto gx = torch::autograd::grad({ours(x)}, {x}, {g})[0];
  EXPECT_TRUE(torch::allclose(gx, g.matmul(ours->weight), 1e-4, 1e-4));
}

TEST(DinoTransformer, EncoderLayerInferenceByBlocksEqualsTheWholeLayer) {
  torch::manual_seed(3);
  auto o = tiny();
  o.encoder_block_rows = 7;  // 60 tokens: eight full blocks and one of 4, per image
  model::DeformableEncoderLayer layer(o);
  const ops::SpatialShapes shapes{{8, 6}, {4, 3}};
  const auto x = torch::randn({2, 60, o.embed_dim});
  const auto pos = torch::randn({2, 60, o.embed_dim});
  const auto ref = torch::rand({2, 60, 2, 2});
  auto mask = torch::zeros({2, 60}, torch::kBool);
  mask[1].narrow(0, 40, 20).fill_(true);
  const auto whole = layer(x, pos, ref, shapes, mask);  // with gradients: the whole-layer path
  ASSERT_TRUE(whole.requires_grad());
  torch::Tensor blocks;
  {
    torch::NoGradGuard no_grad;
    blocks = layer(x, pos, ref, shapes, mask);
  }
  EXPECT_EQ(blocks.sizes(), whole.sizes());
  EXPECT_LT((blocks - whole.detach()).abs().max().item<float>(), 1e-5);
  // The padding reaches the result: image 1 differs from itself without its mask.
  torch::NoGradGuard no_grad;
  const auto unmasked = layer(x, pos, ref, shapes, torch::zeros({2, 60}, torch::kBool));
  EXPECT_LT((unmasked[0] - blocks[0]).abs().max().item<float>(), 1e-6);
  EXPECT_GT((unmasked[1] - blocks[1]).abs().max().item<float>(), 1e-3);
}

TEST(DinoTransformer, ParameterNamesFollowDetrex) {
  model::DinoTransformer t(tiny());
  const auto params = t->named_parameters();
  for (const char* name :
       {"encoder.layers.0.attentions.0.sampling_offsets.weight",
        "encoder.layers.0.ffns.0.layers.0.0.weight", "encoder.layers.0.ffns.0.layers.1.bias",
        "encoder.layers.0.norms.1.weight", "decoder.layers.1.attentions.0.attn.in_proj_weight",
        "decoder.layers.1.attentions.0.attn.out_proj.weight",
        "decoder.layers.1.attentions.1.value_proj.weight", "decoder.layers.0.norms.2.bias",
        "decoder.ref_point_head.layers.1.weight", "decoder.norm.weight", "level_embeds",
        "tgt_embed.weight", "enc_output.weight", "enc_output_norm.bias"}) {
    EXPECT_TRUE(params.contains(name)) << name;
  }
}

TEST(DinoTransformer, ProposalsAreCellCentresAndInvalidOnPadding) {
  model::DinoTransformer t(tiny());
  const ops::SpatialShapes shapes = {{2, 4}};
  auto mask = torch::zeros({1, 8}, torch::kBool);
  mask[0][3] = true;  // last column of row 0 is padding
  mask[0][7] = true;
  const auto [mem, props] = t->encoder_proposals(torch::randn({1, 8, 32}), mask, shapes);
  EXPECT_EQ(mem.sizes(), torch::IntArrayRef({1, 8, 32}));
  // Valid width 3, height 2: token (row 1, col 2) has centre (2.5/3, 1.5/2), size 0.05.
  const auto p = props[0][6].sigmoid();
  EXPECT_NEAR(p[0].item<float>(), 2.5f / 3, 1e-5);
  EXPECT_NEAR(p[1].item<float>(), 0.75f, 1e-5);
  EXPECT_NEAR(p[2].item<float>(), 0.05f, 1e-5);
  EXPECT_TRUE(std::isinf(props[0][3][0].item<float>()));
}

TEST(DinoTransformer, ForwardShapesWithExtraQueriesAndGradients) {
  torch::manual_seed(0);
  const auto o = tiny();
  model::DinoTransformer t(o);
  auto heads = make_heads(o, 5);
  const auto in = make_inputs(o);
  model::ExtraQueries extra;
  extra.content = torch::randn({2, 4, o.embed_dim});
  extra.boxes_unact = torch::randn({2, 4, 4});
  extra.attn_mask = torch::zeros({14, 14}, torch::kBool);
  extra.attn_mask.narrow(0, 4, 10).narrow(1, 0, 4).fill_(true);
  const auto out = t->forward(in.feats, in.masks, in.pos, heads, &extra);
  ASSERT_EQ(out.logits.size(), 2u);
  EXPECT_EQ(out.logits[1].sizes(), torch::IntArrayRef({2, 14, 5}));
  EXPECT_EQ(out.boxes[0].sizes(), torch::IntArrayRef({2, 14, 4}));
  EXPECT_EQ(out.enc_logits.sizes(), torch::IntArrayRef({2, 10, 5}));
  EXPECT_EQ(out.enc_boxes.sizes(), torch::IntArrayRef({2, 10, 4}));
  EXPECT_TRUE((out.boxes[1] > 0).all().item<bool>() && (out.boxes[1] < 1).all().item<bool>());
  const auto loss =
      out.logits[1].sum() + out.boxes[1].sum() + out.enc_boxes.sum() + out.enc_logits.sum();
  loss.backward();
  for (const auto& p : t->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>()) << p.key();
  }
  EXPECT_GT(
      heads.bbox_embed[2]->named_parameters()["layers.2.weight"].grad().abs().sum().item<float>(),
      0);
}

TEST(DinoTransformer, MatchingQueriesDoNotSeeBlockedExtraQueries) {
  torch::manual_seed(1);
  const auto o = tiny();
  model::DinoTransformer t(o);
  t->eval();
  auto heads = make_heads(o, 3);
  const auto in = make_inputs(o);
  model::ExtraQueries a;
  a.content = torch::randn({2, 4, o.embed_dim});
  a.boxes_unact = torch::randn({2, 4, 4});
  a.attn_mask = torch::zeros({14, 14}, torch::kBool);
  a.attn_mask.narrow(0, 4, 10).narrow(1, 0, 4).fill_(true);
  model::ExtraQueries b = a;
  b.content = torch::randn({2, 4, o.embed_dim});
  torch::NoGradGuard no_grad;
  const auto oa = t->forward(in.feats, in.masks, in.pos, heads, &a);
  const auto ob = t->forward(in.feats, in.masks, in.pos, heads, &b);
  // The matching part (last 10 queries) is unchanged by what the blocked queries hold.
  EXPECT_TRUE(
      torch::allclose(oa.logits[1].narrow(1, 4, 10), ob.logits[1].narrow(1, 4, 10), 1e-5, 1e-6));
  EXPECT_FALSE(torch::allclose(oa.logits[1].narrow(1, 0, 4), ob.logits[1].narrow(1, 0, 4)));
  // And equals a forward without extra queries.
  const auto plain = t->forward(in.feats, in.masks, in.pos, heads);
  EXPECT_TRUE(torch::allclose(plain.logits[1], oa.logits[1].narrow(1, 4, 10), 1e-5, 1e-6));
}

TEST(DinoTransformer, TooFewTokensForTheQueriesIsAClearError) {
  auto o = tiny();
  o.num_queries = 1000;
  model::DinoTransformer t(o);
  auto heads = make_heads(o, 3);
  const auto in = make_inputs(o);
  try {
    t->forward(in.feats, in.masks, in.pos, heads);
    FAIL();
  } catch (const util::InputError& e) {  // the image size is the user's choice
    EXPECT_NE(std::string(e.what()).find("fewer than the 1000 queries"), std::string::npos);
  }
}

}  // namespace
}  // namespace aligndetr::model
