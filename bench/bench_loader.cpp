// Data loader throughput with the reference training transforms (flip, resize to 480-800 short
// edge / 1333, 50% resize-crop-resize) at 1 and 2 workers, next to plain JPEG decoding of the same
// images in the same run. The last lines print each loader's speed as a share of decoding speed.
//
//   ./build/bench/bench_loader [--benchmark_min_time=2]

#include <benchmark/benchmark.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>

#include <opencv2/core/utility.hpp>

#include "aligndetr/data/dataset.h"
#include "aligndetr/data/loader.h"
#include "aligndetr/engine/runtime.h"

namespace {

using namespace aligndetr;

std::shared_ptr<const data::CocoDetection> coco128() {
  static std::shared_ptr<const data::CocoDetection> ds = [] {
    data::DatasetOptions o;
    o.ann_file = std::string(ALIGNDETR_SHARED_DATA) + "/coco128/annotations/instances.json";
    o.images_dir = std::string(ALIGNDETR_SHARED_DATA) + "/coco128/images";
    return std::make_shared<const data::CocoDetection>(o);
  }();
  return ds;
}

void BM_DecodeOnly(benchmark::State& state) {
  const auto ds = coco128();
  int64_t images = 0;
  for (auto _ : state) {
    for (size_t i = 0; i < ds->size(); ++i) {
      const auto path =
          std::filesystem::path(ds->options().images_dir) / ds->image_info(i).file_name;
      benchmark::DoNotOptimize(data::read_image_rgb(path.string()).data);
      ++images;
    }
  }
  state.SetItemsProcessed(images);
}

void BM_Loader(benchmark::State& state) {
  const auto ds = coco128();
  data::LoaderOptions o;
  o.batch_size = 2;
  o.workers = static_cast<int>(state.range(0));
  data::DataLoader loader(ds, o);
  int64_t images = 0, epoch = 0;
  for (auto _ : state) {
    loader.start_epoch(epoch++);
    while (auto batch = loader.next()) {
      images += batch->images.size(0);
      benchmark::DoNotOptimize(batch->images.data_ptr());
    }
  }
  state.SetItemsProcessed(images);
}

BENCHMARK(BM_DecodeOnly)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Loader)
    ->Arg(1)
    ->Arg(2)
    ->ArgName("workers")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Keeps each run's images/s to print ratios after the table.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const auto& r : runs) {
      const auto it = r.counters.find("items_per_second");
      if (it != r.counters.end()) rates[r.benchmark_name()] = it->second.value;
    }
  }
  std::map<std::string, double> rates;
};

}  // namespace

int main(int argc, char** argv) {
  if (!std::filesystem::exists(std::string(ALIGNDETR_SHARED_DATA) + "/coco128")) {
    std::fprintf(stderr, "bench_loader: needs %s/coco128\n", ALIGNDETR_SHARED_DATA);
    return 1;
  }
  // Workers are the parallelism here: one thread for each image operation.
  engine::configure_runtime(1);
  cv::setNumThreads(1);
  benchmark::Initialize(&argc, argv);
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  const auto decode = reporter.rates.find("BM_DecodeOnly/real_time");
  if (decode != reporter.rates.end()) {
    for (const auto& [name, rate] : reporter.rates) {
      if (name.rfind("BM_Loader", 0) == 0) {
        std::printf("%s: %.1f images/s = %.2fx plain decoding (%.1f images/s)\n", name.c_str(),
                    rate, rate / decode->second, decode->second);
      }
    }
  }
  benchmark::Shutdown();
  return 0;
}
