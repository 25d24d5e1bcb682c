#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "aligndetr/ops/ms_deform_attn.h"
#include "support/ms_deform_attn_loop.h"

namespace aligndetr::ops {
namespace {

struct Case {
  torch::Tensor value, loc, weights;
  SpatialShapes shapes;
};

Case random_case(int64_t seed) {
  torch::manual_seed(seed);
  Case c;
  c.shapes = {{5, 7}, {3, 4}, {1, 2}};
  int64_t S = 0;
  for (const auto& s : c.shapes) S += s[0] * s[1];
  const int64_t B = 2, Q = 3, H = 2, D = 4, L = 3, P = 2;
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  c.value = torch::randn({B, S, H, D}, opts);
  // Locations a little beyond [0, 1] exercise the zero padding.
  c.loc = torch::rand({B, Q, H, L, P, 2}, opts) * 1.2 - 0.1;
  c.weights = torch::rand({B, Q, H, L, P}, opts);
  return c;
}

using Kernel = torch::Tensor (*)(const torch::Tensor&, const SpatialShapes&, const torch::Tensor&,
                                 const torch::Tensor&);

struct NamedKernel {
  const char* name;
  Kernel fn;
};

const NamedKernel kKernels[] = {{"grid_sample", &ms_deform_attn_grid_sample},
                                {"fused_cpu", &ms_deform_attn_cpu}};

TEST(MSDeformAttn, KernelsMatchExplicitLoops) {
  for (const auto& kernel : kKernels) {
    for (int64_t seed = 0; seed < 3; ++seed) {
      const auto c = random_case(seed);
      const auto fast = kernel.fn(c.value, c.shapes, c.loc, c.weights);
      const auto slow = testing::ms_deform_attn_loop(c.value, c.shapes, c.loc, c.weights);
      EXPECT_EQ(fast.sizes(), torch::IntArrayRef({2, 3, 8}));
      EXPECT_TRUE(torch::allclose(fast, slow, 1e-10, 1e-12))
          << kernel.name << ": " << (fast - slow).abs().max();
    }
  }
}

TEST(MSDeformAttn, GradientsMatchExplicitLoops) {
  for (const auto& kernel : kKernels) {
    auto c = random_case(7);
    for (auto* t : {&c.value, &c.loc, &c.weights}) t->requires_grad_(true);
    const auto probe = torch::randn({2, 3, 8}, torch::kFloat64);
    const auto g_fast =
        torch::autograd::grad({(kernel.fn(c.value, c.shapes, c.loc, c.weights) * probe).sum()},
                              {c.value, c.loc, c.weights});
    const auto g_slow = torch::autograd::grad(
        {(testing::ms_deform_attn_loop(c.value, c.shapes, c.loc, c.weights) * probe).sum()},
        {c.value, c.loc, c.weights});
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_TRUE(torch::allclose(g_fast[i], g_slow[i], 1e-9, 1e-10))
          << kernel.name << " input " << i << ": " << (g_fast[i] - g_slow[i]).abs().max();
    }
  }
}

TEST(MSDeformAttn, FusedGradientsMatchFiniteDifferences) {
  // Independent of both other kernels: central differences of a random projection.
  auto c = random_case(11);
  const auto probe = torch::randn({2, 3, 8}, torch::kFloat64);
  const auto f = [&](const torch::Tensor& v, const torch::Tensor& l, const torch::Tensor& w) {
    return (ms_deform_attn_cpu(v, c.shapes, l, w) * probe).sum().item<double>();
  };
  for (auto* t : {&c.value, &c.loc, &c.weights}) t->requires_grad_(true);
  const auto grads = torch::autograd::grad(
      {(ms_deform_attn_cpu(c.value, c.shapes, c.loc, c.weights) * probe).sum()},
      {c.value, c.loc, c.weights});
  torch::NoGradGuard no_grad;
  const double eps = 1e-6;
  std::vector<torch::Tensor> inputs = {c.value.detach().clone(), c.loc.detach().clone(),
                                       c.weights.detach().clone()};
  for (size_t i = 0; i < 3; ++i) {
    auto flat = inputs[i].view({-1});
    for (int64_t k = 0; k < flat.numel(); k += 7) {
      const double x = flat[k].item<double>();
      flat[k] = x + eps;
      const double up = f(inputs[0], inputs[1], inputs[2]);
      flat[k] = x - eps;
      const double down = f(inputs[0], inputs[1], inputs[2]);
      flat[k] = x;
      const double numeric = (up - down) / (2 * eps);
      EXPECT_NEAR(grads[i].view({-1})[k].item<double>(), numeric, 1e-6)
          << "input " << i << " element " << k;
    }
  }
}

TEST(MSDeformAttn, FusedMatchesGridSampleInFloatAtTheTinyEncoderShape) {
  torch::manual_seed(3);
  const SpatialShapes shapes = {{32, 40}, {16, 20}, {8, 10}, {4, 5}};
  const int64_t B = 2, S = 1700, Q = 300, H = 4, D = 32, L = 4, P = 4;
  const auto value = torch::randn({B, S, H, D}, torch::requires_grad());
  const auto loc = (torch::rand({B, Q, H, L, P, 2}) * 1.1 - 0.05).requires_grad_(true);
  const auto weights = torch::rand({B, Q, H, L, P}, torch::requires_grad());
  const auto probe = torch::randn({B, Q, H * D});
  const auto a = ms_deform_attn_cpu(value, shapes, loc, weights);
  const auto b = ms_deform_attn_grid_sample(value, shapes, loc, weights);
  EXPECT_TRUE(torch::allclose(a, b, 1e-4, 1e-5)) << (a - b).abs().max();
  const auto ga = torch::autograd::grad({(a * probe).sum()}, {value, loc, weights});
  const auto gb = torch::autograd::grad({(b * probe).sum()}, {value, loc, weights});
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(torch::allclose(ga[i], gb[i], 1e-3, 1e-3))
        << "input " << i << ": " << (ga[i] - gb[i]).abs().max();
  }
}

TEST(MSDeformAttn, CpuEntryPointUsesTheFusedKernelAndRejectsBadInputs) {
  const auto c = random_case(1);
  const auto out =
      ms_deform_attn(c.value.detach().requires_grad_(true), c.shapes, c.loc, c.weights);
  ASSERT_TRUE(out.grad_fn());
  EXPECT_NE(out.grad_fn()->name().find("FusedMSDeformAttn"), std::string::npos)
      << out.grad_fn()->name();
  EXPECT_THROW(ms_deform_attn_cpu(c.value.to(torch::kFloat), c.shapes, c.loc, c.weights),
               c10::Error);
  EXPECT_THROW(ms_deform_attn_cpu(c.value.narrow(1, 0, 10), c.shapes, c.loc, c.weights),
               c10::Error);
  // A NaN location reads nothing rather than an arbitrary pixel.
  auto loc = c.loc.clone();
  loc.view({-1}).fill_(std::nan(""));
  EXPECT_EQ(ms_deform_attn_cpu(c.value, c.shapes, loc, c.weights).abs().sum().item<double>(), 0.0);
}

TEST(MSDeformAttn, SamplingAtAPixelCentreReturnsThatPixel) {
  // One level 2x3, one head, one point at the centre of pixel (row 1, col 2): (2.5/3, 1.5/2).
  const SpatialShapes shapes = {{2, 3}};
  auto value = torch::arange(6, torch::kFloat64).view({1, 6, 1, 1});
  auto loc = torch::tensor({2.5 / 3, 1.5 / 2}, torch::kFloat64).view({1, 1, 1, 1, 1, 2});
  auto w = torch::ones({1, 1, 1, 1, 1}, torch::kFloat64);
  EXPECT_DOUBLE_EQ(ms_deform_attn(value, shapes, loc, w).item<double>(), 5.0);
  // Halfway between pixels 0 and 1 of row 0: the mean 0.5. Outside the image: half padding.
  loc = torch::tensor({1.0 / 3, 0.25}, torch::kFloat64).view({1, 1, 1, 1, 1, 2});
  EXPECT_DOUBLE_EQ(ms_deform_attn(value, shapes, loc, w).item<double>(), 0.5);
  // On the right edge of row 0: half of pixel 2 (value 2) and half of the zero padding.
  loc = torch::tensor({1.0, 0.25}, torch::kFloat64).view({1, 1, 1, 1, 1, 2});
  EXPECT_DOUBLE_EQ(ms_deform_attn(value, shapes, loc, w).item<double>(), 1.0);
}

TEST(MSDeformAttn, ModuleShapesInitAndPadding) {
  torch::manual_seed(0);
  MSDeformAttnOptions o;
  o.embed_dim = 32;
  o.num_heads = 4;
  o.num_levels = 2;
  o.num_points = 3;
  MSDeformAttn attn(o);
  EXPECT_EQ(attn->named_parameters().size(), 8u);
  const auto bias = attn->named_parameters()["sampling_offsets.bias"].view({4, 2, 3, 2});
  // Head 0 looks right (+x): points at 1, 2, 3 pixels.
  EXPECT_DOUBLE_EQ(bias[0][0][2][0].item<double>(), 3.0);
  EXPECT_DOUBLE_EQ(bias[0][0][2][1].item<double>(), 0.0);
  const SpatialShapes shapes = {{4, 4}, {2, 2}};
  const auto query = torch::randn({2, 5, 32});
  const auto value = torch::randn({2, 20, 32});
  const auto ref = torch::rand({2, 5, 2, 4});
  const auto out = attn->forward(query, value, ref, shapes);
  EXPECT_EQ(out.sizes(), torch::IntArrayRef({2, 5, 32}));
  // Padded value tokens do not contribute: changing them changes nothing.
  auto mask = torch::zeros({2, 20}, torch::kBool);
  mask.narrow(1, 16, 4).fill_(true);
  auto value2 = value.clone();
  value2.narrow(1, 16, 4).normal_();
  EXPECT_TRUE(torch::allclose(attn->forward(query, value, ref, shapes, mask),
                              attn->forward(query, value2, ref, shapes, mask)));
  EXPECT_FALSE(torch::allclose(attn->forward(query, value, ref, shapes),
                               attn->forward(query, value2, ref, shapes)));
}

TEST(MSDeformAttn, BFloat16OnTheCpuRunsTheFusedKernelWidened) {
  // Autocast hands the sampling bfloat16 values: the fused kernel runs in float32 on them and
  // the result comes back in bfloat16, equal to the float32 result on the same rounded inputs.
  auto c = random_case(5);
  const auto value = c.value.to(torch::kBFloat16).requires_grad_(true);
  const auto loc = c.loc.to(torch::kFloat);
  const auto out = ms_deform_attn(value, c.shapes, loc, c.weights.to(torch::kFloat));
  EXPECT_EQ(out.scalar_type(), torch::kBFloat16);
  const auto expected = ms_deform_attn_cpu(value.detach().to(torch::kFloat), c.shapes, loc,
                                           c.weights.to(torch::kFloat));
  EXPECT_TRUE(torch::allclose(out.to(torch::kFloat), expected, 1e-2, 1e-2))
      << (out.to(torch::kFloat) - expected).abs().max();
  out.sum().backward();
  EXPECT_EQ(value.grad().scalar_type(), torch::kBFloat16);
}

TEST(MSDeformAttn, InferenceReadsABFloat16ValueAsSuchWithTheWidenedFloat32Result) {
  // The tiny encoder's shape: heads of 32 channels, so the vectorised loop runs.
  torch::manual_seed(6);
  const SpatialShapes shapes = {{32, 40}, {16, 20}, {8, 10}, {4, 5}};
  const int64_t B = 2, S = 1700, Q = 300, H = 4, D = 32, L = 4, P = 4;
  const auto value = torch::randn({B, S, H, D}).to(torch::kBFloat16);
  const auto loc = torch::rand({B, Q, H, L, P, 2}) * 1.1 - 0.05;
  const auto weights = torch::rand({B, Q, H, L, P});
  {
    const torch::NoGradGuard no_grad;
    const auto out = ms_deform_attn_cpu(value, shapes, loc, weights);
    EXPECT_EQ(out.scalar_type(), torch::kFloat);
    // Widening is exact and the sums are the same float32 ones: equal to the last bit.
    EXPECT_TRUE(
        torch::equal(out, ms_deform_attn_cpu(value.to(torch::kFloat), shapes, loc, weights)));
    // The module's entry point takes this path and narrows the result as autocast would.
    EXPECT_TRUE(
        torch::equal(ms_deform_attn(value, shapes, loc, weights), out.to(torch::kBFloat16)));
    EXPECT_THROW(ms_deform_attn_cpu(value, shapes, loc.to(torch::kDouble), weights), c10::Error);
  }
  // Gradients are float32's (the kernel's backward): a bfloat16 value is refused there.
  EXPECT_THROW(ms_deform_attn_cpu(value.clone().requires_grad_(true), shapes, loc, weights),
               c10::Error);
}

// Heads of 32 float32 channels take loops that keep the sums (forward) and the output gradient
// (backward) in registers; any other width takes the general loops. The same value padded with
// zero channels to 40 goes the general way, and its first 32 channels, the location and weight
// gradients must be the same numbers to the last bit (the same additions in the same order),
// float32 and (forward) bfloat16 values alike, with samples beyond the levels' edges.
TEST(MSDeformAttn, HeadsOf32SumInRegistersAsTheGeneralLoopDoes) {
  torch::manual_seed(8);
  const SpatialShapes shapes = {{13, 11}, {7, 6}, {4, 3}};
  const int64_t B = 2, S = 143 + 42 + 12, Q = 29, H = 3, D = 32, L = 3, P = 4;
  const auto value = torch::randn({B, S, H, D});
  const auto loc = torch::rand({B, Q, H, L, P, 2}) * 1.3 - 0.15;
  const auto weights = torch::rand({B, Q, H, L, P});
  const auto pad = [&](const torch::Tensor& t) {
    return torch::cat({t, torch::zeros({B, t.size(1), H, 8}, t.options())}, -1);
  };
  {
    const torch::NoGradGuard no_grad;
    for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
      const auto v = value.to(dtype);
      const auto out = ms_deform_attn_cpu(v, shapes, loc, weights);
      const auto general =
          ms_deform_attn_cpu(pad(v), shapes, loc, weights).view({B, Q, H, 40}).narrow(3, 0, D);
      EXPECT_TRUE(torch::equal(out, general.reshape({B, Q, H * D})))
          << dtype << ": " << (out - general.reshape({B, Q, H * D})).abs().max();
      EXPECT_GT(out.abs().max().item<float>(), 0.1f);
    }
  }
  const auto probe = torch::randn({B, Q, H, D});
  const auto grads = [&](const torch::Tensor& v, const torch::Tensor& g) {
    const auto vv = v.clone().requires_grad_(true), ll = loc.clone().requires_grad_(true),
               ww = weights.clone().requires_grad_(true);
    const auto out = ms_deform_attn_cpu(vv, shapes, ll, ww);
    return torch::autograd::grad({out}, {vv, ll, ww}, {g.reshape(out.sizes())});
  };
  const auto fast = grads(value, probe);
  const auto general = grads(pad(value), pad(probe));
  EXPECT_TRUE(torch::equal(fast[0], general[0].narrow(3, 0, D)))
      << (fast[0] - general[0].narrow(3, 0, D)).abs().max();
  for (size_t i = 1; i < 3; ++i) {
    EXPECT_TRUE(torch::equal(fast[i], general[i]))
        << "input " << i << ": " << (fast[i] - general[i]).abs().max();
    EXPECT_GT(fast[i].abs().max().item<float>(), 0.01f) << i;
  }
}

// The CUDA kernel on copies of CPU inputs, its result and gradients brought back to the CPU.
torch::Tensor cuda_kernel(const torch::Tensor& value, const SpatialShapes& shapes,
                          const torch::Tensor& loc, const torch::Tensor& weights) {
  return ms_deform_attn_cuda(value.to(torch::kCUDA), shapes, loc.to(torch::kCUDA),
                             weights.to(torch::kCUDA))
      .to(torch::kCPU);
}

bool skip_without_cuda_kernel() {
  return !ms_deform_attn_cuda_built() || !torch::cuda::is_available();
}

#define SKIP_WITHOUT_CUDA_KERNEL()                                                                 \
  if (skip_without_cuda_kernel()) {                                                                \
    GTEST_SKIP() << (ms_deform_attn_cuda_built() ? "no CUDA device on this machine"                \
                                                 : "built without CUDA kernels (ALIGNDETR_CUDA)"); \
  }

TEST(MSDeformAttnCuda, WithoutKernelsTheEntryPointSaysHowToBuildThem) {
  if (ms_deform_attn_cuda_built()) GTEST_SKIP() << "this build has the CUDA kernels";
  const auto c = random_case(0);
  try {
    ms_deform_attn_cuda(c.value, c.shapes, c.loc, c.weights);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("-DALIGNDETR_CUDA=ON"), std::string::npos) << e.what();
  }
}

TEST(MSDeformAttnCuda, ForwardAndGradientsMatchTheLoopsAndTheCpuKernelInDouble) {
  SKIP_WITHOUT_CUDA_KERNEL();
  for (int64_t seed = 0; seed < 3; ++seed) {
    auto c = random_case(seed);
    for (auto* t : {&c.value, &c.loc, &c.weights}) t->requires_grad_(true);
    const auto probe = torch::randn({2, 3, 8}, torch::kFloat64);
    const auto grads = [&](Kernel fn) {
      auto out = fn(c.value, c.shapes, c.loc, c.weights);
      auto g = torch::autograd::grad({(out * probe).sum()}, {c.value, c.loc, c.weights});
      g.insert(g.begin(), out.detach());
      return g;
    };
    const auto gpu = grads(&cuda_kernel);
    for (Kernel reference : {Kernel(&testing::ms_deform_attn_loop), Kernel(&ms_deform_attn_cpu)}) {
      const auto ref = grads(reference);
      for (size_t i = 0; i < 4; ++i) {
        EXPECT_TRUE(torch::allclose(gpu[i], ref[i], 1e-9, 1e-10))
            << "seed " << seed << " output/gradient " << i << ": " << (gpu[i] - ref[i]).abs().max();
      }
    }
  }
}

TEST(MSDeformAttnCuda, ReducedPrecisionAccumulatesInFloat32) {
  SKIP_WITHOUT_CUDA_KERNEL();
  torch::manual_seed(2);
  // 48 channels: a head wider than a warp.
  const SpatialShapes shapes = {{13, 17}, {7, 9}, {3, 5}};
  const int64_t B = 2, S = 221 + 63 + 15, Q = 37, H = 4, D = 48, L = 3, P = 3;
  for (const auto dtype : {torch::kFloat, torch::kHalf, torch::kBFloat16}) {
    // The reference sees the same rounded inputs, in double.
    const auto value = torch::randn({B, S, H, D}).to(dtype);
    const auto loc = torch::rand({B, Q, H, L, P, 2}) * 1.2 - 0.1;
    const auto weights = torch::rand({B, Q, H, L, P});
    const auto probe = torch::randn({B, Q, H * D}).to(dtype);
    auto v = value.to(torch::kCUDA).requires_grad_(true);
    auto l = loc.to(torch::kCUDA).requires_grad_(true);
    auto w = weights.to(torch::kCUDA).requires_grad_(true);
    const auto out = ms_deform_attn(v, shapes, l, w);
    ASSERT_EQ(out.scalar_type(), dtype);
    const auto g = torch::autograd::grad({(out * probe.to(torch::kCUDA)).sum()}, {v, l, w});
    auto vr = value.to(torch::kDouble).requires_grad_(true);
    auto lr = loc.to(torch::kDouble).requires_grad_(true);
    auto wr = weights.to(torch::kDouble).requires_grad_(true);
    const auto ref = ms_deform_attn_cpu(vr, shapes, lr, wr);
    const auto gr = torch::autograd::grad({(ref * probe.to(torch::kDouble)).sum()}, {vr, lr, wr});
    // Rounding of the result only: 2^-11 relative for float16, 2^-8 for bfloat16.
    const double tol = dtype == torch::kFloat ? 1e-5 : dtype == torch::kHalf ? 2e-3 : 1e-2;
    const auto rel = [](const torch::Tensor& a, const torch::Tensor& b) {
      return ((a.to(torch::kCPU, torch::kDouble) - b).abs().max() / b.abs().max()).item<double>();
    };
    EXPECT_LT(rel(out, ref), tol) << dtype;
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(g[i].scalar_type(), i == 0 ? dtype : torch::kFloat);
      EXPECT_LT(rel(g[i], gr[i]), tol) << dtype << " gradient " << i;
    }
  }
}

}  // namespace
}  // namespace aligndetr::ops
