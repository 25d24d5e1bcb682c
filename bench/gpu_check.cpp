// The device check (scripts/gpu-check.sh), linking the core only: the CUDA deformable-attention
// kernel against the CPU kernel (forward and gradients in float32, float16 and bfloat16), a tiny
// DINO training step on the GPU in float32 and under bfloat16 autocast, and the kernel at the R50
// encoder shape (800x1216 input: 20,197 tokens, 8 heads x 32, 4 levels x 4 points) against the
// grid_sample formulation in the same run. One table on stdout; exit 0 when every check passes,
// 1 when one fails. Without a GPU the same rows run on the CPU (the CPU kernel against
// grid_sample) and the table says so.
//   aligndetr_gpu_check [--quick] [--iters N]
//     --quick    the kernel checks only (no training step, no benchmark)
//     --iters N  timed iterations per benchmark row (default 20; 2 on the CPU)

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "aligndetr/loss/criterion.h"
#include "aligndetr/model/dino.h"
#include "aligndetr/ops/autocast.h"
#include "aligndetr/ops/ms_deform_attn.h"

namespace {

using aligndetr::ops::SpatialShapes;
using Kernel = std::function<torch::Tensor(const torch::Tensor&, const SpatialShapes&,
                                           const torch::Tensor&, const torch::Tensor&)>;

struct Table {
  std::vector<std::vector<std::string>> rows;
  bool failed = false;

  void add(std::string what, std::string result, const char* status) {
    if (std::strcmp(status, "FAIL") == 0) failed = true;
    rows.push_back({std::move(what), std::move(result), status});
  }
  void print() const {
    size_t w0 = 4, w1 = 6;
    for (const auto& r : rows) {
      w0 = std::max(w0, r[0].size());
      w1 = std::max(w1, r[1].size());
    }
    std::printf("%-*s  %-*s  %s\n", int(w0), "check", int(w1), "result", "status");
    for (const auto& r : rows) {
      std::printf("%-*s  %-*s  %s\n", int(w0), r[0].c_str(), int(w1), r[1].c_str(), r[2].c_str());
    }
  }
};

std::string format(const char* fmt, double a, double b = 0, double c = 0) {
  char buf[160];
  std::snprintf(buf, sizeof(buf), fmt, a, b, c);
  return buf;
}

const char* dtype_name(torch::ScalarType t) {
  return t == torch::kHalf ? "float16" : t == torch::kBFloat16 ? "bfloat16" : "float32";
}

void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}

// Largest difference relative to the reference's largest magnitude, over the output and the
// three gradients; the reference runs the CPU kernel in double on the same rounded inputs.
double kernel_error(const Kernel& kernel, const torch::Device& device, torch::ScalarType dtype) {
  torch::manual_seed(2);
  const SpatialShapes shapes = {{13, 17}, {7, 9}, {3, 5}};
  const int64_t B = 2, S = 299, Q = 37, H = 4, D = 48, L = 3, P = 3;
  const auto value = torch::randn({B, S, H, D}).to(dtype);
  const auto loc = torch::rand({B, Q, H, L, P, 2}) * 1.2 - 0.1;  // some samples in the padding
  const auto weights = torch::rand({B, Q, H, L, P});
  const auto probe = torch::randn({B, Q, H * D}).to(dtype);
  const auto run = [&](const Kernel& fn, const torch::Device& dev, torch::ScalarType t) {
    auto v = value.to(dev, t).requires_grad_(true);
    auto l = loc.to(dev, t == torch::kDouble ? t : torch::kFloat).requires_grad_(true);
    auto w = weights.to(dev, l.scalar_type()).requires_grad_(true);
    const auto out = fn(v, shapes, l, w);
    auto g = torch::autograd::grad({(out * probe.to(dev, t)).sum()}, {v, l, w});
    g.insert(g.begin(), out);
    for (auto& x : g) x = x.to(torch::kCPU, torch::kDouble);
    return g;
  };
  const auto got = run(kernel, device, dtype);
  const auto ref = run(aligndetr::ops::ms_deform_attn_cpu, torch::kCPU, torch::kDouble);
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    worst = std::max(worst, ((got[i] - ref[i]).abs().max() / ref[i].abs().max()).item<double>());
  }
  return worst;
}

// Median milliseconds of `iters` runs after two warm-up runs.
double median_ms(const std::function<void()>& fn, const torch::Device& device, int iters) {
  for (int i = 0; i < 2; ++i) fn();
  synchronize(device);
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    synchronize(device);
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

void benchmark_kernels(Table& table, const Kernel& fused, const torch::Device& device, int iters) {
  const SpatialShapes shapes = {{100, 152}, {50, 76}, {25, 38}, {13, 19}};
  const int64_t B = 1, S = 20197, H = 8, D = 32, L = 4, P = 4;
  const std::vector<torch::ScalarType> types =
      device.is_cuda() ? std::vector<torch::ScalarType>{torch::kFloat, torch::kBFloat16}
                       : std::vector<torch::ScalarType>{torch::kFloat};
  for (const auto dtype : types) {
    torch::manual_seed(0);
    const auto value = torch::randn({B, S, H, D}, torch::TensorOptions(device).dtype(dtype));
    const auto loc = torch::rand({B, S, H, L, P, 2}, torch::TensorOptions(device));
    const auto weights = torch::rand({B, S, H, L, P}, torch::TensorOptions(device));
    const auto grad = torch::randn({B, S, H * D}, torch::TensorOptions(device).dtype(dtype));
    const Kernel grid = aligndetr::ops::ms_deform_attn_grid_sample;
    double forward[2], both[2];
    const Kernel* kernels[2] = {&fused, &grid};
    for (int k = 0; k < 2; ++k) {
      const auto& fn = *kernels[k];
      forward[k] = median_ms(
          [&] {
            torch::NoGradGuard no_grad;
            fn(value, shapes, loc, weights);
          },
          device, iters);
      const auto v = value.detach().requires_grad_(true);
      const auto l = loc.detach().requires_grad_(true);
      const auto w = weights.detach().requires_grad_(true);
      both[k] = median_ms(
          [&] {
            torch::autograd::grad({(fn(v, shapes, l, w) * grad).sum()}, {v, l, w});
          },
          device, iters);
    }
    const std::string where = std::string(device.is_cuda() ? "cuda " : "cpu ") + dtype_name(dtype);
    table.add("deform attn R50 forward, " + where + " (fused / grid_sample)",
              format("%.2f / %.2f ms (%.1fx)", forward[0], forward[1], forward[1] / forward[0]),
              "info");
    table.add("deform attn R50 fwd+bwd, " + where + " (fused / grid_sample)",
              format("%.2f / %.2f ms (%.1fx)", both[0], both[1], both[1] / both[0]), "info");
  }
}

aligndetr::model::DinoOptions tiny_dino() {
  aligndetr::model::DinoOptions o;
  o.backbone.depth = 18;
  o.num_classes = 5;
  o.transformer.embed_dim = 64;
  o.transformer.num_heads = 4;
  o.transformer.num_points = 2;
  o.transformer.encoder_layers = 2;
  o.transformer.decoder_layers = 2;
  o.transformer.ffn_dim = 128;
  o.transformer.num_queries = 30;
  o.denoising.dn_number = 6;
  return o;
}

// One AdamW step of the tiny DINO at batch 2, 128x160, with or without bfloat16 autocast: the
// first step's loss from fixed weights and inputs, and the median step time.
struct StepResult {
  double loss = 0, ms = 0;
};

StepResult training_step(const torch::Device& device, bool bf16, int iters) {
  torch::manual_seed(0);
  aligndetr::model::Dino model(tiny_dino());
  model->to(device);
  model->train();
  torch::optim::AdamW optimizer(model->parameters(), torch::optim::AdamWOptions(1e-4));
  const auto images = torch::randn({2, 3, 128, 160}).to(device);
  const auto mask = torch::zeros({2, 128, 160}, torch::kBool).to(device);
  std::vector<aligndetr::boxes::Target> targets(2);
  targets[0].labels = torch::tensor({1, 3}, torch::kInt64).to(device);
  targets[0].boxes =
      torch::tensor({0.3f, 0.3f, 0.2f, 0.2f, 0.6f, 0.7f, 0.3f, 0.4f}).view({2, 4}).to(device);
  targets[1].labels = torch::tensor({4}, torch::kInt64).to(device);
  targets[1].boxes = torch::tensor({0.5f, 0.5f, 0.5f, 0.5f}).view({1, 4}).to(device);
  const auto criterion = aligndetr::loss::CriterionOptions::paper();
  const auto step = [&] {
    aligndetr::model::DetectorOutputs outputs;
    {
      std::optional<aligndetr::ops::AutocastGuard> autocast;
      if (bf16) autocast.emplace(device.type(), torch::kBFloat16);
      outputs = model->forward(images, mask, &targets);
    }
    const auto losses = aligndetr::loss::compute_criterion(outputs, targets, criterion);
    optimizer.zero_grad();
    losses.total.backward();
    optimizer.step();
    return losses.total.detach();
  };
  StepResult r;
  torch::manual_seed(1);
  r.loss = step().item<double>();
  r.ms = median_ms([&] { step(); }, device, iters);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  int iters = -1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--iters") == 0 && i + 1 < argc) {
      iters = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--quick] [--iters N]\n", argv[0]);
      return 3;
    }
  }
  const bool cuda = torch::cuda::is_available() && aligndetr::ops::ms_deform_attn_cuda_built();
  const torch::Device device = cuda ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  if (iters <= 0) iters = cuda ? 20 : 2;
  Table table;
  table.add("CUDA kernels in this build",
            aligndetr::ops::ms_deform_attn_cuda_built() ? "yes" : "no", "info");
  table.add("CUDA device",
            torch::cuda::is_available() ? std::to_string(torch::cuda::device_count()) + " found"
                                        : "none: the CUDA rows ran on the CPU",
            cuda ? "info" : "SKIP");
  const Kernel fused = cuda ? Kernel(aligndetr::ops::ms_deform_attn_cuda)
                            : Kernel(aligndetr::ops::ms_deform_attn_grid_sample);
  const std::string subject = cuda ? "cuda kernel" : "cpu grid_sample";
  // Float32: accumulation order only; reduced precision: the result's rounding (2^-11, 2^-8).
  for (const auto& [dtype, tol] : {std::pair{torch::kFloat, 2e-5}, std::pair{torch::kHalf, 2e-3},
                                   std::pair{torch::kBFloat16, 1e-2}}) {
    if (!cuda && dtype != torch::kFloat) continue;
    const double err = kernel_error(fused, device, dtype);
    table.add(subject + " vs cpu kernel (double), " + dtype_name(dtype) + ", fwd+grads",
              format("max rel err %.2e (tol %.0e)", err, tol), err < tol ? "PASS" : "FAIL");
  }
  if (!quick) {
    const auto fp32 = training_step(device, false, iters);
    const auto bf16 = training_step(device, true, iters);
    const std::string where = cuda ? "cuda" : "cpu";
    table.add("tiny DINO train step, " + where + " float32",
              format("%.1f ms, loss %.4f", fp32.ms, fp32.loss),
              std::isfinite(fp32.loss) ? "PASS" : "FAIL");
    const double rel = std::abs(bf16.loss - fp32.loss) / std::abs(fp32.loss);
    table.add("tiny DINO train step, " + where + " bf16 autocast",
              format("%.1f ms, loss %.4f (%.2f%% from fp32)", bf16.ms, bf16.loss, 100 * rel),
              std::isfinite(bf16.loss) && rel < 0.05 ? "PASS" : "FAIL");
    benchmark_kernels(table, cuda ? fused : Kernel(aligndetr::ops::ms_deform_attn_cpu), device,
                      iters);
  }
  table.print();
  return table.failed ? 1 : 0;
}
