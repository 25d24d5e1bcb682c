// The `dataset` and `synth` commands end to end, including every bad input the reader and the
// validation handle: each gives its documented message and exit code, never a crash.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "aligndetr/util/error.h"
#include "test_support.h"

namespace aligndetr {
namespace {

namespace fs = std::filesystem;
using testing::run_cli;
using testing::TempDir;

TEST(DatasetCli, StatsOnCoco128) {
  REQUIRE_SHARED_DATA("COCO128's statistics");
  const auto root = testing::shared_data() / "coco128";
  const auto r = run_cli(fmt::format("dataset stats --ann {} --images {} --json",
                                     (root / "annotations/instances.json").string(),
                                     (root / "images").string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.stdout_only.find("\"images\": 128,"), std::string::npos) << r.stdout_only;
  EXPECT_NE(r.stdout_only.find("\"annotations\": 939,"), std::string::npos);
  EXPECT_NE(r.stdout_only.find("\"crowd\": 10,"), std::string::npos);
  EXPECT_NE(r.stdout_only.find("\"categories\": 80,"), std::string::npos);
  EXPECT_NE(r.stdout_only.find("\"categories_used\": 71,"), std::string::npos);
  EXPECT_NE(r.stdout_only.find("\"images_without_annotations\": 2,"), std::string::npos);
  EXPECT_NE(r.stdout_only.find("\"invalid\": {}"), std::string::npos);
}

// A small dataset written by `synth`, with an annotation file we can break at will.
class BadInputs : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto r =
        run_cli(fmt::format("synth --out {} --train 4 --val 0 --size 96", dir_.path().string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    images_ = (dir_ / "images/train").string();
    // The records below say 96x60: the files are made so (a decoded size other than the
    // record's is an invalid record of its own).
    for (int id = 1; id <= 4; ++id) {
      const auto file = (fs::path(images_) / fmt::format("{:06d}.jpg", id)).string();
      cv::Mat resized;
      cv::resize(cv::imread(file), resized, cv::Size(96, 60));
      ASSERT_TRUE(cv::imwrite(file, resized));
    }
  }

  // Images 1-4 are 96x60, so every box below stays inside them.
  std::string write_ann(const std::string& images, const std::string& annotations,
                        const std::string& categories = R"([{"id": 1, "name": "circle"}])") {
    const auto path = (dir_ / "ann.json").string();
    testing::write_text(
        path, fmt::format(R"({{"images": [{}], "annotations": [{}], "categories": {}}})", images,
                          annotations, categories));
    return path;
  }

  static std::string image(int id, const std::string& file = "") {
    return fmt::format(R"({{"id": {}, "file_name": "{}", "width": 96, "height": 60}})", id,
                       file.empty() ? fmt::format("{:06d}.jpg", id) : file);
  }

  static std::string ann(int id, int image_id, const std::string& bbox, int category = 1) {
    return fmt::format(
        R"({{"id": {}, "image_id": {}, "category_id": {}, "bbox": {}, "area": 10, "iscrowd": 0}})",
        id, image_id, category, bbox);
  }

  testing::CommandResult stats(const std::string& ann_path) {
    return run_cli(fmt::format("dataset stats --ann {} --images {} --json", ann_path, images_));
  }

  testing::CommandResult show_fail(const std::string& ann_path) {
    return run_cli(fmt::format("dataset show --ann {} --images {} --out {} --on-invalid fail",
                               ann_path, images_, (dir_ / "show").string()));
  }

  void expect_fails_naming(const std::string& ann_path, const std::string& kind_text,
                           const std::string& id_text) {
    const auto r = show_fail(ann_path);
    EXPECT_EQ(r.exit_code, util::kExitInput) << r.output;
    EXPECT_NE(r.output.find("error: "), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(kind_text), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(id_text), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(ann_path), std::string::npos) << r.output;
  }

  TempDir dir_;
  std::string images_;
};

TEST_F(BadInputs, MissingAnnotationFile) {
  const auto r = run_cli("dataset stats --ann /nonexistent/ann.json");
  EXPECT_EQ(r.exit_code, util::kExitInput);
  EXPECT_NE(r.output.find("cannot read COCO file '/nonexistent/ann.json'"), std::string::npos)
      << r.output;
}

TEST_F(BadInputs, MalformedJson) {
  const auto path = (dir_ / "broken.json").string();
  testing::write_text(path, "{\"images\": [{\"id\": 1,\n\"file_name\": }]}");
  const auto r = run_cli("dataset stats --ann " + path);
  EXPECT_EQ(r.exit_code, util::kExitInput) << r.output;
  EXPECT_NE(r.output.find(path + ": malformed COCO JSON at byte"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(line 2)"), std::string::npos) << r.output;
}

TEST_F(BadInputs, MissingArgumentIsAUsageError) {
  const auto r = run_cli("dataset stats");
  EXPECT_EQ(r.exit_code, util::kExitUsage) << r.output;
  EXPECT_NE(r.output.find("--ann is required"), std::string::npos) << r.output;
}

TEST_F(BadInputs, EachInvalidRecordIsCountedByKind) {
  // Truncate image 3 and overwrite image 4 with text.
  {
    const auto p = fs::path(images_) / "000003.jpg";
    const auto size = fs::file_size(p);
    fs::resize_file(p, size / 2);
    testing::write_text(fs::path(images_) / "000004.jpg", "not an image");
  }
  const auto path =
      write_ann(image(1) + "," + image(2) + "," + image(2) + "," + image(3) + "," + image(4) + "," +
                    image(5, "missing.jpg"),
                ann(1, 1, "[10, 10, 20, 20]") + "," +      // fine
                    ann(2, 1, "[10, 10, 0, 5]") + "," +    // zero width
                    ann(3, 1, "[10, 10, 5, -3]") + "," +   // negative height
                    ann(4, 1, "[200, 10, 5, 5]") + "," +   // entirely outside the 96x60 image
                    ann(5, 1, "[90, 50, 20, 20]") + "," +  // partly outside: clipped, kept
                    ann(6, 1, "[1, 1, 5, 5]", 99) + "," +  // unknown category
                    ann(7, 77, "[1, 1, 5, 5]"));           // unknown image
  const auto r = stats(path);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string& j = r.stdout_only;
  EXPECT_NE(j.find("\"images\": 6,"), std::string::npos) << j;
  EXPECT_NE(j.find("\"annotations\": 7,"), std::string::npos) << j;
  EXPECT_NE(j.find("\"clipped_boxes\": 1,"), std::string::npos) << j;
  for (const char* kind :
       {"\"annotation_unknown_category\": 1", "\"annotation_unknown_image\": 1",
        "\"box_non_positive_size\": 2", "\"box_outside_image\": 1", "\"duplicate_image_id\": 1",
        "\"image_missing\": 1", "\"image_unreadable\": 2"}) {
    EXPECT_NE(j.find(kind), std::string::npos) << kind << " in " << j;
  }
  // The warnings name the problems.
  EXPECT_NE(r.output.find("annotation 6 (image 1) has unknown category id 99"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("truncated JPEG"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("not a JPEG or PNG file"), std::string::npos) << r.output;
}

TEST_F(BadInputs, ZeroSizeBoxFailsUnderFailPolicy) {
  expect_fails_naming(write_ann(image(1), ann(5, 1, "[10, 10, 0, 5]")),
                      "annotation 5 (image 1) has bbox width 0", "annotation 5");
}

TEST_F(BadInputs, BoxOutsideImageFailsUnderFailPolicy) {
  expect_fails_naming(write_ann(image(1), ann(8, 1, "[-50, 10, 20, 5]")),
                      "lies outside the 96x60 image", "annotation 8");
}

TEST_F(BadInputs, UnknownCategoryFailsUnderFailPolicy) {
  expect_fails_naming(write_ann(image(1), ann(3, 1, "[1, 1, 5, 5]", 42)), "unknown category id 42",
                      "annotation 3");
}

TEST_F(BadInputs, DuplicateImageIdFailsUnderFailPolicy) {
  expect_fails_naming(write_ann(image(1) + "," + image(1, "000002.jpg"), ann(1, 1, "[1, 1, 5, 5]")),
                      "image id 1 ('000002.jpg') appears more than once", "image id 1");
}

TEST_F(BadInputs, MissingImageFailsUnderFailPolicy) {
  expect_fails_naming(write_ann(image(9, "gone.jpg"), ann(1, 9, "[1, 1, 5, 5]")), "file not found",
                      "image 9");
}

TEST_F(BadInputs, TruncatedJpegFailsUnderFailPolicy) {
  const auto p = fs::path(images_) / "000002.jpg";
  fs::resize_file(p, fs::file_size(p) - 100);
  expect_fails_naming(write_ann(image(2), ann(1, 2, "[1, 1, 5, 5]")), "truncated JPEG", "image 2");
}

TEST_F(BadInputs, SkipPolicyLeavesInvalidRecordsOutAndRenders) {
  const auto path = write_ann(image(1) + "," + image(9, "gone.jpg"),
                              ann(1, 1, "[10, 10, 20, 20]") + "," + ann(2, 1, "[1, 1, 5, 5]", 42));
  const auto r = run_cli(fmt::format("dataset show --ann {} --images {} --out {}", path, images_,
                                     (dir_ / "show").string()));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("left out 2 invalid record(s)"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(dir_ / "show/000001.png"));
  EXPECT_FALSE(fs::exists(dir_ / "show/gone.png"));
}

TEST(SynthCli, RejectsBadSizes) {
  TempDir dir;
  const auto r = run_cli(fmt::format("synth --out {} --size 10", dir.path().string()));
  EXPECT_EQ(r.exit_code, util::kExitUsage) << r.output;
}

}  // namespace
}  // namespace aligndetr
