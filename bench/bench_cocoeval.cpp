// COCO bbox evaluation on a COCO-val-sized case: the COCO128 ground truth tiled 40 times (5,120
// images, 37,560 boxes, segmentations kept so the file is as heavy as a real one) and 100
// deterministic detections per image (512,000), written as JSON like a detector writes them.
// Times loading, evaluate and accumulate separately, and the whole as `aligndetr cocoeval` runs it.
//
//   bench_cocoeval [--case_dir=DIR] [benchmark flags]
// With --case_dir the files are written there (if absent) and kept, for timing the CLI on them.

#include <benchmark/benchmark.h>
#include <simdjson.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <future>
#include <string>
#include <vector>

#include <unistd.h>

#include <fmt/format.h>

#include "aligndetr/coco/annotations.h"
#include "aligndetr/coco/results.h"
#include "aligndetr/eval/coco_eval.h"
#include "aligndetr/util/atomic_file.h"

namespace fs = std::filesystem;
using namespace aligndetr;

namespace {

constexpr int kTiles = 40;
constexpr int64_t kIdOffset = 1000000;  // tile t's ids are the original ids + t * kIdOffset
constexpr int kDetsPerImage = 100;

// splitmix64: a fixed generator, so the case is the same on every platform and library.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

// Detectors hold float32 values; Python's json writes each as the shortest text of its double.
double f32(double v) {
  return static_cast<double>(static_cast<float>(v));
}

struct CaseFiles {
  std::string gt, dt;
};

void write_case(const CaseFiles& files) {
  simdjson::dom::parser parser;
  const std::string src =
      (fs::path(ALIGNDETR_SHARED_DATA) / "coco128/annotations/instances.json").string();
  simdjson::dom::element root = parser.load(src);

  struct Box {
    double x, y, w, h;
    int64_t cat;
  };
  struct Image {
    int64_t id;
    double width, height;
    std::vector<Box> boxes;
  };
  std::vector<Image> images;
  std::vector<int64_t> cat_ids;
  for (simdjson::dom::object cat : root["categories"].get_array())
    cat_ids.push_back(int64_t(cat["id"]));
  for (simdjson::dom::object im : root["images"].get_array()) {
    images.push_back({int64_t(im["id"]), double(im["width"]), double(im["height"]), {}});
  }
  for (simdjson::dom::object ann : root["annotations"].get_array()) {
    const int64_t image_id = int64_t(ann["image_id"]);
    simdjson::dom::array bb = ann["bbox"];
    std::vector<double> b;
    for (double v : bb) b.push_back(v);
    for (auto& im : images) {
      if (im.id == image_id)
        im.boxes.push_back({b[0], b[1], b[2], b[3], int64_t(ann["category_id"])});
    }
  }

  // Ground truth: every record copied verbatim but for the ids.
  const auto copy_record = [](simdjson::dom::object obj, int64_t offset, std::string& out) {
    out += '{';
    bool first = true;
    for (auto [key, value] : obj) {
      if (!first) out += ", ";
      first = false;
      out += fmt::format("\"{}\": ", key);
      if (key == "id" || key == "image_id") {
        out += std::to_string(int64_t(value) + offset);
      } else {
        out += simdjson::minify(value);
      }
    }
    out += '}';
  };
  std::string gt = "{\"images\": [";
  for (int t = 0; t < kTiles; ++t) {
    for (simdjson::dom::object im : root["images"].get_array()) {
      if (gt.back() != '[') gt += ",\n";
      copy_record(im, t * kIdOffset, gt);
    }
  }
  gt += "],\n\"annotations\": [";
  for (int t = 0; t < kTiles; ++t) {
    for (simdjson::dom::object ann : root["annotations"].get_array()) {
      if (gt.back() != '[') gt += ",\n";
      copy_record(ann, t * kIdOffset, gt);
    }
  }
  gt += "],\n\"categories\": " + simdjson::minify(root["categories"].value()) + "}\n";
  util::write_file_atomic(files.gt, gt);

  // Detections: per image, 60 jittered copies of its GT boxes (a tenth with a wrong category)
  // and the rest random boxes of random categories with lower scores.
  std::string dt = "[";
  for (int t = 0; t < kTiles; ++t) {
    for (size_t i = 0; i < images.size(); ++i) {
      const Image& im = images[i];
      Rng rng(static_cast<uint64_t>(t) * 1000003u + i);
      for (int k = 0; k < kDetsPerImage; ++k) {
        double x, y, w, h, score;
        int64_t cat;
        if (!im.boxes.empty() && k < 60) {
          const Box& g = im.boxes[static_cast<size_t>(k) % im.boxes.size()];
          w = g.w * std::exp((rng.uniform() - 0.5) * 0.4);
          h = g.h * std::exp((rng.uniform() - 0.5) * 0.4);
          x = g.x + (rng.uniform() - 0.5) * 0.3 * g.w;
          y = g.y + (rng.uniform() - 0.5) * 0.3 * g.h;
          cat = rng.uniform() < 0.9 ? g.cat : cat_ids[rng.next() % cat_ids.size()];
          score = 0.3 + 0.7 * rng.uniform();
        } else {
          w = 4 + rng.uniform() * 0.5 * im.width;
          h = 4 + rng.uniform() * 0.5 * im.height;
          x = rng.uniform() * (im.width - w);
          y = rng.uniform() * (im.height - h);
          cat = cat_ids[rng.next() % cat_ids.size()];
          score = 0.6 * rng.uniform();
        }
        dt += fmt::format(
            "{}{{\"image_id\": {}, \"category_id\": {}, \"bbox\": [{}, {}, {}, {}], \"score\": "
            "{}}}",
            dt.size() > 1 ? ", " : "", im.id + t * kIdOffset, cat, f32(x), f32(y), f32(w), f32(h),
            f32(score));
      }
    }
  }
  dt += "]\n";
  util::write_file_atomic(files.dt, dt);
}

struct Case {
  CaseFiles files;
  coco::CocoDataset gt;
  std::vector<coco::Detection> dts;
};

fs::path g_case_dir;
bool g_keep_case = false;

Case& bench_case() {
  static Case c = [] {
    Case out;
    fs::create_directories(g_case_dir);
    out.files = {(g_case_dir / "instances_tiled40.json").string(),
                 (g_case_dir / "detections_tiled40.json").string()};
    if (!fs::exists(out.files.gt) || !fs::exists(out.files.dt)) write_case(out.files);
    out.gt = coco::read_coco(out.files.gt);
    out.dts = coco::read_coco_results(out.files.dt);
    std::fprintf(stderr, "case: %s (%zu images, %zu GT), %s (%zu detections)\n",
                 out.files.gt.c_str(), out.gt.images.size(), out.gt.annotations.size(),
                 out.files.dt.c_str(), out.dts.size());
    return out;
  }();
  return c;
}

void BM_LoadGroundTruth(benchmark::State& state) {
  const auto& c = bench_case();
  for (auto _ : state) benchmark::DoNotOptimize(coco::read_coco(c.files.gt));
}

void BM_LoadDetections(benchmark::State& state) {
  const auto& c = bench_case();
  const int threads = static_cast<int>(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(coco::read_coco_results(c.files.dt, threads));
}

void BM_Evaluate(benchmark::State& state) {
  const auto& c = bench_case();
  eval::CocoEvalOptions options;
  options.threads = static_cast<int>(state.range(0));
  for (auto _ : state) {
    eval::CocoEvaluator ev(c.gt, options);
    ev.evaluate(c.dts);
  }
}

void BM_Accumulate(benchmark::State& state) {
  const auto& c = bench_case();
  eval::CocoEvalOptions options;
  options.threads = static_cast<int>(state.range(0));
  eval::CocoEvaluator ev(c.gt, options);
  ev.evaluate(c.dts);
  double ap = 0;
  for (auto _ : state) ap = ev.accumulate().stats[0];
  state.counters["AP"] = ap;
}

// What `aligndetr cocoeval` does: both files read (side by side with two threads), then
// evaluate and accumulate.
void BM_EndToEnd(benchmark::State& state) {
  const auto& c = bench_case();
  eval::CocoEvalOptions options;
  options.threads = static_cast<int>(state.range(0));
  for (auto _ : state) {
    auto gt_future = std::async(options.threads == 1 ? std::launch::deferred : std::launch::async,
                                [&] { return coco::read_coco(c.files.gt); });
    const auto dts = coco::read_coco_results(c.files.dt, options.threads);
    const coco::CocoDataset gt = gt_future.get();
    eval::CocoEvaluator ev(gt, options);
    ev.evaluate(dts);
    benchmark::DoNotOptimize(ev.accumulate());
  }
}

BENCHMARK(BM_LoadGroundTruth)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LoadDetections)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Evaluate)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Accumulate)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_EndToEnd)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--case_dir=", 0) == 0) {
      g_case_dir = arg.substr(11);
      g_keep_case = true;
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (!g_keep_case) {
    g_case_dir = fs::temp_directory_path() / fmt::format("aligndetr-bench-cocoeval-{}", getpid());
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (!g_keep_case) fs::remove_all(g_case_dir);
  return 0;
}
