#include "aligndetr/engine/bench.h"

#include <dlfcn.h>
#include <sys/resource.h>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include <ATen/record_function.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "aligndetr/engine/distributed.h"
#include "aligndetr/engine/solver.h"
#include "aligndetr/loss/criterion.h"
#include "aligndetr/model/flops.h"
#include "aligndetr/model/postprocess.h"
#include "aligndetr/ops/attention.h"
#include "aligndetr/ops/autocast.h"
#include "aligndetr/ops/linear.h"
#include "aligndetr/ops/ms_deform_attn.h"
#include "aligndetr/util/error.h"
#include "aligndetr/util/json.h"

namespace aligndetr::engine {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Observers of LibTorch's RecordFunction events on the bench's thread. The callbacks are plain
// functions (LibTorch takes function pointers), so their state is thread-local.
struct StartTime : at::ObserverContext {
  Clock::time_point start = Clock::now();
};

// Stages: the USER_SCOPE events the models and this file record, by name.
thread_local std::map<std::string, double>* g_stages = nullptr;
thread_local std::vector<std::string>* g_stage_order = nullptr;

std::unique_ptr<at::ObserverContext> stage_start(const at::RecordFunction&) {
  return g_stages ? std::make_unique<StartTime>() : nullptr;
}

void stage_end(const at::RecordFunction& fn, at::ObserverContext* ctx) {
  if (!g_stages || !ctx) return;
  const std::string name = fn.name();
  if (std::find(g_stage_order->begin(), g_stage_order->end(), name) == g_stage_order->end()) {
    g_stage_order->push_back(name);
  }
  (*g_stages)[name] += seconds_since(static_cast<StartTime*>(ctx)->start);
}

// Operators: self time (without the operators they call) and calls.
thread_local std::map<std::string, OperatorTime>* g_operators = nullptr;
thread_local std::vector<double> g_child_seconds;  // per open operator: time of its children

std::unique_ptr<at::ObserverContext> operator_start(const at::RecordFunction&) {
  if (!g_operators) return nullptr;
  g_child_seconds.push_back(0.0);
  return std::make_unique<StartTime>();
}

void operator_end(const at::RecordFunction& fn, at::ObserverContext* ctx) {
  if (!g_operators || !ctx || g_child_seconds.empty()) return;
  const double total = seconds_since(static_cast<StartTime*>(ctx)->start);
  const double children = g_child_seconds.back();
  g_child_seconds.pop_back();
  if (!g_child_seconds.empty()) g_child_seconds.back() += total;
  auto& op = (*g_operators)[fn.name()];
  op.name = fn.name();
  op.self_seconds += total - children;
  ++op.calls;
}

// Registers a thread-local callback for the scopes while alive.
class Observe {
 public:
  Observe(at::RecordFunctionCallback::StartCallback start,
          at::RecordFunctionCallback::EndCallback end,
          std::initializer_list<at::RecordScope> scopes)
      : handle_(at::addThreadLocalCallback(at::RecordFunctionCallback(start, end).scopes(scopes))) {
  }
  ~Observe() { at::removeCallback(handle_); }
  Observe(const Observe&) = delete;
  Observe& operator=(const Observe&) = delete;

 private:
  at::CallbackHandle handle_;
};

// Best of a few runs of `work`, which does `macs` multiply-adds: multiply-adds per second.
double rate_of(const std::function<void()>& work, double macs) {
  work();
  double best = 1e30;
  for (int i = 0; i < 3; ++i) {
    const auto start = Clock::now();
    work();
    best = std::min(best, seconds_since(start));
  }
  return macs / best;
}

std::pair<double, double> rates(torch::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  const int64_t n = 2048;
  const auto a = torch::randn({n, n}).to(dtype), b = torch::randn({n, n}).to(dtype);
  // The faster of the BLAS product and the route ops::linear takes at inference (a oneDNN 1x1
  // convolution for float32), so that the roofline holds the model's products to the best rate.
  const auto bias = torch::zeros({n}).to(dtype);
  const double matmul =
      std::max(rate_of([&] { (void)torch::mm(a, b); }, double(n) * n * n),
               rate_of([&] { (void)ops::linear(a, b, bias); }, double(n) * n * n));
  // A 3x3 convolution of the R50 backbone's third stage at 800x1216 (stride 16).
  const auto x = torch::randn({1, 256, 50, 76}).to(dtype);
  const auto w = torch::randn({256, 256, 3, 3}).to(dtype);
  const double conv_macs = 256.0 * 50 * 76 * 256 * 9;
  const double conv = rate_of([&] { (void)torch::conv2d(x, w, {}, 1, 1); }, conv_macs);
  return {matmul, conv};
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "unknown CPU";
}

std::vector<std::string> cpu_features() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  std::set<std::string> flags;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    for (std::string w; words >> w;) flags.insert(w);
    break;
  }
  std::vector<std::string> out;
  for (const char* f : {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}) {
    if (flags.count(f)) out.emplace_back(f);
  }
  return out;
}

// The malloc this process runs with (the command links tcmalloc where the build found it): peak
// memory depends on it as much as on the model.
std::string allocator_name() {
  using Version = const char* (*)(int*, int*, const char**);
  if (const auto version = reinterpret_cast<Version>(dlsym(RTLD_DEFAULT, "tc_version"))) {
    int major = 0, minor = 0;
    const char* patch = nullptr;
    version(&major, &minor, &patch);
    return fmt::format("tcmalloc {}.{}", major, minor);
  }
  return "glibc";
}

struct Usage {
  double peak_gib = 0;
  int64_t minor_faults = 0;
};

Usage usage() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return {double(u.ru_maxrss) / (1024.0 * 1024.0), int64_t(u.ru_minflt)};
}

// Random ground truth of a plausible COCO image: 8 boxes per image.
std::vector<boxes::Target> random_targets(int64_t batch, int64_t classes, int64_t h, int64_t w) {
  std::vector<boxes::Target> targets;
  for (int64_t b = 0; b < batch; ++b) {
    boxes::Target t;
    t.labels = torch::randint(classes, {8}, torch::kInt64);
    t.boxes = torch::cat({torch::rand({8, 2}) * 0.6 + 0.2, torch::rand({8, 2}) * 0.3 + 0.05}, 1);
    t.image_id = b + 1;
    t.orig_size = {h, w};
    t.size = {h, w};
    targets.push_back(t);
  }
  return targets;
}

void check_options(const BenchOptions& o) {
  const auto require = [](bool ok, const std::string& what) {
    if (!ok) throw util::InputError("bench: " + what);
  };
  require(o.height >= 32 && o.width >= 32 && o.height <= 8192 && o.width <= 8192,
          fmt::format("--size {}x{}: each side must be in [32, 8192]", o.height, o.width));
  require(o.batch >= 1 && o.batch <= 256, fmt::format("--batch {} must be in [1, 256]", o.batch));
  require(o.iterations >= 1, "--iterations must be at least 1");
  require(o.warmup >= 0, "--warmup must be >= 0");
  require(!o.bf16 || cpu_bf16_autocast_supported(),
          "--amp bf16 on the CPU needs LibTorch 2.x (1.13's CPU layer and group norms refuse "
          "bfloat16 inputs with float32 weights)");
}

// Measures the rates again and keeps each one's best.
void keep_best_rates(MachineRates& m, bool bf16) {
  const auto [matmul, conv] = rates(torch::kFloat32);
  m.matmul_fp32 = std::max(m.matmul_fp32, matmul);
  m.conv_fp32 = std::max(m.conv_fp32, conv);
  if (bf16 && m.matmul_bf16 > 0) {
    const auto [matmul_bf16, conv_bf16] = rates(torch::kBFloat16);
    m.matmul_bf16 = std::max(m.matmul_bf16, matmul_bf16);
    m.conv_bf16 = std::max(m.conv_bf16, conv_bf16);
  }
}

}  // namespace

MachineRates measure_machine(bool bf16) {
  MachineRates m;
  m.cpu = cpu_model_name();
  m.features = cpu_features();
  m.deform_kernel = ops::ms_deform_attn_cpu_kernel();
  m.attention_kernel = ops::blocked_attention_kernel();
  m.allocator = allocator_name();
  m.threads = at::get_num_threads();
  std::tie(m.matmul_fp32, m.conv_fp32) = rates(torch::kFloat32);
  if (bf16) {
    try {
      std::tie(m.matmul_bf16, m.conv_bf16) = rates(torch::kBFloat16);
    } catch (const c10::Error& e) {
      spdlog::warn("bench: no bfloat16 rates on this LibTorch ({})", e.what_without_backtrace());
    }
  }
  return m;
}

double BenchReport::median() const {
  return median_of(seconds);
}
double BenchReport::min() const {
  return seconds.empty() ? 0 : *std::min_element(seconds.begin(), seconds.end());
}
double BenchReport::max() const {
  return seconds.empty() ? 0 : *std::max_element(seconds.begin(), seconds.end());
}
double BenchReport::images_per_second() const {
  return median() > 0 ? double(options.batch) / median() : 0;
}
double BenchReport::roofline_ratio() const {
  return roofline_seconds > 0 ? median() / roofline_seconds : 0;
}

BenchReport run_bench(const Experiment& e, const BenchOptions& o) {
  check_options(o);
  BenchReport r;
  r.options = o;
  r.config = e.config.source();
  spdlog::info("bench: measuring this machine's matrix-product and convolution rates");
  r.machine = measure_machine(o.bf16);

  torch::manual_seed(0);
  auto model = e.model.build();
  const auto images = torch::randn({o.batch, 3, o.height, o.width});
  const auto mask = torch::zeros({o.batch, o.height, o.width}, torch::kBool);
  const auto targets = random_targets(o.batch, e.model.num_classes(), o.height, o.width);
  const Distributed single;
  std::unique_ptr<Solver> solver;
  if (o.train) {
    model->train();
    solver = std::make_unique<Solver>(*model, e.solver);
  } else {
    model->eval();
  }
  const model::PostprocessOptions post = e.postprocess();
  const std::vector<std::array<int64_t, 2>> sizes(size_t(o.batch), {o.height, o.width});

  const auto forward = [&] {
    std::optional<ops::AutocastGuard> autocast;
    if (o.bf16) autocast.emplace(c10::DeviceType::CPU, torch::kBFloat16);
    return model->forward(images, mask, o.train ? &targets : nullptr);
  };
  const auto iteration = [&] {
    if (!o.train) {
      torch::NoGradGuard no_grad;
      const auto out = forward();
      RECORD_USER_SCOPE("postprocess");
      const auto& last = out.decoder.back();
      (void)model::postprocess(last.logits.to(torch::kFloat32), last.boxes.to(torch::kFloat32),
                               sizes, post);
      return;
    }
    solver->begin_step(0);
    const auto out = forward();
    torch::Tensor total;
    {
      RECORD_USER_SCOPE("criterion");
      total = loss::compute_criterion(out, targets, e.criterion).total;
    }
    {
      RECORD_USER_SCOPE("backward");
      total.backward();
    }
    RECORD_USER_SCOPE("optimizer");
    solver->step(single);
  };

  {
    // The work of one iteration, counted on one forward pass (training: forward + backward is
    // taken as three times the forward, the usual convention).
    torch::NoGradGuard no_grad;
    const auto flops = model::count_flops([&] { (void)forward(); });
    const double scale = o.train ? 3.0 : 1.0;
    for (const auto& [name, count] : flops.by_operator) {
      const double g = scale * double(count) / 1e9;
      (name.find("conv") != std::string::npos ? r.gmacs_conv : r.gmacs_matmul) += g;
    }
    r.gmacs = r.gmacs_conv + r.gmacs_matmul;
  }

  for (int i = 0; i < o.warmup; ++i) {
    const auto start = Clock::now();
    iteration();
    spdlog::info("bench: warm-up {}/{}: {:.3f} s", i + 1, o.warmup, seconds_since(start));
  }
  std::map<std::string, std::vector<double>> stage_seconds;
  const int64_t faults_before = usage().minor_faults;
  for (int i = 0; i < o.iterations; ++i) {
    std::map<std::string, double> stages;
    g_stages = &stages;
    g_stage_order = &r.stage_order;
    const auto start = Clock::now();
    {
      const Observe observe(stage_start, stage_end, {at::RecordScope::USER_SCOPE});
      iteration();
    }
    g_stages = nullptr;
    r.seconds.push_back(seconds_since(start));
    for (const auto& name : r.stage_order) stage_seconds[name].push_back(stages[name]);
    spdlog::info("bench: iteration {}/{}: {:.3f} s", i + 1, o.iterations, r.seconds.back());
  }
  r.page_faults_per_iteration = double(usage().minor_faults - faults_before) / o.iterations;
  for (const auto& [name, values] : stage_seconds) r.stages[name] = median_of(values);

  // The rates once more after the iterations, each rate's best kept: a shared host's speed drifts
  // within a run, and one moment's rates moved the roofline by 15% between runs of one hour.
  keep_best_rates(r.machine, o.bf16);
  const double conv_rate =
      o.bf16 && r.machine.conv_bf16 > 0 ? r.machine.conv_bf16 : r.machine.conv_fp32;
  const double matmul_rate =
      o.bf16 && r.machine.matmul_bf16 > 0 ? r.machine.matmul_bf16 : r.machine.matmul_fp32;
  r.roofline_seconds = r.gmacs_conv * 1e9 / conv_rate + r.gmacs_matmul * 1e9 / matmul_rate;

  if (o.profile) {
    std::map<std::string, OperatorTime> operators;
    g_operators = &operators;
    g_child_seconds.clear();
    {
      const Observe observe(operator_start, operator_end,
                            {at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION});
      iteration();
    }
    g_operators = nullptr;
    for (auto& [name, op] : operators) r.operators.push_back(op);
    std::sort(r.operators.begin(), r.operators.end(),
              [](const auto& a, const auto& b) { return a.self_seconds > b.self_seconds; });
    if (int(r.operators.size()) > o.top_operators) r.operators.resize(size_t(o.top_operators));
  }
  r.peak_rss_gib = usage().peak_gib;
  return r;
}

std::string BenchReport::text() const {
  const auto& o = options;
  const double med = median();
  std::string s = fmt::format("bench: {}, {}, {} x {}x{}, {}, {} thread(s)\n", config,
                              o.train ? "training step" : "inference", o.batch, o.height, o.width,
                              o.bf16 ? "bfloat16 autocast" : "float32", machine.threads);
  s += fmt::format(
      "machine: {} ({}); deformable attention kernel {}; self-attention kernel {}; allocator {}; "
      "fp32 matmul {:.1f}, conv {:.1f} GMAC/s",
      machine.cpu,
      machine.features.empty() ? "no AVX2" : fmt::format("{}", fmt::join(machine.features, " ")),
      machine.deform_kernel, machine.attention_kernel, machine.allocator, machine.matmul_fp32 / 1e9,
      machine.conv_fp32 / 1e9);
  if (machine.matmul_bf16 > 0) {
    s += fmt::format("; bf16 matmul {:.1f}, conv {:.1f} GMAC/s", machine.matmul_bf16 / 1e9,
                     machine.conv_bf16 / 1e9);
  }
  s += "\n";
  s += fmt::format(
      "time per iteration: median {:.3f} s (min {:.3f}, max {:.3f}; {} timed after {} warm-up); "
      "{:.3f} images/s\n",
      med, min(), max(), seconds.size(), o.warmup, images_per_second());
  s += fmt::format("memory: peak {:.2f} GiB resident; {:.0f} page faults per iteration\n",
                   peak_rss_gib, page_faults_per_iteration);
  s += fmt::format(
      "work: {:.1f} GMAC (convolutions {:.1f}, matrix products {:.1f}{}); roofline {:.3f} s at "
      "the measured rates: {:.2f}x of roofline\n",
      gmacs, gmacs_conv, gmacs_matmul, o.train ? "; backward counted as twice the forward" : "",
      roofline_seconds, roofline_ratio());
  if (!stage_order.empty()) {
    s += fmt::format("\n{:<14} {:>10} {:>7}\n", "stage", "median s", "share");
    double staged = 0;
    for (const auto& name : stage_order) {
      const double t = stages.at(name);
      staged += t;
      s += fmt::format("{:<14} {:>10.3f} {:>6.1f}%\n", name, t, med > 0 ? 100 * t / med : 0);
    }
    s += fmt::format("{:<14} {:>10.3f} {:>6.1f}%\n", "other", std::max(0.0, med - staged),
                     med > 0 ? 100 * std::max(0.0, med - staged) / med : 0);
  }
  if (!operators.empty()) {
    s += fmt::format("\n{:<44} {:>9} {:>7} {:>7}\n", "operator (profiled iteration)", "self s",
                     "share", "calls");
    for (const auto& op : operators) {
      s += fmt::format("{:<44} {:>9.3f} {:>6.1f}% {:>7}\n", op.name.substr(0, 44), op.self_seconds,
                       med > 0 ? 100 * op.self_seconds / med : 0, op.calls);
    }
  }
  return s;
}

std::string BenchReport::json() const {
  const auto& o = options;
  std::string s = fmt::format(
      "{{\"config\": \"{}\", \"mode\": \"{}\", \"batch\": {}, \"size\": [{}, {}], \"precision\": "
      "\"{}\", \"threads\": {}, \"seconds\": [{:.6f}], \"median_s\": {:.6f}, \"images_per_s\": "
      "{:.6f}, \"peak_rss_gib\": {:.4f}, \"page_faults_per_iteration\": {:.1f}, \"gmacs\": "
      "{:.3f}, \"gmacs_conv\": {:.3f}, \"gmacs_matmul\": {:.3f}, \"roofline_s\": {:.6f}, "
      "\"x_of_roofline\": {:.4f}",
      util::json_escape(config), o.train ? "train" : "inference", o.batch, o.height, o.width,
      o.bf16 ? "bf16" : "fp32", machine.threads, fmt::join(seconds, ", "), median(),
      images_per_second(), peak_rss_gib, page_faults_per_iteration, gmacs, gmacs_conv, gmacs_matmul,
      roofline_seconds, roofline_ratio());
  s += fmt::format(
      ", \"machine\": {{\"cpu\": \"{}\", \"features\": [{}], \"deform_kernel\": \"{}\", "
      "\"attention_kernel\": \"{}\", \"allocator\": \"{}\", "
      "\"matmul_fp32_gmacs\": {:.3f}, "
      "\"conv_fp32_gmacs\": {:.3f}, \"matmul_bf16_gmacs\": {:.3f}, \"conv_bf16_gmacs\": {:.3f}}}",
      util::json_escape(machine.cpu),
      [&] {
        std::string f;
        for (const auto& x : machine.features) f += (f.empty() ? "\"" : ", \"") + x + "\"";
        return f;
      }(),
      machine.deform_kernel, machine.attention_kernel, machine.allocator, machine.matmul_fp32 / 1e9,
      machine.conv_fp32 / 1e9, machine.matmul_bf16 / 1e9, machine.conv_bf16 / 1e9);
  std::string stages_json;
  for (const auto& name : stage_order) {
    stages_json += fmt::format("{}\"{}\": {:.6f}", stages_json.empty() ? "" : ", ",
                               util::json_escape(name), stages.at(name));
  }
  s += ", \"stages\": {" + stages_json + "}";
  std::string ops;
  for (const auto& op : operators) {
    ops +=
        fmt::format("{}{{\"name\": \"{}\", \"self_s\": {:.6f}, \"calls\": {}}}",
                    ops.empty() ? "" : ", ", util::json_escape(op.name), op.self_seconds, op.calls);
  }
  return s + ", \"operators\": [" + ops + "]}";
}

}  // namespace aligndetr::engine
