#include "aligndetr/analysis/alignment.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <fmt/format.h>
#include <torch/torch.h>

#include "aligndetr/boxes/boxes.h"
#include "aligndetr/util/error.h"
#include "aligndetr/vis/plot.h"

namespace aligndetr::analysis {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string json_number(double v) {
  return std::isfinite(v) ? fmt::format("{}", v) : "null";
}

std::string json_counts(const std::vector<int64_t>& counts, size_t begin, size_t end) {
  std::string out = "[";
  for (size_t i = begin; i < end; ++i) out += fmt::format("{}{}", i > begin ? ", " : "", counts[i]);
  return out + "]";
}

std::string json_counts(const std::vector<int64_t>& counts) {
  return json_counts(counts, 0, counts.size());
}

void check_bins(int64_t bins, const char* what) {
  if (bins < 1)
    throw util::InputError(fmt::format("alignment analysis: {} must be >= 1, got {}", what, bins));
}

}  // namespace

int64_t unit_bin(double v, int64_t bins) {
  if (!(v > 0)) return 0;  // also NaN
  return std::min(bins - 1, static_cast<int64_t>(v * static_cast<double>(bins)));
}

double pearson_correlation(const std::vector<float>& x, const std::vector<float>& y) {
  TORCH_CHECK(x.size() == y.size(), "pearson_correlation: ", x.size(), " vs ", y.size(), " values");
  const size_t n = x.size();
  // A constant variable has no correlation; testing it exactly avoids dividing rounding noise.
  const auto constant = [](const std::vector<float>& v) {
    return std::all_of(v.begin(), v.end(), [&](float e) { return e == v.front(); });
  };
  if (n < 2 || constant(x) || constant(y)) return kNaN;
  double mx = 0, my = 0;
  for (size_t i = 0; i < n; ++i) {
    mx += x[i];
    my += y[i];
  }
  mx /= static_cast<double>(n);
  my /= static_cast<double>(n);
  double sxx = 0, syy = 0, sxy = 0;
  for (size_t i = 0; i < n; ++i) {
    const double dx = x[i] - mx, dy = y[i] - my;
    sxx += dx * dx;
    syy += dy * dy;
    sxy += dx * dy;
  }
  return std::clamp(sxy / std::sqrt(sxx * syy), -1.0, 1.0);
}

AlignmentAccumulator::AlignmentAccumulator(AlignmentOptions options)
    : options_(std::move(options)) {
  check_bins(options_.histogram_bins, "histogram_bins");
  check_bins(options_.density_bins, "density_bins");
  br_histogram_.assign(static_cast<size_t>(options_.histogram_bins), 0);
  hc_histogram_.assign(static_cast<size_t>(options_.histogram_bins), 0);
}

void AlignmentAccumulator::add_image(const torch::Tensor& logits, const torch::Tensor& boxes,
                                     const torch::Tensor& gt_labels,
                                     const torch::Tensor& gt_boxes) {
  TORCH_CHECK(logits.dim() == 2 && boxes.dim() == 2,
              "AlignmentAccumulator::add_image: expected logits [Q,C] and boxes [Q,4], got ",
              logits.sizes(), " and ", boxes.sizes());
  add_batch(logits.unsqueeze(0), boxes.unsqueeze(0), {{gt_labels, gt_boxes}});
}

void AlignmentAccumulator::add_batch(const torch::Tensor& logits, const torch::Tensor& boxes,
                                     const std::vector<boxes::Target>& targets) {
  TORCH_CHECK(logits.dim() == 3 && boxes.dim() == 3 && boxes.size(2) == 4 &&
                  logits.size(0) == boxes.size(0) && logits.size(1) == boxes.size(1),
              "AlignmentAccumulator: expected logits [B,Q,C] and boxes [B,Q,4], got ",
              logits.sizes(), " and ", boxes.sizes());
  boxes::check_targets(targets, logits.size(0), logits.size(2), "alignment analysis");
  // Without queries no GT has a BR sample.
  TORCH_CHECK(logits.size(1) > 0, "AlignmentAccumulator: no queries");
  torch::NoGradGuard no_grad;
  // The per-sample work is scalar bookkeeping: do it on the CPU in one transfer.
  const auto cpu_logits = logits.detach().to(torch::kCPU, torch::kFloat);
  const auto cpu_boxes = boxes.detach().to(torch::kCPU, torch::kFloat);
  std::vector<boxes::Target> cpu_targets;
  cpu_targets.reserve(targets.size());
  for (const auto& t : targets) {
    boxes::Target c;
    c.labels = t.labels.detach().to(torch::kCPU, torch::kLong);
    c.boxes = t.boxes.detach().to(torch::kCPU, torch::kFloat).reshape({-1, 4});
    cpu_targets.push_back(std::move(c));
  }
  const auto matches = matching::match(cpu_logits, cpu_boxes, cpu_targets, 1, options_.costs);
  for (size_t b = 0; b < cpu_targets.size(); ++b) {
    ++images_;
    if (cpu_targets[b].labels.numel() == 0) {
      ++images_without_gt_;
      continue;
    }
    const auto i = static_cast<int64_t>(b);
    add_ranked(cpu_logits[i], cpu_boxes[i], cpu_targets[b]);
    add_matched(cpu_logits[i], cpu_boxes[i], cpu_targets[b], matches[b]);
  }
}

void AlignmentAccumulator::add_ranked(const torch::Tensor& logits, const torch::Tensor& boxes,
                                      const boxes::Target& target) {
  const int64_t queries = logits.size(0);
  const int64_t n = target.labels.numel();
  const auto confidence = std::get<0>(logits.sigmoid().max(1)).contiguous();
  const auto iou =
      boxes::pairwise_iou(boxes::cxcywh_to_xyxy(boxes), boxes::cxcywh_to_xyxy(target.boxes))
          .contiguous();
  const auto conf = confidence.accessor<float, 1>();
  const auto overlap = iou.accessor<float, 2>();

  // Queries by confidence, highest first; the stable sort keeps lower indices first among ties.
  std::vector<int64_t> order(static_cast<size_t>(queries));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return conf[a] > conf[b]; });
  std::vector<int64_t> rank(static_cast<size_t>(queries));
  for (int64_t r = 0; r < queries; ++r)
    rank[static_cast<size_t>(order[static_cast<size_t>(r)])] = r;

  const int64_t top_n = std::min(n, queries);
  const int64_t top_2n = std::min(2 * n, queries);
  const int64_t bins = options_.histogram_bins;
  for (int64_t j = 0; j < n; ++j) {
    int64_t best = 0;  // strict comparison: the lowest index wins ties
    for (int64_t q = 1; q < queries; ++q) {
      if (overlap[q][j] > overlap[best][j]) best = q;
    }
    const int64_t r = rank[static_cast<size_t>(best)];
    br_hits_top_n_ += r < top_n;
    br_hits_top_2n_ += r < top_2n;
    ++br_histogram_[static_cast<size_t>(unit_bin(overlap[best][j], bins))];
  }
  gt_ += n;
  for (int64_t r = 0; r < top_n; ++r) {
    const int64_t q = order[static_cast<size_t>(r)];
    float best = 0;
    for (int64_t j = 0; j < n; ++j) best = std::max(best, overlap[q][j]);
    ++hc_histogram_[static_cast<size_t>(unit_bin(best, bins))];
  }
}

void AlignmentAccumulator::add_matched(const torch::Tensor& logits, const torch::Tensor& boxes,
                                       const boxes::Target& target,
                                       const matching::ImageMatch& match) {
  if (match.query.numel() == 0) return;
  const auto q = match.query.to(torch::kCPU);
  const auto g = match.gt.to(torch::kCPU);
  const auto confidence =
      logits.index_select(0, q).gather(1, target.labels.index_select(0, g).unsqueeze(1)).sigmoid();
  const auto iou = boxes::aligned_iou(boxes::cxcywh_to_xyxy(boxes.index_select(0, q)),
                                      boxes::cxcywh_to_xyxy(target.boxes.index_select(0, g)));
  const auto c = confidence.reshape(-1).contiguous();
  const auto u = iou.contiguous();
  matched_confidence_.insert(matched_confidence_.end(), c.data_ptr<float>(),
                             c.data_ptr<float>() + c.numel());
  matched_iou_.insert(matched_iou_.end(), u.data_ptr<float>(), u.data_ptr<float>() + u.numel());
}

AlignmentReport AlignmentAccumulator::report() const {
  AlignmentReport r;
  r.images = images_;
  r.images_without_gt = images_without_gt_;
  r.gt = gt_;
  r.br_hits_top_n = br_hits_top_n_;
  r.br_hits_top_2n = br_hits_top_2n_;
  const double gt = static_cast<double>(gt_);
  r.br_recall_top_n = gt_ > 0 ? static_cast<double>(br_hits_top_n_) / gt : kNaN;
  r.br_recall_top_2n = gt_ > 0 ? static_cast<double>(br_hits_top_2n_) / gt : kNaN;
  r.br_iou_histogram = br_histogram_;
  r.hc_iou_histogram = hc_histogram_;
  r.matched = static_cast<int64_t>(matched_iou_.size());
  r.pearson = pearson_correlation(matched_confidence_, matched_iou_);

  const int64_t bins = options_.density_bins;
  r.density_bins = bins;
  if (options_.density_scale_confidence_to_max && !matched_confidence_.empty()) {
    const float top = *std::max_element(matched_confidence_.begin(), matched_confidence_.end());
    if (top > 0) r.density_confidence_scale = top;
  }
  r.density.assign(static_cast<size_t>(bins * bins), 0);
  for (size_t i = 0; i < matched_iou_.size(); ++i) {
    const int64_t row = unit_bin(matched_iou_[i], bins);
    const int64_t col = unit_bin(matched_confidence_[i] / r.density_confidence_scale, bins);
    ++r.density[static_cast<size_t>(row * bins + col)];
  }
  return r;
}

std::string AlignmentReport::to_json() const {
  std::string out = "{\n";
  out += fmt::format("  \"images\": {},\n  \"images_without_gt\": {},\n  \"gt\": {},\n", images,
                     images_without_gt, gt);
  out += fmt::format("  \"br_hits_top_n\": {},\n  \"br_hits_top_2n\": {},\n", br_hits_top_n,
                     br_hits_top_2n);
  out += fmt::format("  \"br_recall_top_n\": {},\n  \"br_recall_top_2n\": {},\n",
                     json_number(br_recall_top_n), json_number(br_recall_top_2n));
  out += fmt::format("  \"histogram_bins\": {},\n", br_iou_histogram.size());
  out += fmt::format("  \"br_iou_histogram\": {},\n", json_counts(br_iou_histogram));
  out += fmt::format("  \"hc_iou_histogram\": {},\n", json_counts(hc_iou_histogram));
  out += fmt::format("  \"matched\": {},\n  \"pearson\": {},\n", matched, json_number(pearson));
  out += fmt::format("  \"density_bins\": {},\n  \"density_confidence_scale\": {},\n", density_bins,
                     json_number(density_confidence_scale));
  out += "  \"density\": [";
  const auto bins = static_cast<size_t>(density_bins);
  for (size_t row = 0; row < bins; ++row) {
    out += fmt::format("{}\n    {}", row > 0 ? "," : "",
                       json_counts(density, row * bins, (row + 1) * bins));
  }
  out += bins > 0 ? "\n  ]\n}\n" : "]\n}\n";
  return out;
}

std::vector<std::filesystem::path> write_alignment_plots(const AlignmentReport& report,
                                                         const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  std::vector<std::filesystem::path> written;

  // Fig. 1b: both histograms as shares of their samples, so that they compare at a glance.
  const auto bins = report.br_iou_histogram.size();
  std::vector<std::string> categories;
  for (size_t i = 0; i < bins; ++i) {
    categories.push_back(fmt::format("{:.{}f}-{:.{}f}", static_cast<double>(i) / bins,
                                     bins > 10 ? 2 : 1, static_cast<double>(i + 1) / bins,
                                     bins > 10 ? 2 : 1));
  }
  const auto shares = [](const std::vector<int64_t>& counts) {
    int64_t total = 0;
    for (auto c : counts) total += c;
    std::vector<double> out;
    for (auto c : counts) out.push_back(total > 0 ? static_cast<double>(c) / total : 0.0);
    return out;
  };
  vis::PlotStyle hist_style{fmt::format("IoU of BR and HC samples ({} GT in {} images)", report.gt,
                                        report.images - report.images_without_gt),
                            "IoU with the ground truth", "frequency", 960, 600};
  written.push_back(dir / "iou_histogram.png");
  vis::write_png(
      written.back(),
      vis::render_bar_plot(categories,
                           {{fmt::format("BR samples (recall@N {:.3f}, @2N {:.3f})",
                                         report.br_recall_top_n, report.br_recall_top_2n),
                             shares(report.br_iou_histogram)},
                            {"HC samples (top-N confidence)", shares(report.hc_iou_histogram)}},
                           hist_style));

  // Fig. 4: x = confidence, y = IoU.
  std::vector<double> density(report.density.begin(), report.density.end());
  vis::HeatMapAxes axes;
  axes.value_label = "matched samples";
  vis::PlotStyle map_style{
      fmt::format("Confidence vs IoU of {} matched samples (Pearson {})", report.matched,
                  std::isfinite(report.pearson) ? fmt::format("{:.3f}", report.pearson)
                                                : std::string("undefined")),
      report.density_confidence_scale == 1.0 ? "confidence"
                                             : "confidence (scaled to a maximum of 1)",
      "IoU with the matched GT", 860, 760};
  written.push_back(dir / "confidence_iou_density.png");
  const int n = static_cast<int>(report.density_bins);
  vis::write_png(written.back(), vis::render_heat_map(density, n, n, axes, map_style));
  return written;
}

}  // namespace aligndetr::analysis
