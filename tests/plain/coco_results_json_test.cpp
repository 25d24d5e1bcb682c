// COCO results files and the `aligndetr cocoeval` command.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "aligndetr/coco/results.h"
#include "aligndetr/eval/coco_eval.h"
#include "aligndetr/util/error.h"
#include "test_support.h"

namespace aligndetr {
namespace {

using testing::TempDir;

std::string fmt_record(size_t i, double w) {
  char buf[200];
  std::snprintf(
      buf, sizeof buf,
      R"({"image_id": %zu, "category_id": %zu, "bbox": [%.17g, 5, %.17g, 20], "score": %.17g})",
      i / 10, 1 + i % 80, static_cast<double>(i) + 0.25, w, static_cast<double>(i % 1000) / 1000);
  return buf;
}

std::string results_error_of(const std::string& json) {
  try {
    coco::parse_coco_results(json, "dets.json");
  } catch (const util::InputError& e) {
    return e.what();
  }
  return "no error";
}

TEST(CocoResultsJson, ReadsRecordsWithFieldsInAnyOrder) {
  const auto dts = coco::parse_coco_results(
      R"([{"image_id": 42, "category_id": 18, "bbox": [258.15, 41.29, 348.26, 243.78], "score": 0.236},
          {"score": 1, "segmentation": [[1, 2, 3]], "bbox": [0, 1e2, 5, 6.5], "category_id": 3.0,
           "image_id": 7, "id": 12}])",
      "inline");
  ASSERT_EQ(dts.size(), 2u);
  EXPECT_EQ(dts[0].image_id, 42);
  EXPECT_EQ(dts[0].category_id, 18);
  EXPECT_EQ(dts[0].bbox[0], 258.15);
  EXPECT_EQ(dts[0].bbox[3], 243.78);
  EXPECT_EQ(dts[0].score, 0.236);
  EXPECT_EQ(dts[1].image_id, 7);
  EXPECT_EQ(dts[1].category_id, 3);
  EXPECT_EQ(dts[1].bbox[1], 100.0);
  EXPECT_EQ(dts[1].score, 1.0);
}

TEST(CocoResultsJson, BadInputNamesTheFileAndTheRecord) {
  auto m = results_error_of(
      R"([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5},)"
      "\n"
      R"({"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1], "score": 0.5}])");
  EXPECT_NE(m.find("dets.json: detection 1"), std::string::npos) << m;
  EXPECT_NE(m.find("negative bbox size"), std::string::npos) << m;
  EXPECT_NE(m.find("line 2"), std::string::npos) << m;
  m = results_error_of(
      R"([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": -0.5}])");
  EXPECT_NE(m.find("negative score"), std::string::npos) << m;
  m = results_error_of(R"([{"image_id": 1, "bbox": [0, 0, 1, 1]}])");
  EXPECT_NE(m.find("detection 0"), std::string::npos) << m;
  EXPECT_NE(m.find("no \"category_id\", \"score\""), std::string::npos) << m;
  m = results_error_of(R"([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1], "score": 0.5}])");
  EXPECT_NE(m.find("bbox has 3 numbers"), std::string::npos) << m;
  m = results_error_of(
      R"([{"image_id": 1.5, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}])");
  EXPECT_NE(m.find("not an integer"), std::string::npos) << m;
  m = results_error_of(
      R"([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": "high"}])");
  EXPECT_NE(m.find("dets.json: malformed results JSON in detection 0"), std::string::npos) << m;
  m = results_error_of(R"([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5})");
  EXPECT_NE(m.find("dets.json: malformed"), std::string::npos) << m;
  m = results_error_of(R"({"image_id": 1})");
  EXPECT_NE(m.find("must be a JSON array"), std::string::npos) << m;
  m = results_error_of("[]");
  EXPECT_NE(m.find("no detections"), std::string::npos) << m;
  // Whatever follows the array, simdjson or the reader's own end check reports it.
  for (const char* tail : {" x", " 5", " [1]", " {}"}) {
    m = results_error_of(
        std::string(R"([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}])") +
        tail);
    EXPECT_NE(m.find("dets.json: malformed results JSON"), std::string::npos) << m;
  }
  EXPECT_THROW(coco::read_coco_results("/nonexistent/dets.json"), util::InputError);
}

TEST(CocoResultsJson, WriteThenReadIsExact) {
  TempDir dir;
  const std::vector<coco::Detection> dts = {
      {9, 1, {0.1 + 0.2, 1e-300, 123456.789, 1.0 / 3}, 0.30000001192092896},
      {123456789012, 90, {-5, 0, 0, 7}, 1}};
  const auto path = (dir / "out.json").string();
  coco::write_coco_results(dts, path);
  const auto back = coco::read_coco_results(path);
  ASSERT_EQ(back.size(), 2u);
  for (size_t i = 0; i < dts.size(); ++i) {
    EXPECT_EQ(back[i].image_id, dts[i].image_id);
    EXPECT_EQ(back[i].category_id, dts[i].category_id);
    EXPECT_EQ(back[i].bbox, dts[i].bbox);
    EXPECT_EQ(back[i].score, dts[i].score);
  }
  auto bad = dts;
  bad[0].score = std::nan("");
  EXPECT_THROW(coco::write_coco_results(bad, path), util::InputError);
}

TEST(CocoResultsJson, ReadsFilesOfEverySizeAroundAPageBoundary) {
  // Files are mapped, with simdjson's padding read from the rest of the last page; files ending
  // near a page boundary are read into a padded buffer instead. Both must give the same records.
  TempDir dir;
  const std::string record =
      R"([{"image_id": 3, "category_id": 2, "bbox": [1.5, 2, 3, 4], "score": 0.25}])";
  for (size_t size : {record.size(), size_t{4096} - 70, size_t{4096} - 64, size_t{4096} - 10,
                      size_t{4096}, size_t{8192} + 1}) {
    const auto path = (dir / ("r" + std::to_string(size) + ".json")).string();
    testing::write_text(path, record + std::string(size - record.size(), ' '));
    const auto dts = coco::read_coco_results(path);
    ASSERT_EQ(dts.size(), 1u) << size;
    EXPECT_EQ(dts[0].image_id, 3) << size;
    EXPECT_EQ(dts[0].bbox[0], 1.5) << size;
    EXPECT_EQ(dts[0].score, 0.25) << size;
  }
  const auto empty = (dir / "empty.json").string();
  testing::write_text(empty, "");
  EXPECT_THROW(coco::read_coco_results(empty), util::InputError);
}

// Large files are parsed in two halves on two threads, split at a guessed record boundary.
std::string big_results(size_t n, const std::string& middle_extra, size_t bad_record = SIZE_MAX) {
  std::string text = "[";
  for (size_t i = 0; i < n; ++i) {
    text += fmt_record(i, i == bad_record ? -1.0 : 10.0 + static_cast<double>(i % 7));
    if (i == n / 2) text.insert(text.size() - 1, middle_extra);
    text += i + 1 < n ? ",\n" : "]\n";
  }
  return text;
}

void expect_big_records(const std::vector<coco::Detection>& dts, size_t n) {
  ASSERT_EQ(dts.size(), n);
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(dts[i].image_id, static_cast<int64_t>(i / 10)) << i;
    ASSERT_EQ(dts[i].category_id, static_cast<int64_t>(1 + i % 80)) << i;
    ASSERT_EQ(dts[i].bbox[0], static_cast<double>(i) + 0.25) << i;
    ASSERT_EQ(dts[i].bbox[2], 10.0 + static_cast<double>(i % 7)) << i;
    ASSERT_EQ(dts[i].score, static_cast<double>(i % 1000) / 1000) << i;
  }
}

TEST(CocoResultsJson, LargeFilesReadExactlyInTwoHalves) {
  TempDir dir;
  const size_t n = 60000;  // about 6 MB
  const auto path = (dir / "big.json").string();
  testing::write_text(path, big_results(n, ""));
  expect_big_records(coco::read_coco_results(path), n);
  expect_big_records(coco::read_coco_results(path, 1), n);
}

TEST(CocoResultsJson, LargeFilesWithNestedObjectsInTheMiddle) {
  // A record in the middle carries 2 MB of "}, {" inside a nested array, where the split guess
  // lands: the first half never sees a record start there, so one thread reads it all.
  TempDir dir;
  const size_t n = 60000;
  std::string nested = ", \"extra\": [";
  for (int i = 0; i < 200000; ++i) nested += i ? ", {\"a\": 1}" : "{\"a\": 1}";
  nested += "]";
  const auto path = (dir / "nested.json").string();
  testing::write_text(path, big_results(n, nested));
  expect_big_records(coco::read_coco_results(path), n);
}

TEST(CocoResultsJson, LargeFilesReportErrorsOfTheSecondHalfAsOnePassWould) {
  TempDir dir;
  const size_t n = 60000, bad = 45000;
  const auto path = (dir / "bad.json").string();
  testing::write_text(path, big_results(n, "", bad));
  try {
    coco::read_coco_results(path);
    FAIL() << "expected InputError";
  } catch (const util::InputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(path + ": detection 45000 "), std::string::npos) << m;
    EXPECT_NE(m.find("(line 45001)"), std::string::npos) << m;
    EXPECT_NE(m.find("negative bbox size -1 x 20"), std::string::npos) << m;
  }
}

std::string fake100_args() {
  const auto dir = testing::shared_data() / "cocoapi-fake100";
  return "cocoeval --gt " + (dir / "instances_val2014_100.json").string() + " --dt " +
         (dir / "instances_val2014_fakebbox100_results.json").string();
}

TEST(CocoEvalCli, PrintsPycocotoolsSummary) {
  REQUIRE_SHARED_DATA("pycocotools' printed summary of its cocoapi demo files");
  const auto r = testing::run_cli(fake100_args());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // pycocotools' own output for its demo files.
  EXPECT_EQ(r.stdout_only,
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.505\n"
            " Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = 0.697\n"
            " Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ] = 0.573\n"
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = 0.586\n"
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ] = 0.519\n"
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = 0.501\n"
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 0.387\n"
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ] = 0.594\n"
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.595\n"
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = 0.640\n"
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ] = 0.566\n"
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = 0.564\n");
}

TEST(CocoEvalCli, JsonAndPerClass) {
  REQUIRE_SHARED_DATA("pycocotools' numbers on its cocoapi demo files");
  auto r = testing::run_cli(fake100_args() + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.stdout_only.rfind("{\"AP\": 0.50458069872496281, ", 0), 0u) << r.stdout_only;
  EXPECT_NE(r.stdout_only.find("\"AR100\": 0.59535298287760696, "), std::string::npos);
  r = testing::run_cli(fake100_args() + " --per-class");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.stdout_only.find("category"), std::string::npos);
  EXPECT_NE(r.stdout_only.find("\nperson "), std::string::npos) << r.stdout_only;
}

TEST(CocoEvalCli, BadInputExitsWithTwoAndSaysWhy) {
  REQUIRE_SHARED_DATA("the cocoapi demo ground truth");
  TempDir dir;
  const auto gt = (testing::shared_data() / "cocoapi-fake100/instances_val2014_100.json").string();
  const auto dt = (dir / "dt.json").string();
  testing::write_text(
      dt, R"([{"image_id": 424242, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}])");
  auto r = testing::run_cli("cocoeval --gt " + gt + " --dt " + dt);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(dt + ": detection 0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("image_id 424242 is not in the ground truth"), std::string::npos);

  testing::write_text(dt, "[{\"image_id\": 42,");
  r = testing::run_cli("cocoeval --gt " + gt + " --dt " + dt);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(dt + ": malformed"), std::string::npos) << r.output;

  const auto empty = (dir / "empty.json").string();
  testing::write_text(empty, "");
  r = testing::run_cli("cocoeval --gt " + empty + " --dt " + dt);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(empty + ": malformed COCO JSON"), std::string::npos) << r.output;

  r = testing::run_cli("cocoeval --gt " + (dir / "missing.json").string() + " --dt " + dt);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("missing.json"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace aligndetr
