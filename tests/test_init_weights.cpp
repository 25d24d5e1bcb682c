// Initial weights of a new run: files loaded by name (with a prefix, strictly or not), what stays
// random listed, and fine-tuning on another class set (class rows re-initialised to the prior, or
// kept by name).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "aligndetr/engine/config.h"
#include "aligndetr/engine/experiment.h"
#include "aligndetr/engine/init_weights.h"
#include "aligndetr/model/backbone.h"
#include "aligndetr/model/dino.h"
#include "aligndetr/model/weights.h"
#include "aligndetr/util/error.h"
#include "aligndetr/util/sha256.h"
#include "support/model_options.h"
#include "test_support.h"

namespace aligndetr {
namespace {

model::TensorDict snapshot(const torch::nn::Module& m) {
  model::TensorDict out;
  for (const auto& kv : model::module_state(m)) out.insert(kv.key(), kv.value().detach().clone());
  return out;
}

engine::InitWeightsFile init_file(const std::string& file, const std::string& prefix = "",
                                  bool strict = false) {
  engine::InitWeightsFile f;
  f.file = file;
  f.prefix = prefix;
  f.strict = strict;
  return f;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

struct FineTune : ::testing::Test {
  void SetUp() override {
    torch::manual_seed(0);
    model::Dino old(testing::tiny_dino_options(3));
    saved = snapshot(*old);
    model::save_module((dir / "old.pt").string(), *old, {"circle", "square", "star"});
  }
  testing::TempDir dir;
  model::TensorDict saved;
};

TEST_F(FineTune, ClassesByNameKeepTheirRowsTheRestLoadsAndNewClassesKeepThePrior) {
  torch::manual_seed(1);
  model::Dino fresh(testing::tiny_dino_options(2));
  const auto initial = snapshot(*fresh);
  engine::InitWeightsOptions o;
  o.files.push_back(init_file((dir / "old.pt").string()));
  o.class_map = engine::ClassMap::kByName;
  const auto report = engine::apply_init_weights(*fresh, o, {"star", "ring"});
  EXPECT_EQ(report.kept_classes, (std::vector<std::string>{"star"}));
  EXPECT_TRUE(report.random_modules.empty()) << report.text;
  EXPECT_EQ(report.sha256,
            (std::vector<std::string>{util::sha256_file((dir / "old.pt").string())}));

  const auto now = snapshot(*fresh);
  const auto classes = fresh->class_parameters();
  for (const auto& kv : now) {
    const bool class_row = std::find(classes.begin(), classes.end(), kv.key()) != classes.end();
    if (class_row) {
      // New label 0 ("star") has the old label 2's row; new label 1 ("ring") its fresh one.
      EXPECT_TRUE(torch::equal(kv.value()[0], saved[kv.key()][2])) << kv.key();
      EXPECT_TRUE(torch::equal(kv.value()[1], initial[kv.key()][1])) << kv.key();
    } else {
      EXPECT_TRUE(torch::equal(kv.value(), saved[kv.key()])) << kv.key();
    }
  }
  // The fresh rows are the reference's prior.
  EXPECT_NEAR(now["class_embed.0.bias"][1].item<float>(), -std::log(0.99f / 0.01f), 1e-6);
}

TEST_F(FineTune, OtherClassesAreReinitialisedAndListed) {
  torch::manual_seed(1);
  model::Dino fresh(testing::tiny_dino_options(3));
  const auto initial = snapshot(*fresh);
  engine::InitWeightsOptions o;
  o.files.push_back(init_file((dir / "old.pt").string()));
  // Same count, other names: the rows mean other things, so they are not loaded.
  const auto report = engine::apply_init_weights(*fresh, o, {"cat", "dog", "star"});
  const auto classes = fresh->class_parameters();
  EXPECT_EQ(report.reinitialised.size(), classes.size());
  EXPECT_TRUE(report.kept_classes.empty());
  const auto now = snapshot(*fresh);
  for (const auto& name : classes) EXPECT_TRUE(torch::equal(now[name], initial[name])) << name;
  EXPECT_TRUE(
      torch::equal(now["bbox_embed.0.layers.0.weight"], saved["bbox_embed.0.layers.0.weight"]));
  EXPECT_NE(report.text.find("by_name"), std::string::npos) << report.text;
  bool listed = false;
  for (const auto& m : report.random_modules) listed = listed || starts_with(m, "label_enc");
  EXPECT_TRUE(listed) << report.text;
  // The same names load everything as it is.
  torch::manual_seed(1);
  model::Dino same(testing::tiny_dino_options(3));
  const auto full = engine::apply_init_weights(*same, o, {"circle", "square", "star"});
  EXPECT_TRUE(full.reinitialised.empty());
  EXPECT_TRUE(full.random_modules.empty()) << full.text;
  EXPECT_TRUE(torch::equal(snapshot(*same)["label_enc.weight"], saved["label_enc.weight"]));
}

TEST(InitWeights, ABackboneFileUnderAPrefixStrictlyAndWhatStaysRandom) {
  testing::TempDir dir;
  torch::manual_seed(3);
  model::ResNetOptions ro;
  ro.depth = 18;
  model::ResNet resnet(ro);
  auto tensors = snapshot(*resnet);
  model::save_tensors((dir / "r18.pt").string(), tensors);
  torch::manual_seed(1);
  model::Dino dino(testing::tiny_dino_options(2));
  engine::InitWeightsOptions o;
  o.files.push_back(init_file((dir / "r18.pt").string(), "backbone.", /*strict=*/true));
  const auto report = engine::apply_init_weights(*dino, o, {"a", "b"});
  const auto now = snapshot(*dino);
  for (const auto& kv : tensors) {
    EXPECT_TRUE(torch::equal(now["backbone." + kv.key()], kv.value())) << kv.key();
  }
  for (const auto& m : report.random_modules) EXPECT_FALSE(starts_with(m, "backbone")) << m;
  EXPECT_FALSE(report.random_modules.empty());
  EXPECT_NE(report.text.find("transformer.encoder"), std::string::npos) << report.text;

  // A classifier head the backbone lacks: unexpected, an error when strict.
  tensors.insert("fc.weight", torch::zeros({1000, 512}));
  model::save_tensors((dir / "r18_fc.pt").string(), tensors);
  o.files[0].file = (dir / "r18_fc.pt").string();
  try {
    engine::apply_init_weights(*dino, o, {"a", "b"});
    FAIL();
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("backbone.fc.weight"), std::string::npos) << e.what();
  }
  o.files[0].strict = false;
  EXPECT_NE(
      engine::apply_init_weights(*dino, o, {"a", "b"}).text.find("unexpected: backbone.fc.weight"),
      std::string::npos);
}

TEST(InitWeights, MissingFilesAndChangedFilesAreClearErrors) {
  testing::TempDir dir;
  torch::manual_seed(1);
  model::Dino dino(testing::tiny_dino_options(2));
  engine::InitWeightsOptions o;
  engine::InitWeightsFile f;
  f.file = (dir / "weights/resnet50.pth").string();
  f.hint = "download it from the model zoo";
  o.files.push_back(f);
  try {
    engine::apply_init_weights(*dino, o, {"a", "b"});
    FAIL();
  } catch (const util::InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("model.init_weights.0: '" + f.file + "' not found; download it"),
              std::string::npos)
        << what;
  }
  model::save_module((dir / "w.pt").string(), *dino);
  o.files[0].file = (dir / "w.pt").string();
  o.files[0].sha256 = std::string(64, '0');
  EXPECT_THROW(engine::apply_init_weights(*dino, o, {"a", "b"}), util::InputError);
}

TEST(InitWeights, CategoryNamesTravelInOurWeightFiles) {
  testing::TempDir dir;
  torch::manual_seed(1);
  model::Dino dino(testing::tiny_dino_options(2));
  model::save_module((dir / "w.pt").string(), *dino, {"a b", "c"});
  const auto loaded = model::load_tensors((dir / "w.pt").string());
  EXPECT_EQ(model::category_names(loaded), (std::vector<std::string>{"a b", "c"}));
  // and never get in the way of loading
  EXPECT_TRUE(model::load_state_dict(*dino, loaded, /*strict=*/true).complete());
}

TEST(InitWeights, TheR50PresetsNameTheirImageNetBackboneAndSayWhereToGetIt) {
  const auto preset = engine::Config::load(std::string(ALIGNDETR_SOURCE_DIR) +
                                           "/configs/align_dino_r50_4scale_12ep.yaml");
  const auto init = engine::model_spec(preset).init;
  ASSERT_EQ(init.files.size(), 1u);
  EXPECT_EQ(init.files[0].file, "weights/resnet50-0676ba61.pth");
  EXPECT_EQ(init.files[0].prefix, "backbone.");
  torch::manual_seed(1);
  model::Dino dino(testing::tiny_dino_options(2));
  auto missing = init;
  missing.files[0].file = "no/such/resnet50.pth";
  try {
    engine::apply_init_weights(*dino, missing, {"a", "b"});
    FAIL();
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "download https://download.pytorch.org/models/resnet50-0676ba61.pth"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace aligndetr
