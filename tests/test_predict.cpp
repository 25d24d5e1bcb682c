// Prediction on image files: one results file in the COCO results format (our reader and
// pycocotools read it), its detections exactly those of the evaluation path, and a picture per
// image.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include "aligndetr/coco/annotations.h"
#include "aligndetr/coco/results.h"
#include "aligndetr/data/dataset.h"
#include "aligndetr/data/synth.h"
#include "aligndetr/engine/checkpoint.h"
#include "aligndetr/engine/evaluation.h"
#include "aligndetr/engine/inference.h"
#include "aligndetr/engine/predict.h"
#include "aligndetr/model/dino.h"
#include "aligndetr/model/weights.h"
#include "aligndetr/util/error.h"
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

// Inputs are never written over and every input gets its own picture: --out equal to or inside
// the input directory, a picture that would replace the single input, --out naming a file and a
// file name results.json cannot hold are errors before anything is written; a.jpg and a.png
// both keep a picture.
class PredictOutputs : public ::testing::Test {
 protected:
  void SetUp() override {
    data::SynthOptions so;
    so.out_dir = (dir_ / "synth").string();
    so.train_images = 0;
    so.val_images = 2;
    so.size = 96;
    so.min_object_size = 16;
    data::write_synthetic_dataset(so);
    images_ = dir_ / "images";
    fs::create_directories(images_);
    std::vector<fs::path> made;
    for (const auto& e : fs::directory_iterator(dir_ / "synth/images/val"))
      made.push_back(e.path());
    std::sort(made.begin(), made.end());
    // a.jpg, and the other image as a.png: two inputs with one stem.
    fs::copy_file(made[0], images_ / "a.jpg");
    const cv::Mat second = cv::imread(made[1].string());
    cv::imwrite((images_ / "a.png").string(), second);
    torch::manual_seed(0);
    transforms_.test_short_size = 64;
    transforms_.test_max_size = 96;
  }

  engine::PredictSummary predict(const fs::path& input, const fs::path& out) {
    engine::PredictOptions po;
    po.input = input.string();
    po.out_dir = out.string();
    po.top_k = 3;
    return engine::predict_images(*dino_, transforms_, {}, torch::kCPU, po);
  }

  std::string bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  testing::TempDir dir_;
  fs::path images_;
  data::TransformOptions transforms_;
  model::Dino dino_{tiny_dino()};
};

TEST_F(PredictOutputs, TwoInputsWithOneStemGetTwoPictures) {
  const auto s = predict(images_, dir_ / "out");
  EXPECT_EQ(s.images, 2);
  EXPECT_TRUE(fs::exists(dir_ / "out/a.jpg.png"));
  EXPECT_TRUE(fs::exists(dir_ / "out/a.png.png"));
  const auto text = bytes(dir_ / "out/results.json");
  EXPECT_NE(text.find("\"file_name\": \"a.jpg\""), std::string::npos);
  EXPECT_NE(text.find("\"file_name\": \"a.png\""), std::string::npos);
}

TEST_F(PredictOutputs, AnOutputDirectoryThatWouldTouchTheInputsIsRefused) {
  const std::string before = bytes(images_ / "a.png");
  for (const auto& out : {images_, images_ / "pictures", images_ / "." / "deeper" / ".."}) {
    try {
      predict(images_, out);
      ADD_FAILURE() << "--out " << out << " was accepted";
    } catch (const util::InputError& e) {
      EXPECT_NE(std::string(e.what()).find("inside the input directory"), std::string::npos)
          << e.what();
    }
  }
  // One image into its own directory: its picture would be the image itself.
  try {
    predict(images_ / "a.png", images_);
    ADD_FAILURE() << "a picture over its own input was accepted";
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("over the input"), std::string::npos) << e.what();
  }
  EXPECT_EQ(bytes(images_ / "a.png"), before);
  EXPECT_FALSE(fs::exists(images_ / "pictures"));
  EXPECT_FALSE(fs::exists(images_ / "results.json"));
  // --out naming a file.
  testing::write_text(dir_ / "file", "x");
  EXPECT_THROW(predict(images_, dir_ / "file"), util::InputError);
}

TEST_F(PredictOutputs, AFileNameThatIsNotUtf8IsNamedAndNothingIsWritten) {
  fs::copy_file(images_ / "a.jpg", images_ / "caf\xe9.jpg");
  try {
    predict(images_, dir_ / "out");
    FAIL() << "a Latin-1 file name was accepted";
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'caf\\xe9.jpg'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not UTF-8"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir_ / "out"));
}

coco::CategoryMap abc() {
  return coco::CategoryMap({{1, "a", ""}, {2, "b", ""}, {3, "c", ""}});
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const util::InputError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Categories, TheWeightsAndTheDatasetMustAgreeOnCountAndNames) {
  EXPECT_NO_THROW(engine::check_categories(3, {}, abc(), "x.json", false));
  EXPECT_NO_THROW(engine::check_categories(3, {"a", "b", "c"}, abc(), "x.json", false));
  EXPECT_NE(error_of([] {
              engine::check_categories(4, {}, abc(), "x.json", true);
            }).find("x.json has 3 categories but the model predicts 4 classes"),
            std::string::npos);
  const auto swapped = error_of([] {
    engine::check_categories(3, {"a", "c", "b"}, abc(), "x.json", false);
  });
  EXPECT_NE(swapped.find("the weights' class names differ from the categories of x.json (2 of 3: "
                         "label 1: 'c' in the weights, 'b' in the dataset; label 2: 'b' in the "
                         "weights, 'c' in the dataset)"),
            std::string::npos)
      << swapped;
  EXPECT_NE(swapped.find("--ignore-category-names"), std::string::npos);
  EXPECT_NO_THROW(engine::check_categories(3, {"a", "c", "b"}, abc(), "x.json", true));
  // A file recording another number of names than its classes is not the dataset's either.
  EXPECT_NE(error_of([] {
              engine::check_categories(3, {"a", "b"}, abc(), "x.json", false);
            }).find("differ"),
            std::string::npos);
}

TEST(Categories, WeightsRecordTheirNamesAndPredictNamesByThemWithoutADataset) {
  testing::TempDir dir;
  data::SynthOptions so;
  so.out_dir = dir.path().string();
  so.train_images = 0;
  so.val_images = 1;
  so.size = 64;
  data::write_synthetic_dataset(so);
  const auto ann = (dir / "annotations/instances_val.json").string();
  const auto dataset = coco::read_coco(ann);
  std::vector<std::string> names;
  for (const auto& c : dataset.categories) names.push_back(c.name);

  model::Dino dino(tiny_dino());
  ASSERT_EQ(names.size(), size_t(dino->num_classes()));
  model::save_module((dir / "w.pt").string(), *dino, names);
  model::Dino loaded(tiny_dino());
  EXPECT_EQ(engine::load_checkpoint((dir / "w.pt").string(), *loaded).category_names, names);

  EXPECT_EQ(engine::predict_categories(*dino, names, ann, false).name(3), names[3]);
  auto reversed = names;
  std::reverse(reversed.begin(), reversed.end());
  EXPECT_NE(error_of([&] {
              engine::predict_categories(*dino, reversed, ann, false);
            }).find("class names differ"),
            std::string::npos);
  // No annotations to read: the weights' own names, numbered by label.
  const auto own = engine::predict_categories(*dino, reversed, (dir / "none.json").string(), false);
  ASSERT_EQ(own.num_classes(), dino->num_classes());
  EXPECT_EQ(own.name(0), reversed[0]);
  EXPECT_EQ(own.category_id(5), 5);
  // A model of fewer classes than the annotations name.
  auto five = tiny_dino();
  five.num_classes = 5;
  model::Dino small(five);
  EXPECT_NE(error_of([&] {
              engine::predict_categories(*small, {}, ann, false);
            }).find("has 8 categories but the model predicts 5 classes"),
            std::string::npos);
}

TEST(PredictCli, ThresholdsAndCountsThatMeanNothingAreUsageErrors) {
  const std::string config = std::string(ALIGNDETR_SOURCE_DIR) + "/configs/align_dino_tiny.yaml";
  const std::string rest = " --weights w.pt --input in --out out";
  for (const char* bad : {"--score-thr nan", "--score-thr 1.5", "--score-thr x", "--top-k 0"}) {
    const auto r = testing::run_cli("predict --config " + config + rest + " " + bad);
    EXPECT_EQ(r.exit_code, 3) << bad << ": " << r.output;
  }
  const auto threads = testing::run_cli("--threads 5000 model info --config " + config);
  EXPECT_EQ(threads.exit_code, 3) << threads.output;
  EXPECT_NE(threads.output.find("--threads"), std::string::npos) << threads.output;
}

}  // namespace
}  // namespace aligndetr
