// Regression guard of the models, the criterion and one optimizer step: today's outputs of a tiny
// DINO and a tiny DAB-DETR (fixed seeds, fixed input) are frozen in tests/data/golden and every
// change must reproduce them. tests/data/golden/regenerate.sh documents how they were made; it is
// for a deliberate change of behaviour, never for making a failing test pass.

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "aligndetr/loss/criterion.h"
#include "aligndetr/model/dab_detr.h"
#include "aligndetr/model/dino.h"
#include "aligndetr/model/weights.h"
#include "aligndetr/ops/attention.h"
#include "aligndetr/ops/ms_deform_attn.h"

namespace aligndetr {
namespace {

namespace fs = std::filesystem;

fs::path golden_path(const std::string& name) {
  return fs::path(ALIGNDETR_SOURCE_DIR) / "tests" / "data" / "golden" / name;
}

bool regenerating() {
  const char* env = std::getenv("ALIGNDETR_WRITE_GOLDEN");
  return env && std::string(env) == "1";
}

// Writes the tensors when regenerating; otherwise compares them with the file: the same names,
// shapes and dtypes, values within 1e-6 of the largest reference magnitude of each tensor.
void check_golden(const std::string& name, const model::TensorDict& actual) {
  const auto path = golden_path(name);
  if (regenerating()) {
    fs::create_directories(path.parent_path());
    model::save_tensors(path.string(), actual);
    GTEST_SKIP() << "wrote " << path;
  }
  ASSERT_TRUE(fs::exists(path)) << path << " is missing (see tests/data/golden/regenerate.sh)";
  const auto expected = model::load_tensors(path.string());
  ASSERT_EQ(expected.size(), actual.size()) << name;
  for (const auto& kv : expected) {
    const auto* got = actual.find(kv.key());
    ASSERT_NE(got, nullptr) << name << ": no " << kv.key();
    const auto& ref = kv.value();
    ASSERT_EQ(got->sizes(), ref.sizes()) << name << ": " << kv.key();
    ASSERT_EQ(got->scalar_type(), ref.scalar_type()) << name << ": " << kv.key();
    if (ref.numel() == 0) continue;
    if (!ref.is_floating_point()) {
      EXPECT_TRUE(torch::equal(*got, ref)) << name << ": " << kv.key();
      continue;
    }
    const auto r = ref.to(torch::kDouble), g = got->to(torch::kDouble);
    const double scale = r.abs().max().item<double>();
    const double diff = (g - r).abs().max().item<double>();
    EXPECT_LE(diff, 1e-6 * std::max(scale, 1e-30))
        << name << ": " << kv.key() << " (max |ref| " << scale << ")";
  }
}

model::DinoOptions golden_dino() {
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

model::DabDetrOptions golden_dab() {
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

// Two images of 96x128 and 64x96 in one padded batch.
struct Input {
  torch::Tensor images, mask;
  std::vector<boxes::Target> targets;
};

Input golden_input() {
  torch::manual_seed(7);
  Input in;
  in.images = torch::randn({2, 3, 96, 128});
  in.mask = torch::zeros({2, 96, 128}, torch::kBool);
  in.mask[1].narrow(0, 64, 32).fill_(true);
  in.mask[1].narrow(1, 96, 32).fill_(true);
  in.images.masked_fill_(in.mask.unsqueeze(1), 0.0);
  in.targets.resize(2);
  in.targets[0].labels = torch::tensor({1, 3, 0}, torch::kInt64);
  in.targets[0].boxes =
      torch::tensor({0.3f, 0.3f, 0.2f, 0.2f, 0.6f, 0.7f, 0.3f, 0.4f, 0.8f, 0.2f, 0.1f, 0.15f})
          .view({3, 4});
  in.targets[1].labels = torch::tensor({4}, torch::kInt64);
  in.targets[1].boxes = torch::tensor({0.5f, 0.5f, 0.5f, 0.5f}).view({1, 4});
  return in;
}

void add_set(model::TensorDict& out, const std::string& name, const model::OutputSet& set) {
  out.insert(name + ".logits", set.logits.detach().clone());
  out.insert(name + ".boxes", set.boxes.detach().clone());
}

model::TensorDict outputs_dict(const model::DetectorOutputs& o) {
  model::TensorDict out;
  for (size_t l = 0; l < o.decoder.size(); ++l)
    add_set(out, "decoder." + std::to_string(l), o.decoder[l]);
  if (o.encoder) add_set(out, "encoder", *o.encoder);
  if (o.denoising) {
    const auto& dn = *o.denoising;
    for (size_t l = 0; l < dn.layers.size(); ++l)
      add_set(out, "denoising." + std::to_string(l), dn.layers[l]);
    for (size_t b = 0; b < dn.pairs.size(); ++b) {
      out.insert("denoising.pairs." + std::to_string(b) + ".query", dn.pairs[b].query.clone());
      out.insert("denoising.pairs." + std::to_string(b) + ".gt", dn.pairs[b].gt.clone());
    }
    out.insert("denoising.groups", torch::tensor({dn.groups}, torch::kInt64));
  }
  return out;
}

model::TensorDict loss_dict(const loss::LossTerms& terms) {
  model::TensorDict out;
  for (const auto& [name, t] : terms.unweighted)
    out.insert("unweighted." + name, t.detach().clone());
  for (const auto& [name, t] : terms.weighted) out.insert("weighted." + name, t.detach().clone());
  out.insert("total", terms.total.detach().clone());
  out.insert("num_boxes", torch::tensor({terms.num_boxes}, torch::kDouble));
  return out;
}

// Every parameter's sum, sum of squares and 16 entries at evenly spaced flat positions: enough to
// see any change of the update without storing an 11M-parameter backbone.
model::TensorDict fingerprint(const torch::nn::Module& module) {
  model::TensorDict out;
  for (const auto& kv : module.named_parameters()) {
    const auto flat = kv.value().detach().reshape(-1).to(torch::kDouble);
    const int64_t n = flat.numel();
    const auto picks =
        torch::linspace(0, static_cast<double>(n - 1), std::min<int64_t>(16, n)).to(torch::kLong);
    out.insert(kv.key(), torch::cat({flat.sum().view({1}), flat.square().sum().view({1}),
                                     flat.index_select(0, picks)}));
  }
  return out;
}

TEST(Golden, DinoTrainingAndEvaluationOutputs) {
  torch::manual_seed(0);
  model::Dino dino(golden_dino());
  const auto in = golden_input();
  torch::manual_seed(1);
  dino->train();
  const auto train_out = dino->forward(in.images, in.mask, &in.targets);
  check_golden("dino_train.pt", outputs_dict(train_out));
  dino->eval();
  torch::NoGradGuard no_grad;
  check_golden("dino_eval.pt", outputs_dict(dino->forward(in.images, in.mask, nullptr)));
}

TEST(Golden, DabDetrTrainingAndEvaluationOutputs) {
  torch::manual_seed(0);
  model::DabDetr dab(golden_dab());
  const auto in = golden_input();
  dab->train();
  check_golden("dab_detr_train.pt", outputs_dict(dab->forward(in.images, in.mask, &in.targets)));
  dab->eval();
  torch::NoGradGuard no_grad;
  check_golden("dab_detr_eval.pt", outputs_dict(dab->forward(in.images, in.mask, nullptr)));
}

// One criterion call on the DINO's training outputs, its backward pass and one AdamW step with
// gradient clipping, as the trainer takes it.
TEST(Golden, DinoCriterionAndOneOptimizerStep) {
  torch::manual_seed(0);
  model::Dino dino(golden_dino());
  const auto in = golden_input();
  torch::manual_seed(1);
  dino->train();
  const auto out = dino->forward(in.images, in.mask, &in.targets);
  const auto terms = loss::compute_criterion(out, in.targets, loss::CriterionOptions::paper());
  check_golden("dino_criterion.pt", loss_dict(terms));

  std::vector<torch::Tensor> params;
  for (const auto& p : dino->parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(1e-3).weight_decay(1e-4));
  opt.zero_grad();
  terms.total.backward();
  torch::nn::utils::clip_grad_norm_(params, 0.1);
  opt.step();
#if defined(ALIGNDETR_SANITIZE)
  GTEST_SKIP() << "criterion checked; the AdamW step's fingerprint is the Release build's "
                  "arithmetic, not this sanitizer build's (-O1, instrumented)";
#endif
  if (std::string(ops::ms_deform_attn_cpu_kernel()) != "avx2") {
    // Recorded with the AVX2 + FMA kernel, whose fused multiply-adds round differently.
    GTEST_SKIP() << "criterion checked; the AdamW step's fingerprint is that of the AVX2 + FMA "
                    "deformable-attention kernel (this CPU runs the generic one)";
  }
  if (std::string(ops::blocked_attention_kernel()) != "avx512") {
    // Recorded with the fused AVX-512 self-attention loops, which sum in their own order.
    GTEST_SKIP() << "criterion checked; the AdamW step's fingerprint is that of the AVX-512 "
                    "self-attention loops (this CPU runs BLAS products)";
  }
  if (TORCH_VERSION_MAJOR != 1) {
    // The step was recorded with LibTorch 1.13. Another version's convolution backward sums in
    // another order, and AdamW's first step is lr * sign(g) for every gradient, so rounding on a
    // near-zero gradient there flips a whole step: the fingerprint is this version's to check.
    GTEST_SKIP() << "criterion checked; the AdamW step's fingerprint is LibTorch 1.13's (this is "
                 << TORCH_VERSION << ")";
  }
  check_golden("dino_after_step.pt", fingerprint(*dino));
}

}  // namespace
}  // namespace aligndetr
