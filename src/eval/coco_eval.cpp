#include "aligndetr/eval/coco_eval.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>

#include "aligndetr/util/error.h"
#include "aligndetr/util/json.h"

namespace aligndetr::eval {
namespace {

constexpr int T = kCocoIouThresholds;
constexpr int R = kCocoRecallThresholds;
constexpr int A = kCocoAreaRanges;
constexpr int M = kCocoMaxDetsCount;
constexpr int kMaxDet = kCocoMaxDets[M - 1];  // evaluate() keeps this many detections per cell
// np.spacing(1): pycocotools adds it to the precision's denominator.
constexpr double kEps = std::numeric_limits<double>::epsilon();
static_assert(T <= 16, "per-threshold results are kept in 16-bit masks");

// numpy's linspace: start + i * (stop - start) / (n - 1), with the last value set to stop.
template <size_t N>
std::array<double, N> linspace(double start, double stop) {
  std::array<double, N> y{};
  const double step = (stop - start) / static_cast<double>(N - 1);
  for (size_t i = 0; i < N; ++i) y[i] = static_cast<double>(i) * step + start;
  y[N - 1] = stop;
  return y;
}

// numpy's pairwise summation (what np.mean uses on a contiguous float64 array), so that the
// summary means round exactly as pycocotools' do.
double pairwise_sum(const double* a, size_t n) {
  if (n < 8) {
    double res = 0.0;
    for (size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (int j = 0; j < 8; ++j) r[j] += a[i + static_cast<size_t>(j)];
    }
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

// np.mean(s[s > -1]), or -1 when nothing is left.
double mean_of_valid(const std::vector<double>& values) {
  std::vector<double> kept;
  kept.reserve(values.size());
  for (double v : values) {
    if (v > -1) kept.push_back(v);
  }
  if (kept.empty()) return -1.0;
  return pairwise_sum(kept.data(), kept.size()) / static_cast<double>(kept.size());
}

// Dense index [0, n) of each id, in ascending id order: a direct table when the ids are compact
// (the usual case), a hash map otherwise.
class IdIndex {
 public:
  explicit IdIndex(const std::vector<int64_t>& sorted_ids) {
    if (sorted_ids.empty()) return;
    min_ = sorted_ids.front();
    const uint64_t span = static_cast<uint64_t>(sorted_ids.back()) - static_cast<uint64_t>(min_);
    if (span < 16 * static_cast<uint64_t>(sorted_ids.size()) + 65536) {
      table_.assign(static_cast<size_t>(span) + 1, -1);
      for (size_t i = 0; i < sorted_ids.size(); ++i) {
        table_[static_cast<size_t>(sorted_ids[i] - min_)] = static_cast<int32_t>(i);
      }
    } else {
      map_.reserve(sorted_ids.size());
      for (size_t i = 0; i < sorted_ids.size(); ++i) {
        map_.emplace(sorted_ids[i], static_cast<int32_t>(i));
      }
    }
  }
  int32_t find(int64_t id) const {
    if (!table_.empty()) {
      const uint64_t off = static_cast<uint64_t>(id) - static_cast<uint64_t>(min_);
      return off < table_.size() ? table_[static_cast<size_t>(off)] : -1;
    }
    const auto it = map_.find(id);
    return it == map_.end() ? -1 : it->second;
  }

 private:
  int64_t min_ = 0;
  std::vector<int32_t> table_;
  std::unordered_map<int64_t, int32_t> map_;
};

std::vector<int64_t> sorted_unique(std::vector<int64_t> ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

// Runs f(task, worker) for every task on up to `threads` threads, largest-first order being the
// caller's business. The first exception is rethrown on the calling thread.
template <class F>
void parallel_for(int threads, size_t tasks, F&& f) {
  const int workers = static_cast<int>(std::min<size_t>(static_cast<size_t>(threads), tasks));
  std::atomic<size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&](int worker) {
    try {
      for (size_t i; (i = next.fetch_add(1)) < tasks;) f(i, worker);
    } catch (...) {
      const std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      next = tasks;
    }
  };
  std::vector<std::thread> pool;
  for (int w = 1; w < workers; ++w) pool.emplace_back(work, w);
  work(0);
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

int resolve_threads(int requested) {
  if (requested > 0) return requested;
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

bool outside(double area, int a) {
  return area < kCocoAreaRangeBounds[static_cast<size_t>(a)][0] ||
         area > kCocoAreaRangeBounds[static_cast<size_t>(a)][1];
}

struct GtBox {
  double x, y, w, h;
  double area;  // the file's area, which decides the area range
  bool crowd;
  // pycocotools records a match as the GT's id and treats id 0 as "unmatched".
  bool id_nonzero;
};

struct DtBox {
  double x, y, w, h;
  double score;
};

// One (category, image) pair with GT or detections: ranges into the cell-ordered arrays.
struct Cell {
  int32_t cat;
  int32_t img;
  uint32_t gt_begin, gt_end;
  uint32_t dt_begin, dt_end;
};

// Per kept detection and area range: bit t set when it is a true positive / ignored at IoU
// threshold t. A detection that is neither is a false positive.
struct DetEval {
  std::array<uint16_t, A> tp;
  std::array<uint16_t, A> ig;
};

struct EvalScratch {
  std::vector<std::pair<double, uint32_t>> order;
  std::vector<DtBox> sorted;
  std::vector<double> iou;
  std::vector<uint32_t> cand_begin;
  std::vector<uint32_t> cand;
  std::vector<uint32_t> gt_order;
  std::vector<uint16_t> matched;
  std::vector<uint8_t> gt_ig;                // per area range, per GT
  std::vector<uint16_t> match_tp, match_ig;  // per area range, per detection
};

struct SortedDet {
  uint64_t key;  // sorts ascending as the score descends
  uint32_t pos;
  uint32_t rank;
};

// Radix key of a score >= 0: the bit pattern of a non-negative double orders as its value
// (-0.0 is folded into +0.0 first), complemented for descending order.
uint64_t descending_key(double score) {
  const double folded = score + 0.0;
  uint64_t bits;
  std::memcpy(&bits, &folded, sizeof bits);
  return ~bits;
}

// Stable LSD radix sort by key, one byte at a time, skipping the bytes all keys share (scores
// that come from float32 have 29 zero bits). Stability keeps equal scores in input order, which
// is what pycocotools' mergesort does.
void radix_sort(std::vector<SortedDet>& v, std::vector<SortedDet>& tmp) {
  const size_t n = v.size();
  if (n < 2) return;
  std::array<std::array<uint32_t, 256>, 8> hist{};
  for (const SortedDet& d : v) {
    for (int b = 0; b < 8; ++b) ++hist[static_cast<size_t>(b)][(d.key >> (8 * b)) & 0xff];
  }
  tmp.resize(n);
  for (int b = 0; b < 8; ++b) {
    auto& h = hist[static_cast<size_t>(b)];
    if (h[(v[0].key >> (8 * b)) & 0xff] == n) continue;
    uint32_t sum = 0;
    for (auto& c : h) {
      const uint32_t count = c;
      c = sum;
      sum += count;
    }
    for (const SortedDet& d : v) tmp[h[(d.key >> (8 * b)) & 0xff]++] = d;
    v.swap(tmp);
  }
}

struct AccumulateScratch {
  std::vector<SortedDet> dets, sort_buffer;
  std::array<std::vector<DetEval>, M> evals;
  std::array<std::vector<double>, T> tp_precision;  // precision at each true positive
};

}  // namespace

const std::array<double, kCocoIouThresholds>& coco_iou_thresholds() {
  static const auto thresholds = linspace<kCocoIouThresholds>(0.5, 0.95);
  return thresholds;
}

const std::array<double, kCocoRecallThresholds>& coco_recall_thresholds() {
  static const auto thresholds = linspace<kCocoRecallThresholds>(0.0, 1.0);
  return thresholds;
}

struct CocoEvaluator::Impl {
  CocoEvalOptions options;
  int threads = 1;
  std::vector<int64_t> image_ids;
  std::vector<int64_t> category_ids;
  std::vector<std::string> category_names;
  IdIndex images{{}};
  IdIndex categories{{}};

  std::vector<GtBox> gts;                      // ordered by (category, image), file order within
  std::vector<Cell> gt_cells;                  // the GT's cells, dt ranges empty
  std::vector<std::array<int64_t, A>> num_gt;  // per category: non-ignored GT per area range

  std::vector<DtBox> dts;           // ordered by cell, then by descending score (stable)
  std::vector<Cell> cells;          // every non-empty cell, ordered by (category, image)
  std::vector<uint32_t> cat_cells;  // cells of category k: [cat_cells[k], cat_cells[k + 1])
  std::vector<DetEval> evals;       // parallel to dts
  bool evaluated = false;

  void evaluate_cell(const Cell& cell, EvalScratch& s);
  static void match_cell(const GtBox* gt, uint32_t ng, uint32_t nd, const uint8_t* gt_ig,
                         EvalScratch& s, uint16_t* tp_out, uint16_t* ig_out);
  void accumulate_category(int k, AccumulateScratch& s, CocoEvalResult& out) const;
};

CocoEvaluator::CocoEvaluator(const coco::CocoDataset& gt, CocoEvalOptions options)
    : impl_(std::make_unique<Impl>()) {
  Impl& d = *impl_;
  d.options = std::move(options);
  d.threads = resolve_threads(d.options.threads);

  std::vector<int64_t> ids;
  ids.reserve(gt.images.size());
  for (const auto& im : gt.images) ids.push_back(im.id);
  d.image_ids = sorted_unique(std::move(ids));
  ids.clear();
  for (const auto& c : gt.categories) ids.push_back(c.id);
  d.category_ids = sorted_unique(std::move(ids));
  d.images = IdIndex(d.image_ids);
  d.categories = IdIndex(d.category_ids);
  // The first record of an id names it.
  d.category_names.assign(d.category_ids.size(), std::string());
  std::vector<bool> named(d.category_ids.size(), false);
  for (const auto& c : gt.categories) {
    const auto k = static_cast<size_t>(d.categories.find(c.id));
    if (!named[k]) d.category_names[k] = c.name.empty() ? std::to_string(c.id) : c.name;
    named[k] = true;
  }

  // GT on images or categories the file does not list are not evaluated (as getAnnIds filters).
  struct Keyed {
    int32_t cat, img;
    uint32_t index;
  };
  std::vector<Keyed> keyed;
  keyed.reserve(gt.annotations.size());
  for (size_t i = 0; i < gt.annotations.size(); ++i) {
    const auto& ann = gt.annotations[i];
    const int32_t img = d.images.find(ann.image_id);
    const int32_t cat = d.categories.find(ann.category_id);
    if (img >= 0 && cat >= 0) keyed.push_back({cat, img, static_cast<uint32_t>(i)});
  }
  std::stable_sort(keyed.begin(), keyed.end(), [](const Keyed& a, const Keyed& b) {
    return a.cat != b.cat ? a.cat < b.cat : a.img < b.img;
  });
  d.num_gt.assign(d.category_ids.size(), {});
  d.gts.reserve(keyed.size());
  for (const auto& key : keyed) {
    const auto& ann = gt.annotations[key.index];
    const uint32_t pos = static_cast<uint32_t>(d.gts.size());
    if (d.gt_cells.empty() || d.gt_cells.back().cat != key.cat ||
        d.gt_cells.back().img != key.img) {
      d.gt_cells.push_back({key.cat, key.img, pos, pos, 0, 0});
    }
    d.gt_cells.back().gt_end = pos + 1;
    d.gts.push_back(
        {ann.bbox[0], ann.bbox[1], ann.bbox[2], ann.bbox[3], ann.area, ann.iscrowd, ann.id != 0});
    for (int a = 0; a < A; ++a) {
      if (!ann.iscrowd && !outside(ann.area, a)) ++d.num_gt[static_cast<size_t>(key.cat)][a];
    }
  }
}

CocoEvaluator::~CocoEvaluator() = default;

void CocoEvaluator::evaluate(const std::vector<coco::Detection>& detections) {
  Impl& d = *impl_;
  const std::string& source = d.options.detections_source;
  if (detections.empty()) {
    throw util::InputError(fmt::format("{}: no detections to evaluate", source));
  }
  if (detections.size() >= std::numeric_limits<uint32_t>::max()) {
    throw util::InputError(fmt::format("{}: too many detections ({})", source, detections.size()));
  }
  const size_t n = detections.size();
  const size_t num_images = d.image_ids.size();
  const size_t num_cats = d.category_ids.size();

  // Validate and group by (category, image) with two stable counting sorts (image, then
  // category), so each cell keeps the detections in input order as pycocotools does.
  std::vector<int32_t> img_of(n), cat_of(n);
  std::vector<uint32_t> count(std::max(num_images, num_cats) + 1, 0);
  for (size_t i = 0; i < n; ++i) {
    const coco::Detection& det = detections[i];
    const auto where = [&] {
      return fmt::format("{}: detection {} (image_id {}, category_id {})", source, i, det.image_id,
                         det.category_id);
    };
    const int32_t img = d.images.find(det.image_id);
    if (img < 0) {
      throw util::InputError(
          fmt::format("{}: image_id {} is not in the ground truth", where(), det.image_id));
    }
    const int32_t cat = d.categories.find(det.category_id);
    if (cat < 0) {
      throw util::InputError(
          fmt::format("{}: category_id {} is not in the ground truth", where(), det.category_id));
    }
    const auto& b = det.bbox;
    if (!std::isfinite(b[0]) || !std::isfinite(b[1])) {
      throw util::InputError(fmt::format("{}: bbox position is not finite", where()));
    }
    if (!(b[2] >= 0.0) || !(b[3] >= 0.0) || std::isinf(b[2]) || std::isinf(b[3])) {
      throw util::InputError(
          fmt::format("{}: bbox size {} x {} is negative or not finite", where(), b[2], b[3]));
    }
    if (!(det.score >= 0.0) || std::isinf(det.score)) {
      throw util::InputError(
          fmt::format("{}: score {} is negative or not finite", where(), det.score));
    }
    img_of[i] = img;
    cat_of[i] = cat;
    ++count[static_cast<size_t>(img) + 1];
  }
  for (size_t i = 1; i <= num_images; ++i) count[i] += count[i - 1];
  std::vector<uint32_t> by_image(n);
  for (size_t i = 0; i < n; ++i)
    by_image[count[static_cast<size_t>(img_of[i])]++] = static_cast<uint32_t>(i);

  std::fill(count.begin(), count.end(), 0);
  for (size_t i = 0; i < n; ++i) ++count[static_cast<size_t>(cat_of[i]) + 1];
  for (size_t i = 1; i <= num_cats; ++i) count[i] += count[i - 1];
  d.dts.resize(n);
  std::vector<int32_t> dt_img(n);
  for (uint32_t src : by_image) {
    const uint32_t pos = count[static_cast<size_t>(cat_of[src])]++;
    const coco::Detection& det = detections[src];
    d.dts[pos] = {det.bbox[0], det.bbox[1], det.bbox[2], det.bbox[3], det.score};
    dt_img[pos] = img_of[src];
  }
  // count[k] is now the end of category k's block.

  // Cells: the union of the GT's and the detections' (category, image) pairs, in order.
  d.cells.clear();
  d.cat_cells.assign(num_cats + 1, 0);
  size_t g = 0;
  uint32_t pos = 0;
  for (size_t k = 0; k < num_cats; ++k) {
    d.cat_cells[k] = static_cast<uint32_t>(d.cells.size());
    const uint32_t end = count[k];
    while (pos < end || (g < d.gt_cells.size() && d.gt_cells[g].cat == static_cast<int32_t>(k))) {
      const bool has_gt = g < d.gt_cells.size() && d.gt_cells[g].cat == static_cast<int32_t>(k);
      const int32_t dimg = pos < end ? dt_img[pos] : std::numeric_limits<int32_t>::max();
      const int32_t gimg = has_gt ? d.gt_cells[g].img : std::numeric_limits<int32_t>::max();
      const int32_t img = std::min(dimg, gimg);
      Cell cell{static_cast<int32_t>(k), img, 0, 0, pos, pos};
      if (gimg == img) {
        cell.gt_begin = d.gt_cells[g].gt_begin;
        cell.gt_end = d.gt_cells[g].gt_end;
        ++g;
      }
      while (pos < end && dt_img[pos] == img) ++pos;
      cell.dt_end = pos;
      d.cells.push_back(cell);
    }
  }
  d.cat_cells[num_cats] = static_cast<uint32_t>(d.cells.size());

  d.evals.assign(n, DetEval{});
  constexpr size_t kCellsPerTask = 256;
  const size_t tasks = (d.cells.size() + kCellsPerTask - 1) / kCellsPerTask;
  std::vector<EvalScratch> scratch(static_cast<size_t>(d.threads));
  parallel_for(d.threads, tasks, [&](size_t task, int worker) {
    const size_t end = std::min(d.cells.size(), (task + 1) * kCellsPerTask);
    for (size_t c = task * kCellsPerTask; c < end; ++c) {
      d.evaluate_cell(d.cells[c], scratch[static_cast<size_t>(worker)]);
    }
  });
  d.evaluated = true;
}

// pycocotools' computeIoU + evaluateImg for one (category, image) pair and all area ranges.
void CocoEvaluator::Impl::evaluate_cell(const Cell& cell, EvalScratch& s) {
  const uint32_t num_dt = cell.dt_end - cell.dt_begin;
  if (num_dt == 0) return;  // GT alone only counts towards recall's denominator
  DtBox* dt = dts.data() + cell.dt_begin;

  // Descending score, stable (np.argsort(-scores, kind='mergesort')). Most cells hold a single
  // detection, or detections already in order.
  const auto before = [](const DtBox& x, const DtBox& y) { return x.score > y.score; };
  if (!std::is_sorted(dt, dt + num_dt, before)) {
    s.order.resize(num_dt);
    for (uint32_t i = 0; i < num_dt; ++i) s.order[i] = {dt[i].score, i};
    std::sort(s.order.begin(), s.order.end(), [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    s.sorted.resize(num_dt);
    for (uint32_t i = 0; i < num_dt; ++i) s.sorted[i] = dt[s.order[i].second];
    std::copy(s.sorted.begin(), s.sorted.end(), dt);
  }

  const uint32_t nd = std::min<uint32_t>(num_dt, kMaxDet);
  DetEval* out = evals.data() + cell.dt_begin;
  const uint32_t ng = cell.gt_end - cell.gt_begin;
  const GtBox* gt = gts.data() + cell.gt_begin;
  constexpr uint16_t kAll = static_cast<uint16_t>((1u << T) - 1);

  // IoU as maskApi's bbIou: a crowd region's union is the detection's own area.
  s.iou.resize(static_cast<size_t>(nd) * ng);
  bool any_candidate = false;
  const auto& thr = coco_iou_thresholds();
  const double min_iou = std::min(thr[0], 1 - 1e-10);
  for (uint32_t j = 0; j < ng; ++j) {
    const GtBox& g = gt[j];
    const double ga = g.w * g.h;
    for (uint32_t i = 0; i < nd; ++i) {
      const DtBox& b = dt[i];
      const double da = b.w * b.h;
      double v = 0.0;
      const double w = std::min(b.w + b.x, g.w + g.x) - std::max(b.x, g.x);
      if (w > 0) {
        const double h = std::min(b.h + b.y, g.h + g.y) - std::max(b.y, g.y);
        if (h > 0) {
          const double inter = w * h;
          const double uni = g.crowd ? da : da + ga - inter;
          v = inter / uni;
        }
      }
      s.iou[static_cast<size_t>(i) * ng + j] = v;
      any_candidate |= v >= min_iou;
    }
  }

  for (int a = 0; a < A; ++a) {
    for (uint32_t i = 0; i < nd; ++i) {
      out[i].tp[a] = 0;
      out[i].ig[a] = outside(dt[i].w * dt[i].h, a) ? kAll : 0;
    }
  }
  if (!any_candidate) return;

  s.gt_ig.resize(static_cast<size_t>(A) * ng);
  s.gt_order.resize(ng);
  s.matched.resize(ng);
  s.cand_begin.resize(nd + 1);
  s.match_tp.resize(static_cast<size_t>(A) * nd);
  s.match_ig.resize(static_cast<size_t>(A) * nd);
  for (int a = 0; a < A; ++a) {
    uint8_t* gt_ig = s.gt_ig.data() + static_cast<size_t>(a) * ng;
    for (uint32_t j = 0; j < ng; ++j) gt_ig[j] = gt[j].crowd || outside(gt[j].area, a);
    // The matches depend on the area range only through the GT's ignore flags, and these are
    // often the same for several ranges (all GT of the cell in one range, or in none).
    int source = a;
    for (int b = 0; b < a && source == a; ++b) {
      if (std::equal(gt_ig, gt_ig + ng, s.gt_ig.data() + static_cast<size_t>(b) * ng)) source = b;
    }
    uint16_t* match_tp = s.match_tp.data() + static_cast<size_t>(source) * nd;
    uint16_t* match_ig = s.match_ig.data() + static_cast<size_t>(source) * nd;
    if (source == a) match_cell(gt, ng, nd, gt_ig, s, match_tp, match_ig);
    // Unmatched detections, and those matched to a GT with id 0 (pycocotools cannot tell them
    // apart), are ignored when outside the area range.
    for (uint32_t i = 0; i < nd; ++i) {
      const uint16_t unmatched = static_cast<uint16_t>(~(match_tp[i] | match_ig[i]) & kAll);
      out[i].tp[a] = match_tp[i];
      out[i].ig[a] = match_ig[i] | (outside(dt[i].w * dt[i].h, a) ? unmatched : 0);
    }
  }
}

// pycocotools' greedy matching of one cell for one set of GT ignore flags: per detection, bit t
// of `tp` when it is matched at threshold t to a GT that counts (with a non-zero id), of `ig`
// when matched to an ignored GT.
void CocoEvaluator::Impl::match_cell(const GtBox* gt, uint32_t ng, uint32_t nd,
                                     const uint8_t* gt_ig, EvalScratch& s, uint16_t* tp_out,
                                     uint16_t* ig_out) {
  const auto& thr = coco_iou_thresholds();
  const double min_iou = std::min(thr[0], 1 - 1e-10);
  // GT sorted with the ignored ones last (stable).
  uint32_t n_order = 0;
  for (uint32_t j = 0; j < ng; ++j) {
    if (!gt_ig[j]) s.gt_order[n_order++] = j;
  }
  for (uint32_t j = 0; j < ng; ++j) {
    if (gt_ig[j]) s.gt_order[n_order++] = j;
  }
  // A GT below the lowest threshold can never be a detection's match, and skipping it cannot
  // change where the scan stops (all GT after the first ignored one are ignored too).
  s.cand.clear();
  for (uint32_t i = 0; i < nd; ++i) {
    s.cand_begin[i] = static_cast<uint32_t>(s.cand.size());
    const double* row = s.iou.data() + static_cast<size_t>(i) * ng;
    for (uint32_t o = 0; o < ng; ++o) {
      if (row[s.gt_order[o]] >= min_iou) s.cand.push_back(s.gt_order[o]);
    }
  }
  s.cand_begin[nd] = static_cast<uint32_t>(s.cand.size());
  std::fill(s.matched.begin(), s.matched.end(), 0);

  // Greedy matching in score order; every threshold has its own matches (bit t of matched).
  for (uint32_t i = 0; i < nd; ++i) {
    uint16_t tp = 0, ig = 0;
    const double* row = s.iou.data() + static_cast<size_t>(i) * ng;
    for (int t = 0; t < T && s.cand_begin[i] != s.cand_begin[i + 1]; ++t) {
      const uint16_t bit = static_cast<uint16_t>(1u << t);
      double best = std::min(thr[static_cast<size_t>(t)], 1 - 1e-10);
      int m = -1;
      for (uint32_t c = s.cand_begin[i]; c < s.cand_begin[i + 1]; ++c) {
        const uint32_t j = s.cand[c];
        if ((s.matched[j] & bit) && !gt[j].crowd) continue;
        if (m >= 0 && !gt_ig[m] && gt_ig[j]) break;
        if (row[j] < best) continue;
        best = row[j];
        m = static_cast<int>(j);
      }
      if (m < 0) continue;
      s.matched[static_cast<size_t>(m)] |= bit;
      if (gt_ig[m]) {
        ig |= bit;
      } else if (gt[m].id_nonzero) {
        tp |= bit;
      }
    }
    tp_out[i] = tp;
    ig_out[i] = ig;
  }
}

// pycocotools' accumulate() for one category: every area range, maxDets and IoU threshold.
void CocoEvaluator::Impl::accumulate_category(int k, AccumulateScratch& s,
                                              CocoEvalResult& out) const {
  const size_t K = category_ids.size();
  const auto& rec_thr = coco_recall_thresholds();
  // Images in ascending id order, each with its detections by descending score: the order in
  // which pycocotools concatenates them before its stable sort.
  s.dets.clear();
  for (uint32_t c = cat_cells[static_cast<size_t>(k)]; c < cat_cells[static_cast<size_t>(k) + 1];
       ++c) {
    const Cell& cell = cells[c];
    const uint32_t end = std::min<uint32_t>(cell.dt_end, cell.dt_begin + kMaxDet);
    for (uint32_t p = cell.dt_begin; p < end; ++p) {
      s.dets.push_back({descending_key(dts[p].score), p, p - cell.dt_begin});
    }
  }
  radix_sort(s.dets, s.sort_buffer);
  // The stable order of a subsequence is the subsequence of the stable order, so the lists for
  // maxDets 1 and 10 are filtered from the one sort.
  for (int m = 0; m < M; ++m) {
    auto& list = s.evals[static_cast<size_t>(m)];
    list.clear();
    const uint32_t max_det = static_cast<uint32_t>(kCocoMaxDets[static_cast<size_t>(m)]);
    for (const SortedDet& sd : s.dets) {
      if (sd.rank < max_det) list.push_back(evals[sd.pos]);
    }
  }

  const auto at = [K](int t, int r, int a, int m, int kk) {
    return (
        (((static_cast<size_t>(t) * R + static_cast<size_t>(r)) * K + static_cast<size_t>(kk)) * A +
         static_cast<size_t>(a)) *
            M +
        static_cast<size_t>(m));
  };
  // pycocotools builds, per threshold, the cumulative tp and fp counts at every detection, the
  // precision tp / (fp + tp + eps) there, makes it non-increasing from the right, and samples it
  // at the first detection reaching each recall threshold. Recall only grows at a true positive,
  // and between two true positives the precision only falls, so the first detection reaching a
  // recall is a true positive and the maximum over a suffix is reached at one: the same numbers
  // come from the precision at the true positives alone, computed with the same operations.
  for (int a = 0; a < A; ++a) {
    const int64_t npig = num_gt[static_cast<size_t>(k)][a];
    if (npig == 0) continue;  // stays -1
    const double denom = static_cast<double>(npig);
    for (int m = 0; m < M; ++m) {
      const auto& list = s.evals[static_cast<size_t>(m)];
      const size_t nd = list.size();
      std::array<uint32_t, T> tp{}, fp{};
      for (auto& ev : s.tp_precision) ev.clear();
      for (size_t i = 0; i < nd; ++i) {
        uint32_t tp_bits = list[i].tp[a];
        const uint32_t fp_bits = ~(tp_bits | list[i].ig[a]);
        for (int t = 0; t < T; ++t) fp[static_cast<size_t>(t)] += (fp_bits >> t) & 1u;
        while (tp_bits) {
          const size_t t = static_cast<size_t>(__builtin_ctz(tp_bits));
          tp_bits &= tp_bits - 1;
          const double n_tp = static_cast<double>(++tp[t]);
          s.tp_precision[t].push_back(n_tp / (static_cast<double>(fp[t]) + n_tp + kEps));
        }
      }
      for (int t = 0; t < T; ++t) {
        auto& ev = s.tp_precision[static_cast<size_t>(t)];
        const size_t ri =
            (static_cast<size_t>(t) * K + static_cast<size_t>(k)) * A + static_cast<size_t>(a);
        out.recall[ri * M + static_cast<size_t>(m)] =
            nd ? static_cast<double>(tp[static_cast<size_t>(t)]) / denom : 0.0;
        for (size_t e = ev.size(); e-- > 1;) {
          if (ev[e] > ev[e - 1]) ev[e - 1] = ev[e];
        }
        // np.searchsorted(rc, recThrs, side='left'); past the end pycocotools leaves 0. The
        // e-th true positive (from 0) has recall (e + 1) / npig.
        size_t e = 0;
        for (int r = 0; r < R; ++r) {
          while (e < ev.size() &&
                 static_cast<double>(e + 1) / denom < rec_thr[static_cast<size_t>(r)]) {
            ++e;
          }
          out.precision[at(t, r, a, m, k)] = e < ev.size() ? ev[e] : 0.0;
        }
      }
    }
  }
}

CocoEvalResult CocoEvaluator::accumulate() const {
  const Impl& d = *impl_;
  if (!d.evaluated) throw std::logic_error("CocoEvaluator::accumulate() before evaluate()");
  CocoEvalResult res;
  res.category_ids = d.category_ids;
  res.category_names = d.category_names;
  for (const auto& counts : d.num_gt) res.category_gt.push_back(counts[0]);
  const size_t K = d.category_ids.size();
  res.precision.assign(static_cast<size_t>(T) * R * K * A * M, -1.0);
  res.recall.assign(static_cast<size_t>(T) * K * A * M, -1.0);

  // Largest categories first, so that the last ones to finish are short.
  std::vector<int> order(K);
  for (size_t k = 0; k < K; ++k) order[k] = static_cast<int>(k);
  const auto size_of = [&](int k) {
    const uint32_t first = d.cat_cells[static_cast<size_t>(k)];
    const uint32_t last = d.cat_cells[static_cast<size_t>(k) + 1];
    return first == last ? 0u : d.cells[last - 1].dt_end - d.cells[first].dt_begin;
  };
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return size_of(a) > size_of(b); });
  std::vector<AccumulateScratch> scratch(static_cast<size_t>(d.threads));
  parallel_for(d.threads, K, [&](size_t task, int worker) {
    d.accumulate_category(order[task], scratch[static_cast<size_t>(worker)], res);
  });

  // summarize(): the means pycocotools takes over its arrays, in their C order.
  const auto& thr = coco_iou_thresholds();
  const auto ap = [&](double iou, int a, int m) {
    std::vector<double> v;
    for (int t = 0; t < T; ++t) {
      if (iou >= 0 && thr[static_cast<size_t>(t)] != iou) continue;
      for (int r = 0; r < R; ++r) {
        for (size_t k = 0; k < K; ++k)
          v.push_back(res.precision_at(t, r, static_cast<int>(k), a, m));
      }
    }
    return mean_of_valid(v);
  };
  const auto ar = [&](int a, int m) {
    std::vector<double> v;
    for (int t = 0; t < T; ++t) {
      for (size_t k = 0; k < K; ++k) v.push_back(res.recall_at(t, static_cast<int>(k), a, m));
    }
    return mean_of_valid(v);
  };
  res.stats = {ap(-1, 0, 2), ap(0.5, 0, 2), ap(0.75, 0, 2), ap(-1, 1, 2),
               ap(-1, 2, 2), ap(-1, 3, 2),  ar(0, 0),       ar(0, 1),
               ar(0, 2),     ar(1, 2),      ar(2, 2),       ar(3, 2)};
  return res;
}

double CocoEvalResult::precision_at(int t, int r, int k, int a, int m) const {
  const size_t K = category_ids.size();
  return precision
      [(((static_cast<size_t>(t) * R + static_cast<size_t>(r)) * K + static_cast<size_t>(k)) * A +
        static_cast<size_t>(a)) *
           M +
       static_cast<size_t>(m)];
}

double CocoEvalResult::recall_at(int t, int k, int a, int m) const {
  const size_t K = category_ids.size();
  return recall[((static_cast<size_t>(t) * K + static_cast<size_t>(k)) * A +
                 static_cast<size_t>(a)) *
                    M +
                static_cast<size_t>(m)];
}

std::array<double, 6> CocoEvalResult::category_ap(int k) const {
  const auto& thr = coco_iou_thresholds();
  const auto mean = [&](double iou, int a) {
    std::vector<double> v;
    for (int t = 0; t < T; ++t) {
      if (iou >= 0 && thr[static_cast<size_t>(t)] != iou) continue;
      for (int r = 0; r < R; ++r) v.push_back(precision_at(t, r, k, a, M - 1));
    }
    return mean_of_valid(v);
  };
  return {mean(-1, 0), mean(0.5, 0), mean(0.75, 0), mean(-1, 1), mean(-1, 2), mean(-1, 3)};
}

std::string CocoEvalResult::summary() const {
  const auto& thr = coco_iou_thresholds();
  struct Line {
    bool ap;
    double iou;
    int area;
    int max_dets;
  };
  const std::array<Line, kCocoStats> lines = {{{true, -1, 0, 100},
                                               {true, 0.5, 0, 100},
                                               {true, 0.75, 0, 100},
                                               {true, -1, 1, 100},
                                               {true, -1, 2, 100},
                                               {true, -1, 3, 100},
                                               {false, -1, 0, 1},
                                               {false, -1, 0, 10},
                                               {false, -1, 0, 100},
                                               {false, -1, 1, 100},
                                               {false, -1, 2, 100},
                                               {false, -1, 3, 100}}};
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    const Line& l = lines[i];
    const std::string iou = l.iou < 0 ? fmt::format("{:0.2f}:{:0.2f}", thr.front(), thr.back())
                                      : fmt::format("{:0.2f}", l.iou);
    out += fmt::format(" {:<18} {} @[ IoU={:<9} | area={:>6} | maxDets={:>3} ] = {:0.3f}\n",
                       l.ap ? "Average Precision" : "Average Recall", l.ap ? "(AP)" : "(AR)", iou,
                       kCocoAreaRangeNames[static_cast<size_t>(l.area)], l.max_dets, stats[i]);
  }
  return out;
}

std::string CocoEvalResult::stats_json() const {
  std::string out = "{";
  for (size_t i = 0; i < stats.size(); ++i) {
    out += fmt::format("{}\"{}\": {}", i ? ", " : "", kCocoStatNames[i],
                       fmt::format("{:.17g}", stats[i]));
  }
  return out + "}";
}

std::string CocoEvalResult::per_category_table() const {
  size_t width = 8;
  for (const auto& name : category_names) width = std::max(width, name.size());
  std::string out = fmt::format("{:<{}}  {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7}\n", "category",
                                width, "AP", "AP50", "AP75", "APs", "APm", "APl", "GT");
  for (int k = 0; k < num_categories(); ++k) {
    const auto v = category_ap(k);
    out += fmt::format("{:<{}} ", category_names[static_cast<size_t>(k)], width);
    for (double x : v) out += x < 0 ? fmt::format(" {:>6}", "-") : fmt::format(" {:6.3f}", x);
    if (static_cast<size_t>(k) < category_gt.size()) {
      out += fmt::format(" {:>7}", category_gt[static_cast<size_t>(k)]);
    }
    out += '\n';
  }
  return out;
}

std::string CocoEvalResult::per_category_json() const {
  std::string out = "{";
  for (int k = 0; k < num_categories(); ++k) {
    const auto v = category_ap(k);
    const auto escaped = util::json_escape(category_names[static_cast<size_t>(k)]);
    out +=
        fmt::format("{}\"{}\": {{\"AP\": {:.6f}, \"AP50\": {:.6f}, \"AP75\": {:.6f}, \"gt\": {}}}",
                    k ? ", " : "", escaped, v[0], v[1], v[2],
                    static_cast<size_t>(k) < category_gt.size() ? category_gt[size_t(k)] : 0);
  }
  return out + "}";
}

CocoEvalResult evaluate_coco(const coco::CocoDataset& gt,
                             const std::vector<coco::Detection>& detections,
                             const CocoEvalOptions& options) {
  CocoEvaluator evaluator(gt, options);
  evaluator.evaluate(detections);
  return evaluator.accumulate();
}

}  // namespace aligndetr::eval
