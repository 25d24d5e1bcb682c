// An official DINO checkpoint imports completely: every tensor of ours loaded, nothing left over,
// the shared decoder heads copied into every layer, COCO's 80 class rows picked by id or the 91 of
// the official layout kept with its 92-row label book. Two sources: a model's own tensors renamed
// back to the official names here, and a checkpoint that python3-torch writes from a module tree
// laid out like the official code's (tests/python/make_official_dino_checkpoint.py).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "aligndetr/coco/names.h"
#include "aligndetr/engine/experiment.h"
#include "aligndetr/engine/init_weights.h"
#include "aligndetr/model/dino.h"
#include "aligndetr/model/import.h"
#include "aligndetr/model/official_dino.h"
#include "aligndetr/model/weights.h"
#include "aligndetr/util/error.h"
#include "python_fixture.h"
#include "support/model_options.h"
#include "test_support.h"

namespace aligndetr {
namespace {

std::string replace(std::string s, const std::string& from, const std::string& to) {
  const auto at = s.find(from);
  return at == std::string::npos ? s : s.replace(at, from.size(), to);
}

bool starts_with(const std::string& s, const std::string& p) {
  return s.rfind(p, 0) == 0;
}

std::vector<int64_t> coco_ids() {
  std::vector<int64_t> ids;
  const auto& by_id = coco::coco91_names();
  for (size_t id = 0; id < by_id.size(); ++id) {
    if (!by_id[id].empty()) ids.push_back(int64_t(id));
  }
  return ids;
}

// The official names of a tiny DINO's tensors (2 decoder layers, 3 backbone levels + 1 extra):
// one shared class and box head (decoder layer 0's), listed again under transformer.decoder.*,
// the encoder heads as transformer.enc_out_*, 91 class rows and 92 label rows by COCO id.
model::TensorDict official_names(const model::TensorDict& ours) {
  const auto ids = torch::tensor(coco_ids(), torch::kLong);
  const auto by_id = [&](const torch::Tensor& t, int64_t rows) {
    auto sizes = t.sizes().vec();
    sizes[0] = rows;
    auto out = torch::randn(sizes);
    out.index_copy_(0, ids, t);
    return out;
  };
  model::TensorDict official;
  for (const auto& kv : ours) {
    std::string k = kv.key();
    torch::Tensor v = kv.value();
    if (starts_with(k, "class_embed.1.") || starts_with(k, "bbox_embed.1.")) continue;  // shared
    if (starts_with(k, "backbone.")) {
      k = "backbone.0.body." + k.substr(9);
    } else if (starts_with(k, "neck.convs.")) {
      k = replace(replace(replace(k, "neck.convs.", "input_proj."), ".conv.", ".0."), ".norm.",
                  ".1.");
    } else if (starts_with(k, "neck.extra_convs.0.")) {
      k = replace(replace(replace(k, "neck.extra_convs.0.", "input_proj.3."), ".conv.", ".0."),
                  ".norm.", ".1.");
    } else if (k == "transformer.level_embeds") {
      k = "transformer.level_embed";
    } else if (starts_with(k, "transformer.encoder.layers.")) {
      for (const auto& [from, to] :
           {std::pair{".attentions.0.", ".self_attn."},
            std::pair{".ffns.0.layers.0.0.", ".linear1."},
            std::pair{".ffns.0.layers.1.", ".linear2."}, std::pair{".norms.0.", ".norm1."},
            std::pair{".norms.1.", ".norm2."}}) {
        k = replace(k, from, to);
      }
    } else if (starts_with(k, "transformer.decoder.layers.")) {
      for (const auto& [from, to] :
           {std::pair{".attentions.0.attn.", ".self_attn."},
            std::pair{".attentions.1.", ".cross_attn."},
            std::pair{".ffns.0.layers.0.0.", ".linear1."},
            std::pair{".ffns.0.layers.1.", ".linear2."}, std::pair{".norms.0.", ".norm2."},
            std::pair{".norms.1.", ".norm1."}, std::pair{".norms.2.", ".norm3."}}) {
        k = replace(k, from, to);
      }
    } else if (starts_with(k, "class_embed.2.")) {
      k = "transformer.enc_out_class_embed." + k.substr(14);
    } else if (starts_with(k, "bbox_embed.2.")) {
      k = "transformer.enc_out_bbox_embed." + k.substr(13);
    }
    if (starts_with(k, "class_embed.") || starts_with(k, "transformer.enc_out_class_embed.")) {
      v = by_id(v, 91);
    } else if (k == "label_enc.weight") {
      v = by_id(v, 92);
    }
    official.insert(k, v);
    if (starts_with(k, "class_embed.0.") || starts_with(k, "bbox_embed.0.")) {
      // The one shared head under every decoder layer's name, and again in the decoder.
      const std::string rest = k.substr(k.find('.', 12) + 1);
      const std::string head = starts_with(k, "class_embed.") ? "class_embed." : "bbox_embed.";
      official.insert(head + "1." + rest, v);
      official.insert("transformer.decoder." + head + "0." + rest, v);
      official.insert("transformer.decoder." + head + "1." + rest, v);
    }
  }
  return official;
}

TEST(OfficialDino, ImportsCompletelyWithSharedHeadsAndCocoRows) {
  torch::manual_seed(0);
  model::Dino source(testing::tiny_dino_options(80));
  const auto ours = model::module_state(*source);
  const auto official = official_names(ours);
  ASSERT_TRUE(model::is_official_dino(official));
  EXPECT_EQ(model::detect_layout(official), model::ImportLayout::kOfficialDino);

  model::ImportOptions options;
  options.layout = model::ImportLayout::kOfficialDino;
  const auto imported = model::import_weights(official, options);
  int copies = 0;
  for (const auto& kv : official)
    copies += starts_with(kv.key(), "transformer.decoder.class_embed.") ||
              starts_with(kv.key(), "transformer.decoder.bbox_embed.");
  EXPECT_EQ(imported.aliases_dropped, copies);
  EXPECT_EQ(copies, 2 * (2 + 6));  // two layers' class (weight, bias) and box (3 linears) heads
  torch::manual_seed(1);
  model::Dino target(testing::tiny_dino_options(80));
  const auto report = model::load_state_dict(*target, imported.tensors, /*strict=*/false);
  EXPECT_TRUE(report.complete()) << report.to_text();
  const auto loaded = model::module_state(*target);
  for (const auto& kv : ours) {
    // Every decoder layer now has the shared head (layer 0's); the encoder head is its own.
    std::string from = kv.key();
    if (starts_with(from, "class_embed.1.")) from = "class_embed.0." + from.substr(14);
    if (starts_with(from, "bbox_embed.1.")) from = "bbox_embed.0." + from.substr(13);
    EXPECT_TRUE(torch::equal(loaded[kv.key()], ours[from])) << kv.key();
  }

  // The same file as a run's initial weights is recognised by its names and loads completely.
  testing::TempDir dir;
  model::save_tensors((dir / "checkpoint0011_4scale.pth").string(), official);
  torch::manual_seed(2);
  model::Dino fresh(testing::tiny_dino_options(80));
  engine::InitWeightsOptions init;
  engine::InitWeightsFile f;
  f.file = (dir / "checkpoint0011_4scale.pth").string();
  init.files.push_back(f);
  const auto init_report = engine::apply_init_weights(*fresh, init, coco::coco80_names());
  EXPECT_TRUE(init_report.random_modules.empty()) << init_report.text;
  EXPECT_TRUE(init_report.reinitialised.empty()) << init_report.text;
  EXPECT_NE(init_report.text.find("official DINO names"), std::string::npos) << init_report.text;

  // 91 classes keep the official layout; anything else is refused.
  options.num_classes = 91;
  const auto by_id = model::import_weights(official, options);
  EXPECT_EQ(by_id.tensors["class_embed.0.bias"].size(0), 91);
  EXPECT_EQ(by_id.tensors["label_enc.weight"].size(0), 91);
  options.label_rows = 92;
  const auto with_book = model::import_weights(official, options);
  EXPECT_TRUE(torch::equal(with_book.tensors["label_enc.weight"], official["label_enc.weight"]));
  options.num_classes = 20;
  EXPECT_THROW(model::import_weights(official, options), util::InputError);
}

TEST(OfficialDino, LabelBookSizeSetsTheLabelEmbeddingRows) {
  auto options = testing::tiny_dino_options(91);
  options.denoising.label_book_size = 92;
  model::Dino dino(options);
  const auto state = model::module_state(*dino);
  EXPECT_EQ(state["label_enc.weight"].size(0), 92);
  EXPECT_EQ(state["class_embed.0.bias"].size(0), 91);
  options.denoising.label_book_size = 90;
  EXPECT_ANY_THROW(model::Dino{options});
}

TEST(OfficialDino, TheOfficialPresetKeepsBoxesAsPredictedAndChecksTheLabelBook) {
  const std::string dir = std::string(ALIGNDETR_SOURCE_DIR) + "/configs/";
  EXPECT_FALSE(
      engine::model_spec(engine::Config::load(dir + "dino_r50_4scale_official.yaml")).clip_boxes);
  auto config = engine::Config::load(dir + "align_dino_tiny.yaml");
  const auto tiny = engine::make_experiment(config);
  EXPECT_TRUE(tiny.model.clip_boxes);
  EXPECT_TRUE(tiny.postprocess().clip_boxes);
  EXPECT_EQ(tiny.postprocess().top_k, tiny.eval_top_k);
  config.set("model.denoising.label_book_size=4");  // below the tiny preset's 8 classes
  try {
    engine::model_spec(config);
    FAIL() << "a label book smaller than the classes was accepted";
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("label_book_size 4 is smaller than model.num_classes 8"),
              std::string::npos)
        << e.what();
  }
}

// The official checkpoint as python3-torch writes it, with its training entries (optimizer,
// epoch, an argparse.Namespace) beside the model.
class OfficialDinoFile : public testing::PythonScriptTest<OfficialDinoFile> {
 public:
  static constexpr const char* kScript = "make_official_dino_checkpoint.py";
  static constexpr const char* kModules = "torch, torchvision";
  static constexpr const char* kPackages = "python3-torch and python3-torchvision";

  // configs/align_dino_tiny.yaml with COCO's classes: 80 contiguous, or the official 91 by id
  // with the 92-row label book.
  static std::string tiny_config(int classes) {
    const std::string path = file("tiny_" + std::to_string(classes) + ".yaml");
    testing::write_text(
        path,
        "_base_: " + std::string(ALIGNDETR_SOURCE_DIR) +
            "/configs/align_dino_tiny.yaml\nmodel:\n  num_classes: " + std::to_string(classes) +
            (classes == 91 ? "\n  denoising: {label_book_size: 92}\n" : "\n"));
    return path;
  }
};

TEST_F(OfficialDinoFile, ImportsStrictlyInTheOfficialLayout) {
  const std::string config = tiny_config(91);
  const std::string out = file("ours_91.pt");
  const auto result =
      testing::run_cli("weights import --official-dino --from " + file("checkpoint_official.pth") +
                       " --config " + config + " --out " + out);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  // Two decoder layers' shared heads, each once more under transformer.decoder: class (2
  // tensors) and box (3 linears, 6 tensors).
  EXPECT_NE(result.output.find("16 decoder copies of the detector heads dropped"),
            std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("missing 0, unexpected 0, shape mismatches 0"), std::string::npos)
      << result.output;

  const auto model = engine::model_spec(engine::Config::load(config)).build();
  const model::LoadReport report = model::load_module(out, *model, /*strict=*/true);
  EXPECT_TRUE(report.complete()) << report.to_text();
  const auto official = model::load_tensors(file("checkpoint_official.pth"));
  const auto ours = model::module_state(*model);
  const std::vector<std::pair<std::string, std::string>> same = {
      {"backbone.0.body.conv1.weight", "backbone.conv1.weight"},
      {"backbone.0.body.layer3.1.bn2.running_var", "backbone.layer3.1.bn2.running_var"},
      {"input_proj.1.1.weight", "neck.convs.1.norm.weight"},
      {"input_proj.3.0.weight", "neck.extra_convs.0.conv.weight"},
      {"transformer.level_embed", "transformer.level_embeds"},
      {"transformer.encoder.layers.1.self_attn.sampling_offsets.weight",
       "transformer.encoder.layers.1.attentions.0.sampling_offsets.weight"},
      {"transformer.encoder.layers.0.norm2.bias", "transformer.encoder.layers.0.norms.1.bias"},
      {"transformer.decoder.layers.1.self_attn.in_proj_weight",
       "transformer.decoder.layers.1.attentions.0.attn.in_proj_weight"},
      {"transformer.decoder.layers.0.norm2.weight", "transformer.decoder.layers.0.norms.0.weight"},
      {"transformer.decoder.layers.0.norm1.weight", "transformer.decoder.layers.0.norms.1.weight"},
      {"transformer.decoder.layers.1.norm3.bias", "transformer.decoder.layers.1.norms.2.bias"},
      {"transformer.decoder.layers.1.linear2.weight",
       "transformer.decoder.layers.1.ffns.0.layers.1.weight"},
      {"transformer.tgt_embed.weight", "transformer.tgt_embed.weight"},
      {"transformer.enc_output_norm.weight", "transformer.enc_output_norm.weight"},
      // The one shared head in every decoder layer; the encoder's own head last.
      {"class_embed.0.weight", "class_embed.0.weight"},
      {"class_embed.0.weight", "class_embed.1.weight"},
      {"transformer.decoder.bbox_embed.0.layers.2.bias", "bbox_embed.1.layers.2.bias"},
      {"transformer.enc_out_class_embed.bias", "class_embed.2.bias"},
      {"transformer.enc_out_bbox_embed.layers.0.weight", "bbox_embed.2.layers.0.weight"},
      {"label_enc.weight", "label_enc.weight"},
  };
  for (const auto& [official_name, our_name] : same) {
    ASSERT_TRUE(official.contains(official_name)) << official_name;
    ASSERT_TRUE(ours.contains(our_name)) << our_name;
    EXPECT_TRUE(torch::equal(official[official_name], ours[our_name])) << our_name;
  }
}

TEST_F(OfficialDinoFile, InitWeightsPicksCocoRowsForEightyClasses) {
  const auto spec = engine::model_spec(engine::Config::load(tiny_config(80)));
  torch::manual_seed(3);
  const auto model = spec.build();
  engine::InitWeightsOptions init;
  engine::InitWeightsFile f;
  f.file = file("checkpoint_official.pth");
  init.files.push_back(f);
  const auto report = engine::apply_init_weights(*model, init, coco::coco80_names());
  EXPECT_TRUE(report.random_modules.empty()) << report.text;
  EXPECT_TRUE(report.reinitialised.empty()) << report.text;
  const auto official = model::load_tensors(file("checkpoint_official.pth"));
  const auto ours = model::module_state(*model);
  const auto ids = torch::tensor(coco_ids(), torch::kLong);
  EXPECT_TRUE(torch::equal(ours["class_embed.1.bias"],
                           official["class_embed.0.bias"].index_select(0, ids)));
  EXPECT_TRUE(
      torch::equal(ours["label_enc.weight"], official["label_enc.weight"].index_select(0, ids)));
  EXPECT_TRUE(
      torch::equal(ours["bbox_embed.0.layers.1.weight"], official["bbox_embed.1.layers.1.weight"]));
}

}  // namespace
}  // namespace aligndetr
