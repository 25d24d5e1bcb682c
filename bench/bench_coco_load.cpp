// Reading a COCO train2017-sized instances file (448 MB: 118,287 images, 860,001 annotations
// with polygon segmentations) with the simdjson reader: time, throughput and peak memory.
// The file is generated once into the temp directory with the real file's structure.
//
//   ./build/bench/bench_coco_load [--benchmark_min_time=1]

#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include <fmt/format.h>

#include "aligndetr/coco/annotations.h"

namespace {

constexpr int kImages = 118287;
constexpr int kAnnotations = 860001;

std::string generate() {
  const auto path = std::filesystem::temp_directory_path() / "aligndetr-bench-train2017-like.json";
  if (std::filesystem::exists(path)) return path.string();
  const auto tmp = path.string() + ".tmp";
  std::ofstream out(tmp, std::ios::binary);
  std::mt19937 rng(0);
  std::uniform_real_distribution<double> coord(0, 640);
  out << R"({"info": {"description": "train2017-like"}, "licenses": [], "images": [)";
  for (int i = 0; i < kImages; ++i) {
    out << fmt::format(
        R"({}{{"license": 3, "file_name": "{:012d}.jpg", "coco_url": "http://images.cocodataset.org/train2017/{:012d}.jpg", "height": 480, "width": 640, "date_captured": "2013-11-14 11:18:45", "flickr_url": "http://farm4.staticflickr.com/3250/2950283850_9d49c0e50b_z.jpg", "id": {}}})",
        i ? ", " : "", i + 1, i + 1, i + 1);
  }
  out << R"(], "annotations": [)";
  for (int a = 0; a < kAnnotations; ++a) {
    std::string seg;
    for (int k = 0; k < 56; ++k) seg += fmt::format("{}{:.2f}", k ? ", " : "", coord(rng));
    out << fmt::format(
        R"({}{{"segmentation": [[{}]], "area": {:.5f}, "iscrowd": 0, "image_id": {}, "bbox": [{:.2f}, {:.2f}, {:.2f}, {:.2f}], "category_id": {}, "id": {}}})",
        a ? ", " : "", seg, coord(rng) * 20, a % kImages + 1, coord(rng), coord(rng) * 0.7,
        coord(rng) / 4, coord(rng) / 4, a % 80 + 1, a + 1);
  }
  out << R"(], "categories": [)";
  for (int c = 0; c < 80; ++c) {
    out << fmt::format(R"({}{{"supercategory": "thing", "id": {}, "name": "class{}"}})",
                       c ? ", " : "", c + 1, c);
  }
  out << "]}";
  out.close();
  std::filesystem::rename(tmp, path);
  return path.string();
}

long peak_rss_kb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

void BM_ReadTrain2017Sized(benchmark::State& state) {
  const std::string path = generate();
  const double mb = static_cast<double>(std::filesystem::file_size(path)) / (1 << 20);
  const long rss_before = peak_rss_kb();
  size_t annotations = 0;
  for (auto _ : state) {
    const auto ds = aligndetr::coco::read_coco(path);
    annotations = ds.annotations.size();
  }
  const double peak_mb = static_cast<double>(peak_rss_kb()) / 1024;
  state.counters["file_MB"] = mb;
  state.counters["MB_per_s"] =
      benchmark::Counter(mb * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["peak_RSS_MB"] = peak_mb;
  state.counters["peak_RSS_over_file"] = peak_mb / mb;
  state.counters["RSS_before_MB"] = static_cast<double>(rss_before) / 1024;
  state.counters["annotations"] = static_cast<double>(annotations);
}

BENCHMARK(BM_ReadTrain2017Sized)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
