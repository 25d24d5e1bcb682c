// Our ResNet-18 against torchvision's: a real PyTorch checkpoint with random weights, written by
// Debian's python3-torch, loads by name and gives the same layer2..layer4 features.

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "aligndetr/coco/names.h"
#include "aligndetr/engine/experiment.h"
#include "aligndetr/engine/init_weights.h"
#include "aligndetr/model/backbone.h"
#include "aligndetr/model/dino.h"
#include "aligndetr/model/weights.h"
#include "aligndetr/util/error.h"
#include "python_fixture.h"
#include "support/model_options.h"
#include "test_support.h"

namespace aligndetr {
namespace {

// The checkpoints are written once for the suite: the script takes a few seconds.
class TorchvisionResNet : public testing::PythonScriptTest<TorchvisionResNet> {
 public:
  static constexpr const char* kScript = "make_resnet_checkpoint.py";
  static constexpr const char* kModules = "torch, torchvision";
  static constexpr const char* kPackages = "python3-torch and python3-torchvision";
};

TEST_F(TorchvisionResNet, FeaturesMatchTheReference) {
  const model::TensorDict state = model::load_tensors(file("resnet18.pth"));
  // 20 convs, 20 batch norms with 5 tensors each (num_batches_tracked included), fc.
  EXPECT_EQ(state.size(), 20u + 20u * 5u + 2u);

  model::ResNet net(testing::resnet_options(18, 1, false, {2, 3, 4}));
  const model::LoadReport report = model::load_state_dict(*net, state, /*strict=*/false);
  EXPECT_TRUE(report.missing.empty()) << report.to_text();
  EXPECT_TRUE(report.mismatched.empty()) << report.to_text();
  EXPECT_EQ(report.unexpected, (std::vector<std::string>{"fc.weight", "fc.bias"}));
  EXPECT_EQ(report.ignored.size(), 20u);
  EXPECT_EQ(report.loaded.size(), 20u + 20u * 4u);
  // fc is not part of a backbone: strict loading must refuse the file as it is.
  EXPECT_THROW(model::load_state_dict(*net, state, /*strict=*/true), util::InputError);

  const model::TensorDict reference = model::load_tensors(file("features.pth"));
  torch::NoGradGuard no_grad;
  const std::vector<torch::Tensor> features = net->forward(reference["input"]);
  ASSERT_EQ(features.size(), 3u);
  const char* names[] = {"layer2", "layer3", "layer4"};
  for (size_t i = 0; i < 3; ++i) {
    const torch::Tensor& expected = reference[names[i]];
    ASSERT_EQ(features[i].sizes(), expected.sizes()) << names[i];
    const double max_error = (features[i] - expected).abs().max().item<double>();
    const double scale = expected.abs().max().item<double>();
    RecordProperty(std::string(names[i]) + "_max_abs_error", std::to_string(max_error));
    std::printf("%s: max |ours - torchvision| = %.3g (max |feature| %.3g)\n", names[i], max_error,
                scale);
    EXPECT_LT(max_error, 1e-4) << names[i];
    EXPECT_GT(scale, 1e-2) << names[i] << ": features too small for the comparison to mean much";
  }
}

// ResNet-50: Bottleneck blocks, stride on the 3x3 conv. The random batch norms let activations
// grow to thousands over 16 blocks, so the bound is relative to the largest feature: float32
// rounding alone gives about 1e-7 of it per operation.
TEST_F(TorchvisionResNet, Bottleneck50FeaturesMatchTheReference) {
  model::ResNet net(testing::resnet_options(50, 1, false, {2, 3, 4}));
  const model::LoadReport report =
      model::load_state_dict(*net, model::load_tensors(file("resnet50.pth")), false);
  EXPECT_TRUE(report.missing.empty() && report.mismatched.empty()) << report.to_text();
  EXPECT_EQ(report.unexpected, (std::vector<std::string>{"fc.weight", "fc.bias"}));
  const model::TensorDict reference = model::load_tensors(file("features50.pth"));
  torch::NoGradGuard no_grad;
  const std::vector<torch::Tensor> features = net->forward(reference["input"]);
  ASSERT_EQ(features.size(), 3u);
  const char* names[] = {"layer2", "layer3", "layer4"};
  for (size_t i = 0; i < 3; ++i) {
    const torch::Tensor& expected = reference[names[i]];
    ASSERT_EQ(features[i].sizes(), expected.sizes()) << names[i];
    const double max_error = (features[i] - expected).abs().max().item<double>();
    const double scale = expected.abs().max().item<double>();
    std::printf("R50 %s: max |ours - torchvision| = %.3g (max |feature| %.3g)\n", names[i],
                max_error, scale);
    EXPECT_LT(max_error, 1e-5 * scale) << names[i];
  }
}

TEST_F(TorchvisionResNet, CheckpointDictWithModelKey) {
  const model::TensorDict plain = model::load_tensors(file("resnet18.pth"));
  const model::TensorDict nested = model::load_tensors(file("checkpoint.pth"));
  ASSERT_EQ(nested.size(), plain.size());
  EXPECT_TRUE(torch::equal(nested["layer3.1.conv2.weight"], plain["layer3.1.conv2.weight"]));
}

TEST_F(TorchvisionResNet, Protocol4SharedStoragesAndDtypes) {
  const model::TensorDict full = model::load_tensors(file("resnet18.pth"));
  const model::TensorDict p4 = model::load_tensors(file("protocol4.pth"));
  EXPECT_TRUE(torch::equal(p4["0.conv1.weight"], full["layer1.0.conv1.weight"]));
  EXPECT_TRUE(torch::equal(p4["1.bn2.running_var"], full["layer1.1.bn2.running_var"]));
  const torch::Tensor base = torch::arange(12, torch::kDouble).view({3, 4});
  EXPECT_TRUE(torch::equal(p4["base"], base));
  EXPECT_TRUE(torch::equal(p4["column"], base.select(1, 1)));
  EXPECT_EQ(p4["half"].dtype(), torch::kHalf);
  EXPECT_TRUE(torch::equal(p4["half"].to(torch::kFloat), torch::tensor({0.5f, -2.0f, 65504.0f})));
  EXPECT_EQ(p4["long"][0].item<int64_t>(), -(int64_t{1} << 40));
  EXPECT_EQ(p4["long"][1].item<int64_t>(), 7);
}

TEST_F(TorchvisionResNet, OurCheckpointReadsBackInPython) {
  model::ResNet net(testing::resnet_options(18, 1, false, {4}));
  model::save_module(file("ours.pt"), *net);
  const std::string script =
      "import sys, torch; d = torch.load(sys.argv[1]); "
      "assert len(d) == 20 + 20 * 4, len(d); "
      "assert tuple(d['layer4.1.conv2.weight'].shape) == (512, 512, 3, 3); "
      "assert float(d['bn1.running_var'].sum()) == 64.0";
  const std::string cmd = python_ + " -c \"" + script + "\" " + file("ours.pt");
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

// The same file as a new training run's initial weights, into the backbone of a DINO: the
// detector's backbone then gives torchvision's features.
TEST_F(TorchvisionResNet, InitWeightsLoadItIntoADetectorsBackbone) {
  model::DinoOptions o;
  o.backbone.depth = 18;
  o.num_classes = 2;
  o.transformer.embed_dim = 32;
  o.transformer.num_heads = 2;
  o.transformer.encoder_layers = 1;
  o.transformer.decoder_layers = 1;
  o.transformer.ffn_dim = 32;
  o.transformer.num_queries = 10;
  model::Dino dino(o);
  engine::InitWeightsOptions init;
  engine::InitWeightsFile f;
  f.file = file("resnet18.pth");
  f.prefix = "backbone.";
  init.files.push_back(f);
  const auto report = engine::apply_init_weights(*dino, init, {"a", "b"});
  EXPECT_NE(report.text.find("unexpected 2"), std::string::npos) << report.text;  // fc.*
  for (const auto& m : report.random_modules) EXPECT_NE(m.rfind("backbone", 0), 0u) << m;

  std::shared_ptr<torch::nn::Module> backbone;
  for (const auto& child : dino->named_children()) {
    if (child.key() == "backbone") backbone = child.value();
  }
  ASSERT_TRUE(backbone);
  const model::TensorDict reference = model::load_tensors(file("features.pth"));
  torch::NoGradGuard no_grad;
  dino->eval();
  const auto features = backbone->as<model::ResNetImpl>()->forward(reference["input"]);
  const char* names[] = {"layer2", "layer3", "layer4"};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_LT((features[i] - reference[names[i]]).abs().max().item<double>(), 1e-4) << names[i];
  }
}

// The R50 DINO preset as a new run starts it: its model.init_weights (the ImageNet file, pointed
// here at the python-written ResNet-50) into `backbone.`; the detector's backbone then gives
// torchvision's features, the bound relative as in Bottleneck50FeaturesMatchTheReference.
TEST_F(TorchvisionResNet, TheR50PresetsInitialWeightsGiveTorchvisionsFeatures) {
  auto config = engine::Config::load(std::string(ALIGNDETR_SOURCE_DIR) +
                                     "/configs/align_dino_r50_4scale_12ep.yaml");
  config.set("model.init_weights.0.file=" + file("resnet50.pth"));
  const auto spec = engine::model_spec(config);
  ASSERT_EQ(spec.init.files.size(), 1u);
  EXPECT_EQ(spec.init.files[0].prefix, "backbone.");
  const auto detector = spec.build();
  const auto report = engine::apply_init_weights(*detector, spec.init, coco::coco80_names());
  EXPECT_NE(report.text.find("missing 0, unexpected 2, shape mismatches 0"), std::string::npos)
      << report.text;  // fc.*
  for (const auto& m : report.random_modules) EXPECT_NE(m.rfind("backbone", 0), 0u) << m;

  std::shared_ptr<torch::nn::Module> backbone;
  for (const auto& child : detector->named_children()) {
    if (child.key() == "backbone") backbone = child.value();
  }
  ASSERT_TRUE(backbone);
  const model::TensorDict reference = model::load_tensors(file("features50.pth"));
  torch::NoGradGuard no_grad;
  detector->eval();
  const auto features = backbone->as<model::ResNetImpl>()->forward(reference["input"]);
  ASSERT_EQ(features.size(), 3u);
  const char* names[] = {"layer2", "layer3", "layer4"};
  for (size_t i = 0; i < 3; ++i) {
    const double scale = reference[names[i]].abs().max().item<double>();
    EXPECT_LT((features[i] - reference[names[i]]).abs().max().item<double>(), 1e-5 * scale)
        << names[i];
  }
}

}  // namespace
}  // namespace aligndetr
