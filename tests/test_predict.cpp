// Prediction on image files: one results file in the COCO results format (our reader and
// pycocotools read it), its detections exactly those of the evaluation path, and a picture per
// image.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "aligndetr/coco/annotations.h"
#include "aligndetr/coco/results.h"
#include "aligndetr/data/dataset.h"
#include "aligndetr/data/synth.h"
#include "aligndetr/engine/inference.h"
#include "aligndetr/engine/predict.h"
#include "aligndetr/model/dino.h"
#include "test_support.h"

namespace aligndetr {
namespace {

namespace fs = std::filesystem;

model::DinoOptions tiny_dino() {
  model::DinoOptions o;
  o.backbone.depth = 18;
  o.num_classes = 8;
  o.transformer.embed_dim = 64;
  o.transformer.num_heads = 4;
  o.transformer.num_points = 2;
  o.transformer.encoder_layers = 1;
  o.transformer.decoder_layers = 2;
  o.transformer.ffn_dim = 128;
  o.transformer.num_queries = 30;
  return o;
}

TEST(Predict, ResultsFileHoldsTheEvaluationDetectionsWithFileNames) {
  testing::TempDir dir;
  data::SynthOptions so;
  so.out_dir = (dir / "synth").string();
  so.train_images = 0;
  so.val_images = 2;
  so.size = 128;
  so.min_object_size = 16;
  data::write_synthetic_dataset(so);
  const auto images = dir / "synth/images/val";
  const auto categories = coco::CategoryMap(
      coco::read_coco((dir / "synth/annotations/instances_val.json").string()).categories);

  torch::manual_seed(0);
  model::Dino dino(tiny_dino());
  data::TransformOptions transforms;
  transforms.test_short_size = 96;
  transforms.test_max_size = 160;
  engine::PredictOptions po;
  po.input = images.string();
  po.out_dir = (dir / "out").string();
  po.top_k = 7;
  po.score_threshold = 0.0;
  const auto summary = engine::predict_images(*dino, transforms, categories, torch::kCPU, po);
  EXPECT_EQ(summary.images, 2);
  EXPECT_EQ(summary.skipped, 0);
  EXPECT_EQ(summary.detections, 14);

  const auto results = coco::read_coco_results(summary.results_path);
  ASSERT_EQ(results.size(), 14u);
  std::ifstream in(summary.results_path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());

  // The same images through the evaluation path: the same detections, number for number.
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(images)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  ASSERT_EQ(files.size(), 2u);
  dino->eval();
  torch::NoGradGuard no_grad;
  model::PostprocessOptions top7;
  top7.top_k = 7;
  for (size_t i = 0; i < files.size(); ++i) {
    EXPECT_NE(text.find("\"file_name\": \"" + files[i].filename().string() + "\""),
              std::string::npos);
    EXPECT_TRUE(fs::exists(dir / "out" / (files[i].stem().string() + ".png")));
    data::Annotated sample;
    sample.image = data::read_image_rgb(files[i].string());
    const std::array<int64_t, 2> orig{sample.image.rows, sample.image.cols};
    data::apply_eval_transforms(sample, transforms);
    const auto s = data::to_sample(sample, int64_t(i + 1), orig);
    const auto out =
        dino->forward(s.image.unsqueeze(0),
                      torch::zeros({1, s.image.size(1), s.image.size(2)}, torch::kBool), nullptr);
    const auto expected = engine::to_coco_detections(out, {s.target}, categories, top7);
    ASSERT_EQ(expected.size(), 7u);
    for (size_t k = 0; k < expected.size(); ++k) {
      const auto& got = results[i * 7 + k];
      EXPECT_EQ(got.image_id, int64_t(i + 1));
      EXPECT_EQ(got.category_id, expected[k].category_id);
      EXPECT_EQ(got.score, expected[k].score);
      for (int c = 0; c < 4; ++c) EXPECT_EQ(got.bbox[size_t(c)], expected[k].bbox[size_t(c)]);
    }
  }
}

}  // namespace
}  // namespace aligndetr
