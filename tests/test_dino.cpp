#include <gtest/gtest.h>
#include <torch/torch.h>

#include "aligndetr/loss/criterion.h"
#include "aligndetr/model/denoising.h"
#include "aligndetr/model/dino.h"
#include "aligndetr/model/postprocess.h"
#include "support/targets.h"

namespace aligndetr::model {
namespace {

model::DinoOptions tiny_dino() {
  model::DinoOptions o;
  o.backbone.depth = 18;
  o.num_classes = 5;
  o.transformer.embed_dim = 64;
  o.transformer.num_heads = 4;
  o.transformer.num_points = 2;
  o.transformer.encoder_layers = 2;
  o.transformer.decoder_layers = 2;
  o.transformer.ffn_dim = 128;
  o.transformer.num_queries = 20;
  o.denoising.dn_number = 6;
  return o;
}

TEST(Denoising, AttentionMaskBlocks) {
  // 2 groups of 2 * max_gt(=1) slots, then 3 matching queries.
  const auto m = model::denoising_attention_mask(2, 1, 3, torch::kCPU);
  const std::vector<std::vector<int>> expected = {
      {0, 0, 1, 1, 0, 0, 0}, {0, 0, 1, 1, 0, 0, 0}, {1, 1, 0, 0, 0, 0, 0}, {1, 1, 0, 0, 0, 0, 0},
      {1, 1, 1, 1, 0, 0, 0}, {1, 1, 1, 1, 0, 0, 0}, {1, 1, 1, 1, 0, 0, 0}};
  for (int i = 0; i < 7; ++i) {
    for (int j = 0; j < 7; ++j)
      EXPECT_EQ(m[i][j].item<bool>(), bool(expected[i][j])) << i << "," << j;
  }
}

TEST(Denoising, GroupsSlotsAndNoise) {
  torch::manual_seed(0);
  torch::nn::Embedding enc(5, 8);
  model::DenoisingOptions o;
  o.dn_number = 6;
  o.label_noise_ratio = 0.0;
  const auto dn = model::prepare_denoising(testing::two_image_targets(), 10, 5, enc, o);
  ASSERT_TRUE(dn.has_value());
  EXPECT_EQ(dn->max_gt, 2);
  EXPECT_EQ(dn->groups, 3);  // 6 / 2
  EXPECT_EQ(dn->size(), 12);
  EXPECT_EQ(dn->queries.content.sizes(), torch::IntArrayRef({2, 12, 8}));
  EXPECT_EQ(dn->queries.attn_mask.sizes(), torch::IntArrayRef({22, 22}));
  // Image 0: GT j of group g sits at g * 4 + j; sorted by GT.
  EXPECT_TRUE(torch::equal(dn->pairs[0].query, torch::tensor({0, 4, 8, 1, 5, 9}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(dn->pairs[0].gt, torch::tensor({0, 0, 0, 1, 1, 1}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(dn->pairs[1].query, torch::tensor({0, 4, 8}, torch::kInt64)));
  // Without label noise the content is the label's embedding; image 1's padding slot 1 is zero.
  EXPECT_TRUE(torch::allclose(dn->queries.content[1][4], enc->weight[4]));
  EXPECT_EQ(dn->queries.content[1][1].abs().sum().item<float>(), 0.0f);
  // Positives move each corner by less than half the box size, negatives by half to one size.
  const auto gt = torch::tensor({0.5f, 0.5f, 0.5f, 0.5f});
  const auto pos_box = dn->queries.boxes_unact[1][0].sigmoid();
  const auto corner = [](const torch::Tensor& b) {
    return torch::cat(
        {b.narrow(0, 0, 2) - b.narrow(0, 2, 2) / 2, b.narrow(0, 0, 2) + b.narrow(0, 2, 2) / 2});
  };
  EXPECT_TRUE(((corner(pos_box) - corner(gt)).abs() <= 0.25 + 1e-4).all().item<bool>());
  // Negatives (slots 2, 6, 10 of image 1) move each corner by 0.25 to 0.5, unless clamped to the
  // image; corners may cross, which leaves a collapsed box (as in the reference).
  int checked = 0;
  for (int64_t slot : {2, 6, 10}) {
    const auto neg_box = dn->queries.boxes_unact[1][slot].sigmoid();
    if ((neg_box.narrow(0, 2, 2) <= 2e-3).any().item<bool>()) continue;
    const auto c = corner(neg_box);
    const auto shift = (c - corner(gt)).abs();
    EXPECT_TRUE(((shift >= 0.25 - 1e-4) | (c <= 1e-3) | (c >= 1 - 1e-3)).all().item<bool>())
        << neg_box;
    EXPECT_TRUE((shift <= 0.5 + 1e-4).all().item<bool>()) << neg_box;
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

TEST(Denoising, NothingWithoutBoxes) {
  torch::nn::Embedding enc(5, 8);
  std::vector<boxes::Target> empty(2);
  for (auto& t : empty) {
    t.labels = torch::empty({0}, torch::kInt64);
    t.boxes = torch::empty({0, 4});
  }
  EXPECT_FALSE(model::prepare_denoising(empty, 10, 5, enc, {}).has_value());
}

TEST(Dino, ParameterNamesAndIndependentHeads) {
  model::Dino model(tiny_dino());
  const auto params = model->named_parameters();
  for (const char* name :
       {"backbone.conv1.weight", "neck.convs.0.conv.weight", "transformer.level_embeds",
        "class_embed.2.weight", "bbox_embed.2.layers.2.bias", "label_enc.weight"}) {
    EXPECT_TRUE(params.contains(name)) << name;
  }
  // Same start, separate tensors.
  EXPECT_TRUE(torch::equal(params["class_embed.0.weight"], params["class_embed.2.weight"]));
  EXPECT_NE(params["class_embed.0.weight"].data_ptr(), params["class_embed.2.weight"].data_ptr());
  EXPECT_NEAR(params["class_embed.1.bias"][0].item<float>(), -std::log(99.0f), 1e-5);
  EXPECT_EQ(params["bbox_embed.1.layers.2.weight"].abs().sum().item<float>(), 0.0f);
}

TEST(Dino, TrainingForwardBackwardThroughTheCriterion) {
  torch::manual_seed(0);
  model::Dino model(tiny_dino());
  model->train();
  const auto images = torch::randn({2, 3, 128, 160});
  auto mask = torch::zeros({2, 128, 160}, torch::kBool);
  mask[1].narrow(1, 120, 40).fill_(true);
  const auto t = testing::two_image_targets();
  const auto out = model->forward(images, mask, &t);
  ASSERT_EQ(out.decoder.size(), 2u);
  EXPECT_EQ(out.decoder[1].logits.sizes(), torch::IntArrayRef({2, 20, 5}));
  ASSERT_TRUE(out.encoder.has_value());
  ASSERT_TRUE(out.denoising.has_value());
  EXPECT_EQ(out.denoising->groups, 3);
  EXPECT_EQ(out.denoising->layers[0].boxes.sizes(), torch::IntArrayRef({2, 12, 4}));

  const auto losses = loss::compute_criterion(out, t, loss::CriterionOptions::paper());
  for (const char* name :
       {"loss_class", "loss_bbox_0", "loss_giou_enc", "loss_class_dn", "loss_bbox_dn_0"}) {
    EXPECT_TRUE(losses.weighted.count(name)) << name;
  }
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
  // The stem is frozen (freeze_at = 1).
  EXPECT_FALSE(model->named_parameters()["backbone.conv1.weight"].requires_grad());
}

TEST(Dino, DeterministicForASeedAndNoDenoisingInEval) {
  torch::manual_seed(3);
  model::Dino a(tiny_dino());
  torch::manual_seed(3);
  model::Dino b(tiny_dino());
  a->eval();
  b->eval();
  torch::NoGradGuard no_grad;
  const auto images = torch::randn({1, 3, 96, 96});
  const auto mask = torch::zeros({1, 96, 96}, torch::kBool);
  const auto t = testing::two_image_targets();
  const auto oa = a->forward(images, mask, &t);
  const auto ob = b->forward(images, mask);
  EXPECT_FALSE(oa.denoising.has_value());
  EXPECT_TRUE(torch::equal(oa.decoder[1].logits, ob.decoder[1].logits));
  EXPECT_TRUE(torch::equal(oa.decoder[1].boxes, ob.decoder[1].boxes));
}

// Two images of different sizes in one padded batch, as evaluation batches them. With detrex's
// all-valid mask the model sees the smaller image's padding as part of it; its boxes must still
// be reported relative to the image itself (as with the real mask, and as post-processing scales
// them): the boxes of the padded image run alone, scaled by canvas / valid size.
TEST(Dino, EvaluationOnAPaddedBatchReportsBoxesRelativeToEachImage) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(5);
  auto images = torch::randn({2, 3, 96, 128});
  auto mask = torch::zeros({2, 96, 128}, torch::kBool);
  // Image 1 is 64 x 96 (h x w), zero-padded as the loader pads.
  mask[1].index_put_({torch::indexing::Slice(64, torch::indexing::None)}, true);
  mask[1].index_put_({torch::indexing::Slice(), torch::indexing::Slice(96, torch::indexing::None)},
                     true);
  images[1].masked_fill_(mask[1].unsqueeze(0), 0.0);

  auto options = tiny_dino();
  options.eval_ignores_padding_mask = true;
  torch::manual_seed(3);
  model::Dino model(options);
  model->eval();
  const auto batched = model->forward(images, mask);
  const auto alone =
      model->forward(images.narrow(0, 1, 1), torch::zeros({1, 96, 128}, torch::kBool));
  const auto scale = torch::tensor({128.0f / 96, 96.0f / 64, 128.0f / 96, 96.0f / 64});
  for (size_t l = 0; l < batched.decoder.size(); ++l) {
    EXPECT_TRUE(
        torch::allclose(batched.decoder[l].logits[1], alone.decoder[l].logits[0], 1e-4, 1e-5))
        << "layer " << l;
    EXPECT_TRUE(
        torch::allclose(batched.decoder[l].boxes[1], alone.decoder[l].boxes[0] * scale, 1e-4, 1e-5))
        << "layer " << l;
  }
  EXPECT_TRUE(
      torch::allclose(batched.encoder->boxes[1], alone.encoder->boxes[0] * scale, 1e-4, 1e-5));
}

TEST(Postprocess, TopKOverQueriesAndClassesScaledAndClipped) {
  // 2 queries x 3 classes; the best three entries: (q1, c2), (q0, c0), (q1, c0).
  const auto logits = torch::tensor({2.0f, -5.0f, -4.0f, 1.0f, -6.0f, 3.0f}).view({1, 2, 3});
  const auto boxes =
      torch::tensor({0.5f, 0.5f, 0.2f, 0.4f, 0.9f, 0.5f, 0.4f, 0.2f}).view({1, 2, 4});
  PostprocessOptions options;
  options.top_k = 3;
  const auto d = model::postprocess(logits, boxes, {{{100, 200}}}, options);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_TRUE(torch::equal(d[0].labels, torch::tensor({2, 0, 0}, torch::kInt64)));
  EXPECT_NEAR(d[0].scores[0].item<float>(), 1 / (1 + std::exp(-3.0f)), 1e-6);
  // Query 1: cx 0.9, w 0.4 -> x from 0.7 to 1.1, clipped to 1.0 -> pixels 140..200; y 40..60.
  const auto b0 = d[0].boxes[0];
  EXPECT_NEAR(b0[0].item<float>(), 140, 1e-3);
  EXPECT_NEAR(b0[1].item<float>(), 40, 1e-3);
  EXPECT_NEAR(b0[2].item<float>(), 200, 1e-3);
  EXPECT_NEAR(b0[3].item<float>(), 60, 1e-3);
  // Query 0: x 80..120, y 30..70.
  EXPECT_NEAR(d[0].boxes[1][0].item<float>(), 80, 1e-3);
  EXPECT_NEAR(d[0].boxes[1][3].item<float>(), 70, 1e-3);
}

TEST(Postprocess, DropsBoxesEmptyAfterClipping) {
  const auto logits = torch::zeros({1, 2, 1});
  const auto boxes =
      torch::tensor({1.5f, 0.5f, 0.2f, 0.2f, 0.5f, 0.5f, 0.2f, 0.2f}).view({1, 2, 4});
  PostprocessOptions options;
  options.top_k = 2;
  const auto d = model::postprocess(logits, boxes, {{{10, 10}}}, options);
  EXPECT_EQ(d[0].boxes.size(0), 1);
}

TEST(Postprocess, WithoutClippingKeepsBoxesAsPredictedLikeTheOfficialDino) {
  // Both queries are kept: x 14..16 (outside a 10-pixel image) and 4..6, unclipped.
  const auto logits = torch::tensor({1.0f, 0.0f}).view({1, 2, 1});
  const auto boxes =
      torch::tensor({1.5f, 0.5f, 0.2f, 0.2f, 0.5f, 0.5f, 0.2f, 0.2f}).view({1, 2, 4});
  PostprocessOptions options;
  options.top_k = 2;
  options.clip_boxes = false;
  const auto d = model::postprocess(logits, boxes, {{{10, 10}}}, options);
  ASSERT_EQ(d[0].boxes.size(0), 2);
  EXPECT_TRUE(torch::allclose(
      d[0].boxes, torch::tensor({14.0f, 4.0f, 16.0f, 6.0f, 4.0f, 4.0f, 6.0f, 6.0f}).view({2, 4})));
  EXPECT_TRUE(torch::equal(d[0].scores, torch::sigmoid(torch::tensor({1.0f, 0.0f}))));
}

}  // namespace
}  // namespace aligndetr::model
