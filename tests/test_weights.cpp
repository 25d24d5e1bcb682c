// Checkpoints: our format round trip, loading by name with its report (missing, unexpected,
// shape mismatches; strict refusal leaves the module untouched), renaming, bad files, and the
// `weights` command.

#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include <torch/torch.h>

#include "aligndetr/model/backbone.h"
#include "aligndetr/model/import.h"
#include "aligndetr/model/weights.h"
#include "aligndetr/util/atomic_file.h"
#include "aligndetr/util/error.h"
#include "support/model_options.h"
#include "test_support.h"

namespace aligndetr {
namespace {

namespace fs = std::filesystem;
using testing::run_cli;
using testing::TempDir;

struct TinyImpl : torch::nn::Module {
  TinyImpl() {
    linear = register_module("linear", torch::nn::Linear(3, 2));
    register_buffer("stat", torch::zeros({4}));
  }
  torch::nn::Linear linear{nullptr};
};

TEST(Weights, RoundTripOfAResNet) {
  TempDir dir;
  const std::string path = (dir / "r18.pt").string();
  torch::manual_seed(1);
  model::ResNet a(testing::resnet_options(18, 1, false, {4}));
  a->named_buffers(true)["layer2.1.bn2.running_var"].uniform_(0.5, 2.0);
  model::save_module(path, *a);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  torch::manual_seed(2);
  model::ResNet b(testing::resnet_options(18, 1, false, {4}));
  const model::LoadReport report = model::load_module(path, *b, /*strict=*/true);
  EXPECT_TRUE(report.complete()) << report.to_text();
  EXPECT_EQ(report.loaded.size(), 20u + 20u * 4u);
  const model::TensorDict sa = model::module_state(*a), sb = model::module_state(*b);
  ASSERT_EQ(sa.size(), sb.size());
  for (const auto& item : sa) EXPECT_TRUE(torch::equal(item.value(), sb[item.key()])) << item.key();
  // Loading keeps the destination's requires_grad (the frozen stem stays frozen).
  EXPECT_FALSE(b->named_parameters()["conv1.weight"].requires_grad());
  EXPECT_TRUE(b->named_parameters()["layer1.0.conv1.weight"].requires_grad());
}

TEST(Weights, ReportAndStrictRefusal) {
  TinyImpl tiny;
  const torch::Tensor original = tiny.linear->weight.clone();
  model::TensorDict file;
  file.insert("linear.weight", torch::ones({2, 3}, torch::kDouble));  // converted to float
  file.insert("linear.bias", torch::ones({5}));                       // wrong shape
  file.insert("extra.weight", torch::ones({1}));
  file.insert("bn.num_batches_tracked", torch::zeros({}, torch::kLong));

  try {
    model::load_state_dict(tiny, file, /*strict=*/true);
    FAIL() << "strict load accepted a mismatching file";
  } catch (const util::InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("stat"), std::string::npos) << msg;
    EXPECT_NE(msg.find("extra.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("linear.bias: [5] vs [2]"), std::string::npos) << msg;
  }
  EXPECT_TRUE(torch::equal(tiny.linear->weight, original));

  const model::LoadReport report = model::load_state_dict(tiny, file, /*strict=*/false);
  EXPECT_EQ(report.loaded, (std::vector<std::string>{"linear.weight"}));
  EXPECT_EQ(report.missing, (std::vector<std::string>{"stat"}));
  EXPECT_EQ(report.unexpected, (std::vector<std::string>{"extra.weight"}));
  EXPECT_EQ(report.mismatched, (std::vector<std::string>{"linear.bias: [5] vs [2]"}));
  EXPECT_EQ(report.ignored, (std::vector<std::string>{"bn.num_batches_tracked"}));
  EXPECT_FALSE(report.complete());
  EXPECT_EQ(tiny.linear->weight.dtype(), torch::kFloat);
  EXPECT_TRUE(torch::equal(tiny.linear->weight, torch::ones({2, 3})));
  EXPECT_TRUE(tiny.linear->weight.requires_grad());
}

TEST(Weights, RenamePrefixes) {
  model::TensorDict in;
  in.insert("backbone.0.body.conv1.weight", torch::zeros({1}));
  in.insert("backbone.0.body.layer1.0.conv1.weight", torch::zeros({1}));
  in.insert("transformer.x", torch::zeros({1}));
  int renamed = 0;
  const model::TensorDict out =
      model::rename_prefixes(in, {{"backbone.0.body.", ""}, {"backbone.", "b."}}, &renamed);
  EXPECT_EQ(renamed, 2);
  EXPECT_EQ(out.keys(),
            (std::vector<std::string>{"conv1.weight", "layer1.0.conv1.weight", "transformer.x"}));
  model::TensorDict clash;
  clash.insert("a.w", torch::zeros({1}));
  clash.insert("b.w", torch::zeros({1}));
  EXPECT_THROW(model::rename_prefixes(clash, {{"a.", "b."}}), util::InputError);
}

TEST(Weights, Detectron2ResNetNames) {
  model::TensorDict in;
  for (const char* name : {"backbone.stem.conv1.weight", "backbone.stem.conv1.norm.running_var",
                           "backbone.res2.0.conv3.norm.bias", "backbone.res2.0.shortcut.weight",
                           "backbone.res2.0.shortcut.norm.weight", "backbone.res5.2.conv2.weight",
                           "neck.convs.0.conv.weight", "res3.1.conv1.norm.weight"}) {
    in.insert(name, torch::zeros({1}));
  }
  int renamed = 0;
  const model::TensorDict out = model::detectron2_resnet_to_torchvision(in, &renamed);
  EXPECT_EQ(renamed, 7);
  EXPECT_EQ(
      out.keys(),
      (std::vector<std::string>{
          "backbone.conv1.weight", "backbone.bn1.running_var", "backbone.layer1.0.bn3.bias",
          "backbone.layer1.0.downsample.0.weight", "backbone.layer1.0.downsample.1.weight",
          "backbone.layer4.2.conv2.weight", "neck.convs.0.conv.weight", "layer2.1.bn1.weight"}));
}

TEST(Weights, CheckpointDictAndBadFiles) {
  TempDir dir;
  c10::impl::GenericDict inner(c10::StringType::get(), c10::AnyType::get());
  inner.insert("w", torch::arange(6).view({2, 3}).to(torch::kFloat));
  c10::impl::GenericDict outer(c10::StringType::get(), c10::AnyType::get());
  outer.insert("epoch", int64_t{7});
  outer.insert("model", inner);
  const std::vector<char> bytes = torch::pickle_save(outer);
  util::write_file_atomic((dir / "ckpt.pt").string(), std::string_view(bytes.data(), bytes.size()));
  const model::TensorDict loaded = model::load_tensors((dir / "ckpt.pt").string());
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_TRUE(torch::equal(loaded["w"], torch::arange(6).view({2, 3}).to(torch::kFloat)));

  // A dict with a non-tensor and no "model" entry is not a state_dict.
  c10::impl::GenericDict odd(c10::StringType::get(), c10::AnyType::get());
  odd.insert("w", torch::ones({1}));
  odd.insert("epoch", int64_t{7});
  const std::vector<char> odd_bytes = torch::pickle_save(odd);
  util::write_file_atomic((dir / "odd.pt").string(),
                          std::string_view(odd_bytes.data(), odd_bytes.size()));
  EXPECT_THROW(model::load_tensors((dir / "odd.pt").string()), util::InputError);

  testing::write_text(dir / "garbage.pt", "not a zip archive");
  EXPECT_THROW(model::load_tensors((dir / "garbage.pt").string()), util::InputError);
  EXPECT_THROW(model::load_tensors((dir / "missing.pt").string()), util::InputError);
  EXPECT_THROW(model::save_tensors((dir / "no/such/dir/x.pt").string(), loaded), util::InputError);
}

TEST(WeightsCli, InspectAndImport) {
  TempDir dir;
  model::ResNet net(testing::resnet_options(18, 1, false, {4}));
  model::TensorDict prefixed;
  for (const auto& item : model::module_state(*net)) {
    prefixed.insert("backbone.0.body." + item.key(), item.value());
  }
  prefixed.insert("fc.weight", torch::zeros({10, 512}));
  model::save_tensors((dir / "src.pt").string(), prefixed);

  const auto inspect = run_cli("weights inspect " + (dir / "src.pt").string());
  ASSERT_EQ(inspect.exit_code, 0) << inspect.output;
  EXPECT_NE(inspect.stdout_only.find("backbone.0.body.conv1.weight"), std::string::npos);
  EXPECT_NE(inspect.stdout_only.find("[64, 3, 7, 7]"), std::string::npos) << inspect.stdout_only;
  EXPECT_NE(inspect.stdout_only.find("  float  "), std::string::npos) << inspect.stdout_only;
  // 11,166,912 conv weights, 4 buffers per batch-norm channel (4,800 channels), fc.
  const int64_t total = 11166912 + 2 * 9600 + 10 * 512;
  EXPECT_NE(inspect.stdout_only.find("101 tensors, " + std::to_string(total) + " elements"),
            std::string::npos)
      << inspect.stdout_only;

  const std::string out = (dir / "out.pt").string();
  const auto import = run_cli("weights import --from " + (dir / "src.pt").string() + " --out " +
                              out + " --prefix-map backbone.0.body.= --drop fc. --backbone 18");
  ASSERT_EQ(import.exit_code, 0) << import.output;
  EXPECT_NE(import.stdout_only.find("101 tensors read, 100 renamed, 1 dropped, 100 written"),
            std::string::npos)
      << import.stdout_only;
  EXPECT_NE(import.stdout_only.find("loaded 100, missing 0, unexpected 0, shape mismatches 0"),
            std::string::npos)
      << import.stdout_only;
  model::ResNet again(testing::resnet_options(18, 1, false, {4}));
  EXPECT_TRUE(model::load_module(out, *again, /*strict=*/true).complete());
  EXPECT_TRUE(torch::equal(again->named_parameters()["layer3.0.conv1.weight"],
                           net->named_parameters()["layer3.0.conv1.weight"]));

  // The same backbone under detectron2's names, as in a detrex checkpoint.
  model::TensorDict d2;
  for (const auto& item : model::module_state(*net)) {
    std::string name = item.key();
    name = std::regex_replace(name, std::regex(R"(^conv1\.)"), "stem.conv1.");
    name = std::regex_replace(name, std::regex(R"(^bn1\.)"), "stem.conv1.norm.");
    name = std::regex_replace(name, std::regex(R"(\.downsample\.0\.)"), ".shortcut.");
    name = std::regex_replace(name, std::regex(R"(\.downsample\.1\.)"), ".shortcut.norm.");
    name = std::regex_replace(name, std::regex(R"(\.bn([123])\.)"), ".conv$1.norm.");
    for (int s = 1; s <= 4; ++s) {
      name = std::regex_replace(name, std::regex("^layer" + std::to_string(s) + "\\."),
                                "res" + std::to_string(s + 1) + ".");
    }
    d2.insert("backbone." + name, item.value());
  }
  ASSERT_TRUE(d2.contains("backbone.res3.0.shortcut.norm.running_mean"));
  model::save_tensors((dir / "d2.pt").string(), d2);
  const auto d2_import =
      run_cli("weights import --from " + (dir / "d2.pt").string() + " --out " + out +
              " --detectron2-resnet --prefix-map backbone.= --backbone 18");
  ASSERT_EQ(d2_import.exit_code, 0) << d2_import.output;
  EXPECT_NE(d2_import.stdout_only.find("100 detectron2 ResNet names converted"), std::string::npos)
      << d2_import.stdout_only;
  EXPECT_NE(d2_import.stdout_only.find("loaded 100, missing 0, unexpected 0, shape mismatches 0"),
            std::string::npos)
      << d2_import.stdout_only;

  EXPECT_EQ(run_cli("weights import --from " + (dir / "src.pt").string() + " --out " + out +
                    " --prefix-map nonsense")
                .exit_code,
            util::kExitInput);
  EXPECT_EQ(run_cli("weights inspect " + (dir / "missing.pt").string()).exit_code,
            util::kExitInput);
}

TEST(WeightsImport, LayoutThenPrefixRulesThenDrops) {
  model::TensorDict source;
  source.insert("backbone.0.body.conv1.weight", torch::ones({2}));
  source.insert("backbone.0.body.fc.weight", torch::ones({3}));
  source.insert("head.weight", torch::zeros({1}));
  model::ImportOptions options;
  options.prefix_map = {model::parse_prefix_rule("backbone.0.body.=backbone.")};
  options.drop = {"backbone.fc."};
  const auto imported = model::import_weights(source, options);
  EXPECT_EQ(imported.read, 3);
  EXPECT_EQ(imported.prefix_renamed, 2);
  EXPECT_EQ(imported.dropped, 1);
  EXPECT_EQ(imported.tensors.keys(),
            (std::vector<std::string>{"backbone.conv1.weight", "head.weight"}));
  // detectron2 names become torchvision's before the prefix rules see them.
  model::TensorDict d2;
  d2.insert("backbone.stem.conv1.weight", torch::ones({1}));
  options = {};
  options.layout = model::ImportLayout::kDetectron2ResNet;
  options.prefix_map = {model::parse_prefix_rule("backbone.=")};
  const auto renamed = model::import_weights(d2, options);
  EXPECT_EQ(renamed.layout_renamed, 1);
  EXPECT_EQ(renamed.tensors.keys(), (std::vector<std::string>{"conv1.weight"}));
}

TEST(WeightsImport, PrefixRulesNeedOldEqualsNew) {
  EXPECT_EQ(model::parse_prefix_rule("module.="),
            (std::pair<std::string, std::string>{"module.", ""}));
  EXPECT_THROW(model::parse_prefix_rule("nonsense"), util::InputError);
  EXPECT_THROW(model::parse_prefix_rule("=backbone."), util::InputError);
}

}  // namespace
}  // namespace aligndetr
