// detrex DINO checkpoints (and so Align-DETR's) into our DINO: a checkpoint written by Debian's
// python3-torch from a module tree laid out like detrex's, with detrex's names and its decoder
// sharing the detector heads, imports with `weights import --detrex` and loads completely.

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "aligndetr/engine/experiment.h"
#include "aligndetr/model/detrex.h"
#include "aligndetr/model/weights.h"
#include "aligndetr/util/error.h"
#include "python_fixture.h"
#include "test_support.h"

namespace aligndetr {
namespace {

using testing::run_cli;

std::string tiny_config() {
  return std::string(ALIGNDETR_SOURCE_DIR) + "/configs/align_dino_tiny.yaml";
}

// The script's defaults are configs/align_dino_tiny.yaml's sizes. It runs once for the suite.
class DetrexImport : public testing::PythonScriptTest<DetrexImport> {
 public:
  static constexpr const char* kScript = "make_detrex_dino_checkpoint.py";
  static constexpr const char* kModules = "torch";
  static constexpr const char* kPackages = "python3-torch";
};

TEST_F(DetrexImport, LoadsCompletelyIntoTheTinyDino) {
  const std::string out = file("ours.pt");
  const auto result = run_cli("weights import --detrex --from " + file("detrex_dino.pth") +
                              " --config " + tiny_config() + " --out " + out);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  // ResNet-18 in detectron2's names: the stem's conv and norm (5 tensors), 8 blocks of two convs
  // with norms (80) and the shortcuts of res3..res5 (15). Heads: 3 class heads of 2 tensors and
  // 3 box heads of 6, each once more under transformer.decoder.
  EXPECT_NE(result.output.find("24 decoder copies of the detector heads dropped"),
            std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("100 detectron2 ResNet names converted"), std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("missing 0, unexpected 0, shape mismatches 0"), std::string::npos)
      << result.output;

  const auto model = engine::model_spec(engine::Config::load(tiny_config())).build();
  const model::LoadReport report = model::load_module(out, *model, /*strict=*/true);
  EXPECT_TRUE(report.complete());
  EXPECT_TRUE(report.ignored.empty());

  const model::TensorDict source = model::load_tensors(file("detrex_dino.pth"));
  const model::TensorDict ours = model::module_state(*model);
  const std::vector<std::pair<std::string, std::string>> same = {
      {"backbone.stem.conv1.weight", "backbone.conv1.weight"},
      {"backbone.stem.conv1.norm.running_var", "backbone.bn1.running_var"},
      {"backbone.res3.0.shortcut.weight", "backbone.layer2.0.downsample.0.weight"},
      {"backbone.res5.1.conv2.norm.bias", "backbone.layer4.1.bn2.bias"},
      {"neck.convs.1.norm.weight", "neck.convs.1.norm.weight"},
      {"neck.extra_convs.0.conv.weight", "neck.extra_convs.0.conv.weight"},
      {"transformer.decoder.layers.1.attentions.0.attn.in_proj_weight",
       "transformer.decoder.layers.1.attentions.0.attn.in_proj_weight"},
      {"transformer.level_embeds", "transformer.level_embeds"},
      {"class_embed.2.weight", "class_embed.2.weight"},
      {"bbox_embed.1.layers.2.bias", "bbox_embed.1.layers.2.bias"},
      {"label_enc.weight", "label_enc.weight"},
  };
  for (const auto& [detrex_name, our_name] : same) {
    ASSERT_TRUE(source.contains(detrex_name)) << detrex_name;
    ASSERT_TRUE(ours.contains(our_name)) << our_name;
    EXPECT_TRUE(torch::equal(source[detrex_name], ours[our_name])) << our_name;
  }
}

TEST_F(DetrexImport, RefusesADecoderHeadThatDiffersFromTheDetectorHead) {
  const std::string out = file("refused.pt");
  const auto result = run_cli("weights import --detrex --from " + file("bad_alias.pth") +
                              " --config " + tiny_config() + " --out " + out);
  EXPECT_EQ(result.exit_code, util::kExitInput) << result.output;
  EXPECT_NE(result.output.find("transformer.decoder.bbox_embed.1.layers.2.bias"), std::string::npos)
      << result.output;
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST(Detrex, DropsOnlyDecoderCopiesEqualToTheirHeads) {
  const torch::Tensor head = torch::arange(4.0);
  model::TensorDict tensors;
  tensors.insert("transformer.decoder.class_embed.0.bias", head.clone());
  tensors.insert("class_embed.0.bias", head);
  tensors.insert("transformer.decoder.norm.weight", torch::ones({2}));
  tensors.insert("backbone.res2.0.conv1.norm.weight", torch::ones({2}));
  const model::DetrexConversion converted = model::detrex_to_ours(tensors);
  EXPECT_EQ(converted.aliases_dropped, 1);
  EXPECT_EQ(converted.resnet_renamed, 1);
  std::vector<std::string> names;
  for (const auto& item : converted.tensors) names.push_back(item.key());
  EXPECT_EQ(names,
            (std::vector<std::string>{"class_embed.0.bias", "transformer.decoder.norm.weight",
                                      "backbone.layer1.0.bn1.weight"}));

  model::TensorDict orphan;
  orphan.insert("transformer.decoder.bbox_embed.3.layers.0.weight", torch::ones({2, 2}));
  try {
    model::detrex_to_ours(orphan);
    FAIL() << "a decoder head copy without its head was accepted";
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("bbox_embed.3.layers.0.weight"), std::string::npos);
  }

  model::TensorDict reshaped;
  reshaped.insert("class_embed.0.bias", head);
  reshaped.insert("transformer.decoder.class_embed.0.bias", head.view({2, 2}));
  EXPECT_THROW(model::detrex_to_ours(reshaped), util::InputError);
}

}  // namespace
}  // namespace aligndetr
