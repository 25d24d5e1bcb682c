#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>

#include "aligndetr/engine/config.h"
#include "aligndetr/engine/model_config.h"
#include "aligndetr/loss/criterion.h"
#include "aligndetr/model/dab_detr.h"
#include "aligndetr/util/error.h"
#include "support/targets.h"

namespace aligndetr::model {
namespace {

model::DabDetrOptions tiny_dab() {
  model::DabDetrOptions o;
  o.backbone.depth = 18;
  o.num_classes = 5;
  o.num_queries = 20;
  o.transformer.embed_dim = 64;
  o.transformer.num_heads = 4;
  o.transformer.encoder_layers = 2;
  o.transformer.decoder_layers = 2;
  o.transformer.ffn_dim = 128;
  return o;
}

engine::Config preset(const std::string& name) {
  return engine::Config::load(std::string(ALIGNDETR_SOURCE_DIR) + "/configs/" + name);
}

int64_t trainable_parameters(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) {
    if (p.requires_grad()) n += p.numel();
  }
  return n;
}

// Every projection the identity, every bias zero.
void identity_projections(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.named_parameters()) {
    if (p.value().dim() == 2) {
      p.value().copy_(torch::eye(p.value().size(0)));
    } else {
      p.value().zero_();
    }
  }
}

TEST(DabAttention, ConditionalSelfAttentionByHand) {
  // One head, D = 2, identity projections: q = k = x + pos, v = x, scale 1 / sqrt(2).
  model::ConditionalSelfAttention attn(2, 1);
  identity_projections(*attn);
  const auto x = torch::tensor({1.0f, 0.0f, 0.0f, 0.0f}).view({1, 2, 2});
  const auto pos = torch::tensor({0.0f, 1.0f, 0.0f, 0.0f}).view({1, 2, 2});
  // The layer adds the residual; the sublayer returns the attention alone.
  const auto out = x + attn(x, pos);
  // Query 1 = (1, 1): logits (2, 0) / sqrt(2) -> weight sigmoid(sqrt(2)) on value (1, 0).
  // Query 2 = (0, 0): uniform weights -> (0.5, 0). Plus the residual.
  const float w = 1 / (1 + std::exp(-std::sqrt(2.0f)));
  const auto expected = torch::tensor({1 + w, 0.0f, 0.5f, 0.0f}).view({1, 2, 2});
  EXPECT_TRUE(torch::allclose(out, expected, 1e-5, 1e-6)) << out;
}

TEST(DabAttention, ConditionalCrossAttentionByHand) {
  // One head, D = 2, identity projections; the per-head query is [content, sine] and the key
  // [content, position], scale 1 / sqrt(4). Keys: (1, 0) at position (0, 1), and zeros.
  const auto query = torch::tensor({1.0f, 0.0f}).view({1, 1, 2});
  const auto query_pos = torch::tensor({0.0f, 1.0f}).view({1, 1, 2});
  const auto sine = torch::tensor({0.0f, 1.0f}).view({1, 1, 2});
  const auto memory = torch::tensor({1.0f, 0.0f, 0.0f, 0.0f}).view({1, 2, 2});
  const auto key_pos = torch::tensor({0.0f, 1.0f, 0.0f, 0.0f}).view({1, 2, 2});
  const auto sigmoid = [](float v) { return 1 / (1 + std::exp(-v)); };
  // Later layers: q = [(1, 0), (0, 1)], k1 = [(1, 0), (0, 1)] -> logit 2 / 2 = 1.
  model::ConditionalCrossAttention later(2, 1, false);
  identity_projections(*later);
  const auto out = query + later(query, query_pos, sine, memory, key_pos);
  EXPECT_TRUE(
      torch::allclose(out, torch::tensor({1 + sigmoid(1.0f), 0.0f}).view({1, 1, 2}), 1e-5, 1e-6))
      << out;
  // First layer: the content parts also carry the positions: q = [(1, 1), (0, 1)],
  // k1 = [(1, 1), (0, 1)] -> logit 3 / 2 (without either position it would be 2 / 2).
  model::ConditionalCrossAttention first(2, 1, true);
  identity_projections(*first);
  const auto out_first = query + first(query, query_pos, sine, memory, key_pos);
  EXPECT_TRUE(torch::allclose(out_first, torch::tensor({1 + sigmoid(1.5f), 0.0f}).view({1, 1, 2}),
                              1e-5, 1e-6))
      << out_first;
}

TEST(DabDetr, DetrexParameterNamesAndShapes) {
  model::DabDetr model(tiny_dab());
  const auto params = model->named_parameters();
  const std::vector<std::pair<std::string, std::vector<int64_t>>> expected = {
      {"backbone.conv1.weight", {64, 3, 7, 7}},
      {"backbone.layer4.1.conv2.weight", {512, 512, 3, 3}},
      {"input_proj.weight", {64, 512, 1, 1}},
      {"input_proj.bias", {64}},
      {"anchor_box_embed.weight", {20, 4}},
      {"class_embed.weight", {5, 64}},
      {"class_embed.bias", {5}},
      {"bbox_embed.layers.0.weight", {64, 64}},
      {"bbox_embed.layers.2.weight", {4, 64}},
      {"bbox_embed.layers.2.bias", {4}},
      {"transformer.encoder.layers.0.attentions.0.attn.in_proj_weight", {192, 64}},
      {"transformer.encoder.layers.1.attentions.0.attn.out_proj.weight", {64, 64}},
      {"transformer.encoder.layers.0.ffns.0.layers.0.0.weight", {128, 64}},
      {"transformer.encoder.layers.0.ffns.0.layers.0.1.weight", {1}},  // PReLU
      {"transformer.encoder.layers.0.ffns.0.layers.1.bias", {64}},
      {"transformer.encoder.layers.1.norms.1.weight", {64}},
      {"transformer.encoder.query_scale.layers.1.weight", {64, 64}},
      {"transformer.decoder.layers.0.attentions.0.query_content_proj.weight", {64, 64}},
      {"transformer.decoder.layers.0.attentions.0.query_pos_proj.weight", {64, 64}},
      {"transformer.decoder.layers.0.attentions.0.key_content_proj.bias", {64}},
      {"transformer.decoder.layers.1.attentions.0.key_pos_proj.weight", {64, 64}},
      {"transformer.decoder.layers.1.attentions.0.value_proj.weight", {64, 64}},
      {"transformer.decoder.layers.1.attentions.0.out_proj.bias", {64}},
      {"transformer.decoder.layers.0.attentions.1.query_pos_proj.weight", {64, 64}},
      {"transformer.decoder.layers.1.attentions.1.query_content_proj.weight", {64, 64}},
      {"transformer.decoder.layers.1.attentions.1.query_pos_sine_proj.weight", {64, 64}},
      {"transformer.decoder.layers.1.attentions.1.key_content_proj.weight", {64, 64}},
      {"transformer.decoder.layers.1.attentions.1.key_pos_proj.weight", {64, 64}},
      {"transformer.decoder.layers.1.attentions.1.value_proj.weight", {64, 64}},
      {"transformer.decoder.layers.1.attentions.1.out_proj.weight", {64, 64}},
      {"transformer.decoder.layers.1.ffns.0.layers.0.1.weight", {1}},
      {"transformer.decoder.layers.1.norms.2.bias", {64}},
      {"transformer.decoder.query_scale.layers.0.weight", {64, 64}},
      {"transformer.decoder.ref_point_head.layers.0.weight", {64, 128}},
      {"transformer.decoder.ref_point_head.layers.1.bias", {64}},
      {"transformer.decoder.ref_anchor_head.layers.1.weight", {2, 64}},
      {"transformer.decoder.post_norm_layer.weight", {64}},
  };
  for (const auto& [name, shape] : expected) {
    ASSERT_TRUE(params.contains(name)) << name;
    EXPECT_EQ(params[name].sizes(), torch::IntArrayRef(shape)) << name;
  }
  // detrex drops query_pos_proj from the cross-attention of every layer but the first, and has no
  // encoder post-norm.
  EXPECT_FALSE(params.contains("transformer.decoder.layers.1.attentions.1.query_pos_proj.weight"));
  EXPECT_FALSE(params.contains("transformer.encoder.post_norm_layer.weight"));
  // Without width/height modulation there is no ref_anchor_head.
  auto plain = tiny_dab();
  plain.transformer.modulate_hw_attn = false;
  EXPECT_FALSE(model::DabDetr(plain)->named_parameters().contains(
      "transformer.decoder.ref_anchor_head.layers.0.weight"));
  // One shared class head and one shared box head, registered once.
  int class_params = 0, box_params = 0;
  for (const auto& p : params) {
    class_params += p.key().rfind("class_embed.", 0) == 0;
    box_params += p.key().find("bbox_embed.") != std::string::npos;
  }
  EXPECT_EQ(class_params, 2);
  EXPECT_EQ(box_params, 6);
}

TEST(DabDetr, InitialisationAsDetrex) {
  torch::manual_seed(0);
  auto o = tiny_dab();
  o.num_queries = 300;
  model::DabDetr model(o);
  const auto params = model->named_parameters();
  EXPECT_NEAR(params["class_embed.bias"][3].item<float>(), -std::log(99.0f), 1e-5);
  EXPECT_EQ(params["bbox_embed.layers.2.weight"].abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(params["bbox_embed.layers.2.bias"].abs().sum().item<float>(), 0.0f);
  EXPECT_GT(params["bbox_embed.layers.0.weight"].abs().sum().item<float>(), 0.0f);
  // Centres: inverse sigmoid of U(0, 1), so their sigmoids spread over (0, 1) with mean 1/2 and
  // variance 1/12; widths and heights keep the embedding's N(0, 1) (sample mean 0, variance 1).
  const auto anchors = params["anchor_box_embed.weight"];
  const auto centres = anchors.narrow(1, 0, 2).sigmoid();
  EXPECT_NEAR(centres.mean().item<float>(), 0.5f, 0.05f);
  EXPECT_NEAR(centres.var().item<float>(), 1.0f / 12, 0.015f);
  const auto sizes = anchors.narrow(1, 2, 2);
  EXPECT_NEAR(sizes.mean().item<float>(), 0.0f, 0.15f);
  EXPECT_NEAR(sizes.var().item<float>(), 1.0f, 0.2f);
  // As in detrex, every anchor coordinate is trained.
  EXPECT_TRUE(anchors.requires_grad());
  // Xavier-uniform matrices in the transformer: bound sqrt(6 / (fan_in + fan_out)).
  const auto w = params["transformer.decoder.ref_point_head.layers.0.weight"];  // [64, 128]
  const double bound = std::sqrt(6.0 / (64 + 128));
  EXPECT_LE(w.abs().max().item<float>(), bound + 1e-6);
  EXPECT_GT(w.abs().max().item<float>(), 0.9 * bound);
}

TEST(DabDetr, AtInitialisationEveryLayerPredictsItsAnchor) {
  // The last box layer starts at zero, so every decoder layer's box is its reference, which is
  // the anchor itself for every layer (refinement adds zero too).
  torch::manual_seed(1);
  model::DabDetr model(tiny_dab());
  model->eval();
  torch::NoGradGuard no_grad;
  const auto out =
      model->forward(torch::randn({2, 3, 96, 128}), torch::zeros({2, 96, 128}, torch::kBool));
  const auto anchors = model->named_parameters()["anchor_box_embed.weight"].sigmoid();
  ASSERT_EQ(out.decoder.size(), 2u);
  for (const auto& layer : out.decoder) {
    EXPECT_TRUE(torch::allclose(layer.boxes[0], anchors, 1e-4, 1e-5));
    EXPECT_TRUE(torch::allclose(layer.boxes[1], anchors, 1e-4, 1e-5));
  }
  // Logits differ between layers (different hidden states through one head).
  EXPECT_FALSE(torch::allclose(out.decoder[0].logits, out.decoder[1].logits));
}

TEST(DabDetr, ShapesAndPaddingMask) {
  torch::manual_seed(2);
  model::DabDetr model(tiny_dab());
  model->train();
  torch::NoGradGuard no_grad;
  const auto images = torch::randn({2, 3, 128, 160});
  const auto no_pad = torch::zeros({2, 128, 160}, torch::kBool);
  auto pad = no_pad.clone();
  pad[1].narrow(1, 96, 64).fill_(true);
  const auto a = model->forward(images, no_pad);
  const auto b = model->forward(images, pad);
  ASSERT_EQ(a.decoder.size(), 2u);
  EXPECT_FALSE(a.encoder.has_value());
  EXPECT_FALSE(a.denoising.has_value());
  for (const auto& layer : b.decoder) {
    EXPECT_EQ(layer.logits.sizes(), torch::IntArrayRef({2, 20, 5}));
    EXPECT_EQ(layer.boxes.sizes(), torch::IntArrayRef({2, 20, 4}));
    EXPECT_TRUE(torch::isfinite(layer.logits).all().item<bool>());
    EXPECT_TRUE(((layer.boxes >= 0) & (layer.boxes <= 1)).all().item<bool>());
  }
  // The padding of image 1 changes its own outputs only.
  EXPECT_TRUE(torch::allclose(a.decoder[1].logits[0], b.decoder[1].logits[0], 1e-5, 1e-6));
  EXPECT_FALSE(torch::allclose(a.decoder[1].logits[1], b.decoder[1].logits[1], 1e-3, 1e-4));
  // Evaluation uses the real mask too, unless told to ignore it as detrex's inference does; then
  // image 1's boxes are still reported relative to its valid 128 x 96 part.
  model->eval();
  const auto c = model->forward(images, no_pad);
  const auto d = model->forward(images, pad);
  EXPECT_FALSE(torch::allclose(c.decoder[1].logits[1], d.decoder[1].logits[1], 1e-3, 1e-4));
  auto options = tiny_dab();
  options.eval_ignores_padding_mask = true;
  torch::manual_seed(2);
  model::DabDetr all_valid(options);
  all_valid->eval();
  const auto e = all_valid->forward(images, no_pad);
  const auto f = all_valid->forward(images, pad);
  EXPECT_TRUE(torch::equal(e.decoder[1].logits, f.decoder[1].logits));
  EXPECT_TRUE(torch::equal(e.decoder[1].boxes[0], f.decoder[1].boxes[0]));
  const auto scale = torch::tensor({160.0f / 96, 1.0f, 160.0f / 96, 1.0f});
  EXPECT_TRUE(torch::allclose(f.decoder[1].boxes[1], e.decoder[1].boxes[1] * scale));
}

TEST(DabDetr, TinyPresetTrainsThroughTheCriterion) {
  const auto config = preset("align_dab_detr_tiny.yaml");
  auto options = engine::dab_detr_options(config);
  // The preset trains from scratch, stem included; freeze the stem here to check freezing.
  EXPECT_EQ(options.backbone.freeze_at, 0);
  options.backbone.freeze_at = 1;
  const auto criterion = engine::criterion_options(config);
  torch::manual_seed(0);
  model::DabDetr model(options);
  model->train();
  const auto images = torch::randn({2, 3, 128, 160});
  auto mask = torch::zeros({2, 128, 160}, torch::kBool);
  mask[1].narrow(1, 120, 40).fill_(true);
  const auto t = testing::two_image_targets();
  const auto out = model->forward(images, mask);
  ASSERT_EQ(out.decoder.size(), 2u);
  EXPECT_EQ(out.decoder[1].logits.sizes(), torch::IntArrayRef({2, 100, 8}));

  const auto losses = loss::compute_criterion(out, t, criterion);
  for (const char* name : {"loss_class", "loss_bbox", "loss_giou", "loss_class_0", "loss_bbox_0"}) {
    EXPECT_TRUE(losses.weighted.count(name)) << name;
  }
  EXPECT_FALSE(losses.weighted.count("loss_class_enc"));
  ASSERT_TRUE(torch::isfinite(losses.total).item<bool>());
  losses.total.backward();
  int64_t with_grad = 0;
  for (const auto& p : model->named_parameters()) {
    if (!p.value().requires_grad()) {
      EXPECT_FALSE(p.value().grad().defined()) << p.key();
      continue;
    }
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>()) << p.key();
    ++with_grad;
  }
  EXPECT_GT(with_grad, 100);
  // Anchors learn through the first layer (positions and sizes), the shared heads through all.
  const auto params = model->named_parameters();
  EXPECT_GT(params["anchor_box_embed.weight"].grad().narrow(1, 0, 2).abs().sum().item<float>(), 0);
  EXPECT_GT(params["anchor_box_embed.weight"].grad().narrow(1, 2, 2).abs().sum().item<float>(), 0);
  EXPECT_GT(params["bbox_embed.layers.2.weight"].grad().abs().sum().item<float>(), 0);
  EXPECT_GT(params["transformer.decoder.ref_anchor_head.layers.1.weight"]
                .grad()
                .abs()
                .sum()
                .item<float>(),
            0);

  // An optimizer step leaves the frozen stem untouched and moves the rest.
  const auto stem = params["backbone.conv1.weight"];
  EXPECT_FALSE(stem.requires_grad());
  const auto stem_before = stem.clone();
  const auto proj_before = params["input_proj.weight"].clone();
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  sgd.step();
  EXPECT_TRUE(torch::equal(stem, stem_before));
  EXPECT_FALSE(torch::equal(params["input_proj.weight"], proj_before));
}

TEST(DabDetr, DeterministicForASeed) {
  torch::manual_seed(3);
  model::DabDetr a(tiny_dab());
  torch::manual_seed(3);
  model::DabDetr b(tiny_dab());
  const auto pa = a->named_parameters();
  const auto pb = b->named_parameters();
  for (const auto& p : pa) EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
  a->eval();
  b->eval();
  torch::NoGradGuard no_grad;
  const auto images = torch::randn({1, 3, 96, 96});
  const auto mask = torch::zeros({1, 96, 96}, torch::kBool);
  const auto oa = a->forward(images, mask);
  const auto ob = b->forward(images, mask);
  EXPECT_TRUE(torch::equal(oa.decoder[1].logits, ob.decoder[1].logits));
  EXPECT_TRUE(torch::equal(oa.decoder[1].boxes, ob.decoder[1].boxes));
}

TEST(DabDetrConfig, PaperPresetIsUnderstoodCompletely) {
  const auto config = preset("align_dab_detr_r50_50ep.yaml");
  const auto o = engine::dab_detr_options(config);  // throws on any key it does not read
  EXPECT_EQ(o.backbone.depth, 50);
  EXPECT_EQ(o.backbone.freeze_at, 1);
  EXPECT_FALSE(o.backbone.dc5);
  EXPECT_EQ(o.num_classes, 80);
  EXPECT_EQ(o.num_queries, 300);
  EXPECT_EQ(o.transformer.embed_dim, 256);
  EXPECT_EQ(o.transformer.num_heads, 8);
  EXPECT_EQ(o.transformer.encoder_layers, 6);
  EXPECT_EQ(o.transformer.decoder_layers, 6);
  EXPECT_EQ(o.transformer.ffn_dim, 2048);
  EXPECT_TRUE(o.transformer.modulate_hw_attn);
  EXPECT_EQ(o.position.temperature_h, 20.0);
  EXPECT_EQ(o.position.temperature_w, 20.0);
  EXPECT_EQ(o.position.offset, 0.0);
  EXPECT_FALSE(o.eval_ignores_padding_mask);
  const auto c = engine::criterion_options(config);
  EXPECT_EQ(c.class_loss, loss::ClassLoss::kIaBce);
  EXPECT_EQ(c.layer_k(6), (std::vector<int64_t>{2, 2, 2, 2, 2, 1}));
  EXPECT_EQ(c.tau, 1.5);

  const auto tiny = engine::dab_detr_options(preset("align_dab_detr_tiny.yaml"));
  EXPECT_EQ(tiny.backbone.depth, 18);
  EXPECT_EQ(tiny.num_classes, 8);
  EXPECT_EQ(tiny.num_queries, 100);
  EXPECT_EQ(tiny.transformer.embed_dim, 128);
  EXPECT_EQ(tiny.transformer.encoder_layers, 2);
  EXPECT_EQ(tiny.transformer.decoder_layers, 2);
}

TEST(DabDetrConfig, RejectsStrayKeysAndOtherModels) {
  EXPECT_THROW(engine::dino_options(preset("align_dab_detr_tiny.yaml")), util::InputError);
  const auto stray = engine::Config::parse(
      "model:\n  type: dab_detr\n  num_classes: 3\n  backbone: {depth: 18, out_stages: [4]}\n"
      "  transformer: {embed_dim: 64, num_heads: 4, encoder_layers: 1, decoder_layers: 1,\n"
      "                ffn_dim: 64, num_queries: 10}\n");
  try {
    engine::dab_detr_options(stray);
    FAIL() << "a stray key was accepted";
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("model.backbone.out_stages"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(engine::dab_detr_options(engine::Config::parse("model:\n  type: dino\n")),
               util::InputError);
}

TEST(DabDetr, ParameterCountOfTheR50Preset) {
  // Hand count (D = 256, FFN 2048, 80 classes, 300 queries), frozen batch norms hold none:
  //   ResNet-50 convolutions without the frozen stem    23,445,504
  //   input_proj 2048 * 256 + 256                          524,544
  //   encoder: 6 x (MHA 263,168 + FFN 1,050,880 + PReLU 1 + 2 LN 1,024) + query_scale 131,584
  //                                                      8,022,022
  //   decoder: layer 0 (13 linears 855,296 + FFN/PReLU 1,050,881 + 3 LN 1,536) 1,907,713,
  //            5 x 1,841,921 (12 linears), query_scale 131,584, ref_point_head 197,120,
  //            ref_anchor_head 66,306, post-norm 512  11,512,840
  //   anchors 1,200; class head 20,560; box head 132,612  154,372
  const auto o = engine::dab_detr_options(preset("align_dab_detr_r50_50ep.yaml"));
  model::DabDetr model(o);
  EXPECT_EQ(trainable_parameters(*model), 43'659'282);
}

}  // namespace
}  // namespace aligndetr::model
