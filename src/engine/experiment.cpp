#include "aligndetr/engine/experiment.h"

#include <cmath>
#include <tuple>

#include <fmt/format.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include "aligndetr/engine/checkpoint.h"
#include "aligndetr/util/error.h"

namespace aligndetr::engine {

double lr_factor(const SolverOptions& s, int64_t iteration) {
  double factor = 1.0;
  for (const auto step : s.steps) {
    if (iteration >= step) factor *= s.gamma;
  }
  if (iteration < s.warmup_iters && s.warmup_iters > 0) {
    const double alpha = double(iteration) / double(s.warmup_iters);
    factor *= s.warmup_factor * (1 - alpha) + alpha;
  }
  return factor;
}

int64_t ModelSpec::num_classes() const {
  return type == "dab_detr" ? dab_detr.num_classes : dino.num_classes;
}

model::DetectorPtr ModelSpec::build() const {
  if (type == "dab_detr") return model::DabDetr(dab_detr).ptr();
  return model::Dino(dino).ptr();
}

model::DetectorPtr ModelSpec::load(const std::string& weights, const torch::Device& device,
                                   std::vector<std::string>* category_names) const {
  auto model = build();
  auto info = load_checkpoint(weights, *model);
  if (category_names) *category_names = std::move(info.category_names);
  model->to(device);
  return model;
}

torch::Device parse_device(const std::string& text) {
  torch::Device device(torch::kCPU);
  try {
    device = torch::Device(text);
  } catch (const c10::Error&) {
    throw util::InputError(fmt::format("unknown device '{}': use cpu, cuda or cuda:N", text));
  }
  if (device.is_cuda() && !torch::cuda::is_available()) {
    throw util::InputError(
        fmt::format("device '{}' requested but this build or machine has no CUDA", text));
  }
  return device;
}

namespace {

std::vector<int> int_list(const Config& c, const std::string& key,
                          const std::vector<int>& fallback) {
  if (!c.has(key)) return fallback;
  std::vector<int> out;
  for (auto v : c.get_int_list(key)) {
    if (v <= 0) {
      throw util::InputError(
          fmt::format("config '{}': {} holds {}; sizes must be positive", c.source(), key, v));
    }
    out.push_back(static_cast<int>(v));
  }
  return out;
}

data::TransformOptions transform_options(const Config& c) {
  data::TransformOptions t;
  const std::string p = "data.transforms.";
  t.flip_prob = c.get_double(p + "flip_prob", t.flip_prob);
  t.train_short_sizes = int_list(c, p + "train_short_sizes", t.train_short_sizes);
  t.train_max_size = static_cast<int>(c.get_int(p + "train_max_size", t.train_max_size));
  t.crop_prob = c.get_double(p + "crop_prob", t.crop_prob);
  t.crop_resize_sizes = int_list(c, p + "crop_resize_sizes", t.crop_resize_sizes);
  t.crop_min = static_cast<int>(c.get_int(p + "crop_min", t.crop_min));
  t.crop_max = static_cast<int>(c.get_int(p + "crop_max", t.crop_max));
  t.test_short_size = static_cast<int>(c.get_int(p + "test_short_size", t.test_short_size));
  t.test_max_size = static_cast<int>(c.get_int(p + "test_max_size", t.test_max_size));
  // Every training sample draws a size from the first list, and a cropped one from the second.
  for (const auto& [key, sizes, used] :
       {std::tuple{"train_short_sizes", &t.train_short_sizes, true},
        std::tuple{"crop_resize_sizes", &t.crop_resize_sizes, t.crop_prob > 0}}) {
    if (used && sizes->empty()) {
      throw util::InputError(
          fmt::format("config '{}': {}{} is empty; give at least one size", c.source(), p, key));
    }
  }
  return t;
}

// Every value a user can type that would fail later (often after hours, or as an internal error)
// or be accepted silently while meaning nothing: refused here, naming the key.
class Checks {
 public:
  explicit Checks(const Config& c) : c_(c) {}
  void require(bool ok, const std::string& key, const std::string& rule, double value) const {
    if (!ok) {
      throw util::InputError(
          fmt::format("config '{}': {} must be {}, got {}", c_.source(), key, rule, value));
    }
  }
  void positive(const std::string& key, double v) const {
    require(v > 0 && std::isfinite(v), key, "a positive number", v);
  }
  void non_negative(const std::string& key, double v) const {
    require(v >= 0 && std::isfinite(v), key, ">= 0", v);
  }
  void fraction(const std::string& key, double v) const {
    require(v >= 0 && v <= 1, key, "in [0, 1]", v);
  }
  void at_least(const std::string& key, int64_t v, int64_t least) const {
    require(v >= least, key, ">= " + std::to_string(least), double(v));
  }

 private:
  const Config& c_;
};

void check_values(const Experiment& e, const Config& c) {
  const Checks k(c);
  k.at_least("data.batch_size", e.data.batch_size, 1);
  k.at_least("data.workers", e.data.workers, 0);
  const auto& t = e.data.train.transforms;
  const std::string p = "data.transforms.";
  k.fraction(p + "flip_prob", t.flip_prob);
  k.fraction(p + "crop_prob", t.crop_prob);
  k.at_least(p + "train_max_size", t.train_max_size, 1);
  k.at_least(p + "test_short_size", t.test_short_size, 1);
  k.at_least(p + "test_max_size", t.test_max_size, 1);
  k.at_least(p + "crop_min", t.crop_min, 1);
  k.require(t.crop_min <= t.crop_max, p + "crop_min",
            "<= " + p + "crop_max (" + std::to_string(t.crop_max) + ")", t.crop_min);
  const auto& s = e.solver;
  k.positive("solver.lr", s.lr);
  k.non_negative("solver.backbone_lr_mult", s.backbone_lr_mult);
  k.non_negative("solver.weight_decay", s.weight_decay);
  k.require(s.beta1 >= 0 && s.beta1 < 1, "solver.beta1", "in [0, 1)", s.beta1);
  k.require(s.beta2 >= 0 && s.beta2 < 1, "solver.beta2", "in [0, 1)", s.beta2);
  k.require(s.clip_norm >= 0 && std::isfinite(s.clip_norm), "solver.clip_norm",
            ">= 0 (0 turns clipping off)", s.clip_norm);
  k.positive("solver.gamma", s.gamma);
  k.at_least("solver.warmup_iters", s.warmup_iters, 0);
  k.require(s.warmup_factor > 0 && s.warmup_factor <= 1, "solver.warmup_factor", "in (0, 1]",
            s.warmup_factor);
  for (const auto step : s.steps) k.at_least("solver.steps", step, 1);
  const auto& o = e.criterion;
  k.positive("criterion.tau", o.tau);
  k.fraction("criterion.alpha", o.alpha);
  k.non_negative("criterion.gamma", o.gamma);
  k.non_negative("criterion.weights.class", o.weight_class);
  k.non_negative("criterion.weights.bbox", o.weight_bbox);
  k.non_negative("criterion.weights.giou", o.weight_giou);
  k.non_negative("criterion.matcher.cost_class", o.matcher.cost_class);
  k.non_negative("criterion.matcher.cost_bbox", o.matcher.cost_bbox);
  k.non_negative("criterion.matcher.cost_giou", o.matcher.cost_giou);
  k.at_least("train.eval_top_k", e.eval_top_k, 1);
  k.at_least("model.num_classes", e.model.num_classes(), 1);
  if (e.model.type == "dino") {
    const auto& m = e.model.dino;
    k.at_least("model.transformer.num_queries", m.transformer.num_queries, 1);
    k.at_least("model.transformer.num_heads", m.transformer.num_heads, 1);
    k.require(m.transformer.embed_dim > 0 && m.transformer.embed_dim % m.transformer.num_heads == 0,
              "model.transformer.embed_dim", "a positive multiple of num_heads",
              double(m.transformer.embed_dim));
    k.at_least("model.transformer.num_points", m.transformer.num_points, 1);
    k.at_least("model.transformer.encoder_layers", m.transformer.encoder_layers, 1);
    k.at_least("model.transformer.decoder_layers", m.transformer.decoder_layers, 1);
    k.at_least("model.transformer.ffn_dim", m.transformer.ffn_dim, 1);
    k.at_least("model.denoising.dn_number", m.denoising.dn_number, 0);
    k.fraction("model.denoising.label_noise_ratio", m.denoising.label_noise_ratio);
    k.non_negative("model.denoising.box_noise_scale", m.denoising.box_noise_scale);
  }
}

}  // namespace

void set_init_weights(Config& config, const std::string& file) {
  config.remove("model.init_weights");
  config.assign("model.init_weights.0.file", file);
}

model::PostprocessOptions Experiment::postprocess() const {
  model::PostprocessOptions o;
  o.top_k = eval_top_k;
  o.clip_boxes = model.clip_boxes;
  return o;
}

ModelSpec model_spec(const Config& c) {
  ModelSpec spec;
  spec.init = init_weights_options(c);
  spec.clip_boxes = clip_boxes_option(c);
  spec.type = c.get_string("model.type");
  if (spec.type == "dab_detr") {
    spec.dab_detr = dab_detr_options(c);
  } else {
    spec.dino = dino_options(c);
  }
  return spec;
}

Experiment make_experiment(const Config& c) {
  Experiment e;
  e.config = c;
  e.model = model_spec(c);
  e.criterion = criterion_options(c);

  const auto transforms = transform_options(c);
  const auto policy = data::parse_on_invalid(c.get_string("data.on_invalid", "skip"));
  const auto exif = data::parse_exif_orientation(c.get_string("data.exif_orientation", "apply"));
  e.data.train.ann_file = c.get_string("data.train.ann");
  e.data.train.images_dir = c.get_string("data.train.images");
  e.data.train.train = true;
  // Background images take part as pure negatives only when asked (the reference drops them).
  e.data.train.drop_empty = !c.get_bool("data.train.keep_empty", !e.data.train.drop_empty);
  e.data.train.on_invalid = policy;
  e.data.train.exif = exif;
  e.data.train.transforms = transforms;
  e.data.val.ann_file = c.get_string("data.val.ann");
  e.data.val.images_dir = c.get_string("data.val.images");
  e.data.val.train = false;
  e.data.val.drop_empty = false;
  e.data.val.on_invalid = policy;
  e.data.val.exif = exif;
  e.data.val.transforms = transforms;
  e.data.batch_size = static_cast<int>(c.get_int("data.batch_size"));
  e.data.workers = static_cast<int>(c.get_int("data.workers", e.data.workers));
  c.require_all_used("data");

  auto& s = e.solver;
  s.lr = c.get_double("solver.lr");
  s.backbone_lr_mult = c.get_double("solver.backbone_lr_mult", s.backbone_lr_mult);
  s.weight_decay = c.get_double("solver.weight_decay", s.weight_decay);
  s.beta1 = c.get_double("solver.beta1", s.beta1);
  s.beta2 = c.get_double("solver.beta2", s.beta2);
  s.clip_norm = c.get_double("solver.clip_norm", s.clip_norm);
  s.max_iter = c.get_int("solver.max_iter");
  s.steps = c.get_int_list("solver.steps");
  s.gamma = c.get_double("solver.gamma", s.gamma);
  s.warmup_iters = c.get_int("solver.warmup_iters", s.warmup_iters);
  s.warmup_factor = c.get_double("solver.warmup_factor", s.warmup_factor);
  s.accumulate = c.get_int("solver.accumulate", s.accumulate);
  if (s.max_iter < 1 || s.accumulate < 1) {
    throw util::InputError(
        fmt::format("config '{}': solver needs max_iter >= 1 and accumulate >= 1", c.source()));
  }
  c.require_all_used("solver");

  auto& t = e.train;
  t.checkpoint_period = c.get_int("train.checkpoint_period", t.checkpoint_period);
  t.keep_checkpoints = c.get_int("train.keep_checkpoints", t.keep_checkpoints);
  t.eval_period = c.get_int("train.eval_period", t.eval_period);
  t.log_period = c.get_int("train.log_period", t.log_period);
  t.seed = static_cast<uint64_t>(c.get_int("train.seed", int64_t(t.seed)));
  const auto nonfinite = c.get_string("train.on_nonfinite", "stop");
  if (nonfinite != "stop" && nonfinite != "skip") {
    throw util::InputError(
        fmt::format("config '{}': train.on_nonfinite must be 'stop' or 'skip', got '{}'",
                    c.source(), nonfinite));
  }
  t.skip_nonfinite = nonfinite == "skip";
  t.device = c.get_string("train.device", t.device);
  t.dist_backend = c.get_string("train.dist_backend", t.dist_backend);
  if (t.dist_backend != "auto" && t.dist_backend != "gloo" && t.dist_backend != "nccl") {
    throw util::InputError(
        fmt::format("config '{}': train.dist_backend '{}' is not one of auto, gloo, nccl",
                    c.source(), t.dist_backend));
  }
  t.dist_timeout_s = c.get_double("train.dist_timeout_s", t.dist_timeout_s);
  if (!(t.dist_timeout_s > 0) || !std::isfinite(t.dist_timeout_s)) {
    throw util::InputError(fmt::format(
        "config '{}': train.dist_timeout_s must be a positive number of seconds, got {}",
        c.source(), t.dist_timeout_s));
  }
  const auto amp = c.get_string("train.amp", "off");
  if (amp == "off" || amp == "false") {
    t.amp = Amp::kOff;
  } else if (amp == "bf16") {
    t.amp = Amp::kBFloat16;
  } else if (amp == "fp16") {
    t.amp = Amp::kFloat16;
  } else {
    throw util::InputError(
        fmt::format("config '{}': train.amp must be off, bf16 or fp16, got '{}'", c.source(), amp));
  }
  if (t.amp == Amp::kFloat16 && t.device.rfind("cuda", 0) != 0) {
    throw util::InputError(fmt::format(
        "config '{}': train.amp fp16 needs train.device cuda (autocast to float16 and its "
        "gradient scaler are for GPUs); on the CPU use bf16",
        c.source()));
  }
  if (t.amp == Amp::kBFloat16 && t.device == "cpu" && !cpu_bf16_autocast_supported()) {
    throw util::InputError(fmt::format(
        "config '{}': train.amp bf16 on the CPU needs LibTorch 2.x (this build's LibTorch {} "
        "has no bfloat16 layer or group norm with float32 weights); train in float32 "
        "(train.amp off) or build against PyTorch 2.x (scripts/test-torch2.sh)",
        c.source(), TORCH_VERSION));
  }
  t.ema = c.get_bool("train.ema.enabled", t.ema);
  t.ema_decay = c.get_double("train.ema.decay", t.ema_decay);
  if (!(t.ema_decay >= 0 && t.ema_decay < 1)) {
    throw util::InputError(fmt::format("config '{}': train.ema.decay must be in [0, 1), got {}",
                                       c.source(), t.ema_decay));
  }
  e.eval_top_k = c.get_int("train.eval_top_k", e.eval_top_k);
  if (t.log_period < 1 || t.checkpoint_period < 1 || t.keep_checkpoints < 1) {
    throw util::InputError(fmt::format(
        "config '{}': train.log_period, checkpoint_period and keep_checkpoints must be >= 1",
        c.source()));
  }
  c.require_all_used("train");
  c.require_all_used();
  check_values(e, c);
  return e;
}

}  // namespace aligndetr::engine
