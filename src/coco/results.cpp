#include "aligndetr/coco/results.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <future>
#include <optional>
#include <thread>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <simdjson.h>

#include "aligndetr/util/atomic_file.h"
#include "aligndetr/util/error.h"
#include "aligndetr/util/json.h"

namespace aligndetr::coco {

namespace od = simdjson::ondemand;

namespace {

// Ids are integers, but some writers emit them as 12.0.
int64_t get_id(od::value v) {
  int64_t id = 0;
  if (v.get_int64().get(id) == simdjson::SUCCESS) return id;
  const double d = v.get_double();
  if (std::floor(d) != d || std::fabs(d) > 9.007199254740992e15) {
    throw util::InputError(fmt::format("id {} is not an integer", d));
  }
  return static_cast<int64_t>(d);
}

enum Field : unsigned { kImage = 1, kCategory = 2, kBbox = 4, kScore = 8, kAll = 15 };

// The fields are told apart by their first letter before the full comparison: this loop runs
// once per key of a file that can hold millions of records.
void parse_record(od::object obj, Detection& det, unsigned& seen) {
  for (auto field : obj) {
    od::raw_json_string key = field.key();
    switch (key.raw()[0]) {
      case 'i':
        if (key == "image_id") {
          det.image_id = get_id(field.value());
          seen |= kImage;
        }
        break;
      case 'c':
        if (key == "category_id") {
          det.category_id = get_id(field.value());
          seen |= kCategory;
        }
        break;
      case 'b':
        if (key == "bbox") {
          size_t n = 0;
          for (auto x : field.value().get_array()) {
            const double v = x.get_double();
            if (n < 4) det.bbox[n] = v;
            ++n;
          }
          if (n != 4) throw util::InputError(fmt::format("bbox has {} numbers, not 4", n));
          seen |= kBbox;
        }
        break;
      case 's':
        if (key == "score") {
          det.score = field.value().get_double();
          seen |= kScore;
        }
        break;
      default:
        break;
    }
  }
}

std::string missing_fields(unsigned seen) {
  std::string out;
  const std::pair<unsigned, const char*> names[] = {
      {kImage, "image_id"}, {kCategory, "category_id"}, {kBbox, "bbox"}, {kScore, "score"}};
  for (const auto& [bit, name] : names) {
    if (!(seen & bit)) out += fmt::format("{}\"{}\"", out.empty() ? "" : ", ", name);
  }
  return out;
}

// Parses the array of records in `json`. With `split` set, calls at_split() on reaching a record
// that starts exactly there and stops if it returns true (setting *stopped): the rest is parsed
// elsewhere.
std::vector<Detection> parse_text(simdjson::padded_string_view json, const std::string& source,
                                  const char* split, const std::function<bool()>& at_split,
                                  bool* stopped) {
  std::vector<Detection> out;
  // A typical record takes 80 to 120 bytes. Room for the whole file even when stopping at the
  // split: the second half is appended (untouched capacity costs nothing).
  out.reserve(json.size() / 96 + 16);
  od::parser parser;
  od::document doc;
  const char* base = json.data();
  bool started = false;  // a document that failed to start has no location to ask for
  const auto here = [&] {
    const char* loc = nullptr;
    if (!started || doc.current_location().get(loc) != simdjson::SUCCESS) loc = nullptr;
    return util::json_location(base, json.size(), loc);
  };
  try {
    doc = parser.iterate(json);
    started = true;
    od::array records;
    const auto err = doc.get_array().get(records);
    if (err == simdjson::INCORRECT_TYPE) {
      throw util::InputError(
          fmt::format("{}: a COCO results file must be a JSON array of detections", source));
    }
    if (err) throw simdjson::simdjson_error(err);
    for (auto record : records) {
      if (split) {
        const char* loc = nullptr;
        if (doc.current_location().get(loc) == simdjson::SUCCESS && loc >= split) {
          if (loc == split && at_split()) {
            *stopped = true;
            return out;
          }
          split = nullptr;
        }
      }
      const size_t index = out.size();
      try {
        Detection det;
        unsigned seen = 0;
        parse_record(record.get_object(), det, seen);
        if (seen != kAll) throw util::InputError(fmt::format("no {}", missing_fields(seen)));
        if (det.bbox[2] < 0 || det.bbox[3] < 0) {
          throw util::InputError(
              fmt::format("negative bbox size {} x {}", det.bbox[2], det.bbox[3]));
        }
        if (det.score < 0) throw util::InputError(fmt::format("negative score {}", det.score));
        out.push_back(det);
      } catch (const util::InputError& e) {
        throw util::InputError(
            fmt::format("{}: detection {} (near {}): {}", source, index, here(), e.what()));
      } catch (const simdjson::simdjson_error& e) {
        throw util::InputError(fmt::format("{}: malformed results JSON in detection {} at {}: {}",
                                           source, index, here(), e.what()));
      }
    }
    const char* rest = nullptr;
    if (doc.current_location().get(rest) == simdjson::SUCCESS) {
      throw util::InputError(
          fmt::format("{}: malformed results JSON: text after the array at {}", source, here()));
    }
  } catch (const simdjson::simdjson_error& e) {
    throw util::InputError(
        fmt::format("{}: malformed results JSON at {}: {}", source, here(), e.what()));
  }
  if (out.empty())
    throw util::InputError(fmt::format("{}: the results file has no detections", source));
  return out;
}

bool is_space(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

// A guess at a record boundary near the middle of a large file: the '{' of a "}, {". It is only
// a guess (it could be inside a string or a nested array); parse_padded uses it only when the
// parse of the first half finds a record starting exactly there.
const char* find_split(simdjson::padded_string_view json, int threads) {
  constexpr size_t kMinParallelBytes = size_t{4} << 20;
  const size_t n = json.size();
  if (threads <= 0) threads = static_cast<int>(std::thread::hardware_concurrency());
  if (n < kMinParallelBytes || threads < 2) return nullptr;
  const char* p = json.data();
  const size_t end = std::min(n, n / 2 + (size_t{1} << 20));
  for (size_t i = n / 2; i < end; ++i) {
    if (p[i] != ',') continue;
    size_t b = i;
    while (b > 0 && is_space(p[b - 1])) --b;
    if (b == 0 || p[b - 1] != '}') continue;
    size_t f = i + 1;
    while (f < n && is_space(p[f])) ++f;
    if (f < n && p[f] == '{') return p + f;
  }
  return nullptr;
}

// Large files are parsed in two halves at once: the second half, copied behind a '[' so that it
// is an array of its own, on another thread. Any problem in it (or a wrong guess of the split)
// makes the first thread go on through the whole file, so that errors are reported exactly as a
// single pass reports them.
std::vector<Detection> parse_padded(simdjson::padded_string_view json, const std::string& source,
                                    int threads) {
  util::check_json_cpu_support();
  bool stopped = false;
  const char* split = find_split(json, threads);
  if (!split) return parse_text(json, source, nullptr, {}, &stopped);

  const size_t tail_size = json.size() - static_cast<size_t>(split - json.data());
  simdjson::padded_string tail_text(tail_size + 1);
  tail_text.data()[0] = '[';
  std::memcpy(tail_text.data() + 1, split, tail_size);
  auto tail_future = std::async(std::launch::async, [&]() -> std::optional<std::vector<Detection>> {
    try {
      bool unused = false;
      return parse_text(tail_text, source, nullptr, {}, &unused);
    } catch (const util::InputError&) {
      return std::nullopt;
    }
  });
  std::optional<std::vector<Detection>> tail;
  bool joined = false;
  const auto join = [&] {
    if (!joined) tail = tail_future.get();
    joined = true;
    return tail.has_value();
  };
  std::vector<Detection> out = parse_text(json, source, split, join, &stopped);
  join();
  if (stopped) out.insert(out.end(), tail->begin(), tail->end());
  return out;
}

// A read-only mapping of a file. Pages are shared with the page cache and populated in one go,
// which for a results file of tens of megabytes is several times faster than reading it into a
// buffer (no copy, and no page faults on a fresh allocation).
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    struct stat st {};
    if (::fstat(fd, &st) == 0 && st.st_size > 0) {
      size_ = static_cast<size_t>(st.st_size);
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
      if (p != MAP_FAILED) data_ = static_cast<const char*>(p);
    }
    ::close(fd);
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<char*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  // simdjson reads up to SIMDJSON_PADDING bytes past the end: the rest of the last page is
  // there (zero-filled) unless the file ends too close to a page boundary.
  bool usable_by_simdjson() const {
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    return data_ && size_ % page != 0 && page - size_ % page >= simdjson::SIMDJSON_PADDING;
  }
  simdjson::padded_string_view view() const {
    return simdjson::padded_string_view(data_, size_, size_ + simdjson::SIMDJSON_PADDING);
  }

 private:
  const char* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace

std::vector<Detection> read_coco_results(const std::string& path, int threads) {
  const MappedFile mapped(path);
  if (mapped.usable_by_simdjson()) return parse_padded(mapped.view(), path, threads);
  simdjson::padded_string json;
  if (const auto err = simdjson::padded_string::load(path).get(json)) {
    throw util::InputError(fmt::format(
        "cannot read results file '{}': {}", path,
        err == simdjson::IO_ERROR ? "no such file or unreadable" : simdjson::error_message(err)));
  }
  return parse_padded(json, path, threads);
}

std::vector<Detection> parse_coco_results(std::string_view json, const std::string& source_name,
                                          int threads) {
  const simdjson::padded_string padded(json);
  return parse_padded(padded, source_name, threads);
}

}  // namespace aligndetr::coco
