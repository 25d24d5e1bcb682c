// YOLO and Pascal VOC datasets converted to COCO instances files, on small hand-made folders
// with known answers, and each bad input a user can feed.

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "aligndetr/coco/annotations.h"
#include "aligndetr/data/convert.h"
#include "aligndetr/util/error.h"
#include "test_support.h"

namespace aligndetr {
namespace {

namespace fs = std::filesystem;

void write_image(const fs::path& path, int width, int height) {
  cv::imwrite(path.string(), cv::Mat(height, width, CV_8UC3, cv::Scalar(40, 90, 200)));
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const util::InputError& e) {
    return e.what();
  }
  return "(no error)";
}

struct Yolo : ::testing::Test {
  void SetUp() override {
    fs::create_directories(dir / "images");
    fs::create_directories(dir / "labels");
    write_image(dir / "images/a.png", 100, 50);
    write_image(dir / "images/b.png", 40, 40);  // no label file: a background image
    write_image(dir / "images/c.jpg", 64, 32);
    testing::write_text(dir / "labels/a.txt", "0 0.5 0.5 0.2 0.4\n\n1 0.25 0.5 0.5 1.0\n");
    testing::write_text(dir / "labels/c.txt", "");
    testing::write_text(dir / "classes.txt", "cat\ndog\n");
  }
  coco::CocoDataset convert() const {
    return data::convert_yolo((dir / "images").string(), (dir / "labels").string(),
                              data::read_class_names((dir / "classes.txt").string()));
  }
  testing::TempDir dir;
};

TEST_F(Yolo, NormalizedCentreBoxesBecomePixelCornerBoxes) {
  const auto d = convert();
  ASSERT_EQ(d.categories.size(), 2u);
  EXPECT_EQ(d.categories[1].id, 2);
  EXPECT_EQ(d.categories[1].name, "dog");
  ASSERT_EQ(d.images.size(), 3u);
  EXPECT_EQ(d.images[0].file_name, "a.png");
  EXPECT_EQ(d.images[0].width, 100);
  EXPECT_EQ(d.images[0].height, 50);
  EXPECT_EQ(d.images[1].file_name, "b.png");
  EXPECT_EQ(d.images[2].id, 3);
  ASSERT_EQ(d.annotations.size(), 2u);
  // cx 50, cy 25, w 20, h 20 -> x 40, y 15.
  EXPECT_EQ(d.annotations[0].bbox, (std::array<double, 4>{40, 15, 20, 20}));
  EXPECT_EQ(d.annotations[0].category_id, 1);
  EXPECT_EQ(d.annotations[0].image_id, 1);
  EXPECT_EQ(d.annotations[1].bbox, (std::array<double, 4>{0, 0, 50, 50}));
  EXPECT_EQ(d.annotations[1].category_id, 2);
  EXPECT_DOUBLE_EQ(d.annotations[1].area, 2500);
  // The result is a COCO file like any other.
  coco::write_coco(d, (dir / "out.json").string());
  const auto back = coco::read_coco((dir / "out.json").string());
  EXPECT_EQ(back.annotations.size(), 2u);
  EXPECT_EQ(back.images.size(), 3u);
}

TEST_F(Yolo, BadLinesAndClassesNameTheFileAndLine) {
  testing::write_text(dir / "labels/a.txt", "0 0.5 0.5 0.2\n");
  EXPECT_NE(
      error_of([&] { convert(); }).find("a.txt:1: expected 5 numbers (class cx cy w h), got 4"),
      std::string::npos)
      << error_of([&] { convert(); });
  testing::write_text(dir / "labels/a.txt", "0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n");
  EXPECT_NE(error_of([&] { convert(); }).find("a.txt:2: class 2 is not one of the 2 classes"),
            std::string::npos);
  testing::write_text(dir / "labels/a.txt", "0 0.5 half 0.2 0.2\n");
  EXPECT_NE(error_of([&] { convert(); }).find("'half' is not a number"), std::string::npos);
  testing::write_text(dir / "labels/a.txt", "1.5 0.5 0.5 0.2 0.2\n");
  EXPECT_NE(error_of([&] { convert(); }).find("class 1.5"), std::string::npos);
  testing::write_text(dir / "classes.txt", "cat\ncat\n");
  EXPECT_NE(error_of([&] { convert(); }).find("class 'cat' is listed twice"), std::string::npos);
  EXPECT_NE(
      error_of([&] { data::read_class_names((dir / "none.txt").string()); }).find("not found"),
      std::string::npos);
}

TEST(Voc, CornersBecomeZeroBasedBoxesAndDifficultObjectsCrowd) {
  testing::TempDir dir;
  fs::create_directories(dir / "Annotations");
  testing::write_text(dir / "Annotations/000001.xml", R"(<annotation>
  <filename>000001.jpg</filename>
  <size><width>100</width><height>80</height><depth>3</depth></size>
  <object><name>cat</name><difficult>0</difficult>
    <bndbox><xmin>11</xmin><ymin>21</ymin><xmax>50</xmax><ymax>60</ymax></bndbox></object>
  <object><name>dog</name><difficult>1</difficult>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>20</ymax></bndbox></object>
</annotation>)");
  testing::write_text(dir / "Annotations/000002.xml",
                      "<annotation><filename>000002.jpg</filename><size><width>30</width>"
                      "<height>30</height></size></annotation>");
  const auto d = data::convert_voc((dir / "Annotations").string(), {"cat", "dog"});
  ASSERT_EQ(d.images.size(), 2u);
  EXPECT_EQ(d.images[0].file_name, "000001.jpg");
  EXPECT_EQ(d.images[0].width, 100);
  EXPECT_EQ(d.images[0].height, 80);
  ASSERT_EQ(d.annotations.size(), 2u);
  EXPECT_EQ(d.annotations[0].bbox, (std::array<double, 4>{10, 20, 40, 40}));
  EXPECT_FALSE(d.annotations[0].iscrowd);
  EXPECT_EQ(d.annotations[1].category_id, 2);
  EXPECT_TRUE(d.annotations[1].iscrowd);

  testing::write_text(dir / "Annotations/000003.xml",
                      "<annotation><filename>3.jpg</filename><size><width>30</width><height>30"
                      "</height></size><object><name>bird</name><bndbox><xmin>1</xmin><ymin>1"
                      "</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object></annotation>");
  EXPECT_NE(error_of([&] {
              data::convert_voc((dir / "Annotations").string(), {"cat", "dog"});
            }).find("000003.xml: object 0: class 'bird' is not in the class list"),
            std::string::npos);
  testing::write_text(dir / "Annotations/000003.xml", "<annotation><filename>3.jpg</filename>");
  EXPECT_NE(error_of([&] {
              data::convert_voc((dir / "Annotations").string(), {"cat", "dog"});
            }).find("000003.xml: malformed XML"),
            std::string::npos);
  testing::write_text(dir / "Annotations/000003.xml",
                      "<annotation><filename>3.jpg</filename><size><height>3</height></size>"
                      "</annotation>");
  EXPECT_NE(error_of([&] {
              data::convert_voc((dir / "Annotations").string(), {"cat", "dog"});
            }).find("<width> is not a number"),
            std::string::npos);
}

TEST(DatasetConvertCli, WritesTheFileOrSaysWhatIsWrong) {
  testing::TempDir dir;
  fs::create_directories(dir / "images");
  fs::create_directories(dir / "labels");
  write_image(dir / "images/a.png", 20, 20);
  testing::write_text(dir / "labels/a.txt", "0 0.5 0.5 0.5 0.5\n");
  testing::write_text(dir / "classes.txt", "thing\n");
  const std::string base = "dataset convert --from yolo --images " + (dir / "images").string() +
                           " --classes " + (dir / "classes.txt").string() + " --out " +
                           (dir / "out.json").string();
  auto r = testing::run_cli(base + " --labels " + (dir / "labels").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.stdout_only.find("1 images, 1 annotations, 1 categories"), std::string::npos);
  EXPECT_EQ(coco::read_coco((dir / "out.json").string()).annotations.size(), 1u);
  EXPECT_EQ(testing::run_cli(base).exit_code, util::kExitUsage);  // no --labels
  testing::write_text(dir / "labels/a.txt", "0 0.5 0.5\n");
  r = testing::run_cli(base + " --labels " + (dir / "labels").string());
  EXPECT_EQ(r.exit_code, util::kExitInput) << r.output;
  EXPECT_NE(r.output.find("a.txt:1"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace aligndetr
