#include <gtest/gtest.h>

#include "aligndetr/coco/annotations.h"
#include "aligndetr/coco/names.h"
#include "aligndetr/util/error.h"
#include "test_support.h"

namespace aligndetr {
namespace {

using testing::TempDir;

TEST(CocoReader, ReadsCoco128Counts) {
  REQUIRE_SHARED_DATA("COCO128's counts");
  const auto ds =
      coco::read_coco((testing::shared_data() / "coco128/annotations/instances.json").string());
  EXPECT_EQ(ds.images.size(), 128u);
  EXPECT_EQ(ds.annotations.size(), 939u);
  EXPECT_EQ(ds.categories.size(), 80u);
  int crowd = 0;
  for (const auto& a : ds.annotations) crowd += a.iscrowd;
  EXPECT_EQ(crowd, 10);
  // First image and annotation as in the file.
  EXPECT_EQ(ds.images[0].id, 9);
  EXPECT_EQ(ds.images[0].file_name, "000000000009.jpg");
  EXPECT_EQ(ds.images[0].width, 640);
  EXPECT_EQ(ds.images[0].height, 480);
  EXPECT_EQ(ds.annotations[0].id, 1774);
  EXPECT_EQ(ds.annotations[0].image_id, 74);
  EXPECT_EQ(ds.annotations[0].category_id, 18);
  EXPECT_DOUBLE_EQ(ds.annotations[0].bbox[0], 61.87);
  EXPECT_DOUBLE_EQ(ds.annotations[0].bbox[3], 103.18);
  EXPECT_DOUBLE_EQ(ds.annotations[0].area, 18234.62355);
  EXPECT_EQ(ds.image_index(74) >= 0, true);
  EXPECT_EQ(ds.image_index(123456789), -1);
}

TEST(CocoReader, FieldsInAnyOrderAndIntegerValuedFloats) {
  const std::string json = R"({"categories":[{"name":"b","id":7}],
    "annotations":[{"bbox":[1,2,3.5,4],"category_id":7.0,"image_id":5,"id":1,"iscrowd":1}],
    "images":[{"width":10,"height":20,"id":5,"file_name":"x.jpg"}]})";
  const auto ds = coco::parse_coco(json, "inline");
  ASSERT_EQ(ds.annotations.size(), 1u);
  EXPECT_EQ(ds.annotations[0].category_id, 7);
  EXPECT_TRUE(ds.annotations[0].iscrowd);
  EXPECT_DOUBLE_EQ(ds.annotations[0].area, 3.5 * 4);  // w*h when `area` is absent
  EXPECT_EQ(ds.images[0].height, 20);
}

TEST(CocoReader, SkipsPolygonAndRleSegmentationsOfAnyShape) {
  // RLE strings may hold brackets and escaped characters; a string value mentioning
  // "segmentation" is not a key.
  const std::string json = R"({"info": {"description": "\"segmentation\": [1"},
    "images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4}],
    "annotations": [
      {"segmentation": [[1.5, 2, 3, 4], [5, 6, 7, 8]], "id": 1, "image_id": 1, "category_id": 1,
       "bbox": [0, 0, 1, 1], "area": 1},
      {"segmentation" : {"counts": "a]b[\\c{\"", "size": [4, 4]}, "iscrowd": 1, "id": 2,
       "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2], "area": 3},
      {"id": 3, "image_id": 1, "category_id": 1, "bbox": [2, 2, 1, 1], "segmentation": []}],
    "categories": [{"id": 1, "name": "x"}]})";
  const auto ds = coco::parse_coco(json, "seg.json");
  ASSERT_EQ(ds.annotations.size(), 3u);
  EXPECT_EQ(ds.annotations[1].id, 2);
  EXPECT_TRUE(ds.annotations[1].iscrowd);
  EXPECT_DOUBLE_EQ(ds.annotations[1].area, 3);
  EXPECT_DOUBLE_EQ(ds.annotations[2].bbox[0], 2);
}

TEST(CocoReader, MalformedJsonNamesFileAndPosition) {
  const std::string json = "{\"images\": [{\"id\": 1,}],\n \"annotations\": []}";
  try {
    coco::parse_coco(json, "bad.json");
    FAIL() << "expected InputError";
  } catch (const util::InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bad.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("malformed"), std::string::npos) << msg;
    EXPECT_NE(msg.find("line"), std::string::npos) << msg;
  }
}

TEST(CocoReader, TruncatedFileIsAnInputError) {
  EXPECT_THROW(coco::parse_coco(R"({"images": [{"id": 1, "file_name": "a.jpg")", "t.json"),
               util::InputError);
}

// One record with the given image and annotation fields, for the integer-limit cases.
std::string one_record(const std::string& image, const std::string& annotation) {
  return R"({"images": [{"file_name": "a.jpg", )" + image +
         R"(}], "annotations": [{"bbox": [0, 0, 1, 1], )" + annotation +
         R"(}], "categories": [{"id": 1, "name": "x"}]})";
}

std::string error_of(const std::string& json) {
  try {
    coco::parse_coco(json, "limits.json");
  } catch (const util::InputError& e) {
    return e.what();
  }
  return "";
}

TEST(CocoReader, IntegersAFieldCannotHoldAreErrorsNamingIt) {
  const std::string ann = R"("id": 1, "image_id": 1, "category_id": 1)";
  EXPECT_NE(error_of(one_record(R"("id": 1, "width": 4294967297, "height": 4)", ann))
                .find("\"width\" 4294967297"),
            std::string::npos);
  EXPECT_NE(
      error_of(one_record(R"("id": 1, "width": 4, "height": 2147483648)", ann)).find("\"height\""),
      std::string::npos);
  // 1e20 and 2e20 are not integers a double holds exactly: two ids that would collide.
  EXPECT_NE(error_of(one_record(R"("id": 1e20, "width": 4, "height": 4)", ann)).find("\"id\" 1e20"),
            std::string::npos);
  EXPECT_NE(error_of(one_record(R"("id": 18446744073709551615, "width": 4, "height": 4)", ann))
                .find("outside the range"),
            std::string::npos);
  EXPECT_NE(
      error_of(one_record(R"("id": 1, "width": 4.5, "height": 4)", ann)).find("not an integer"),
      std::string::npos);
  // Within range, integer-valued floats stay accepted.
  EXPECT_EQ(error_of(one_record(R"("id": 3.0, "width": 2147483647, "height": 4)",
                                R"("id": 9007199254740992, "image_id": 3, "category_id": 1)")),
            "");
}

TEST(CocoReader, TrailingContentAndMalformedSegmentationsAreErrors) {
  const std::string good = one_record(R"("id": 1, "width": 4, "height": 4)",
                                      R"("id": 1, "image_id": 1, "category_id": 1)");
  EXPECT_EQ(error_of(good), "");
  const auto trailing = error_of(good + "\n{\"more\": 1}");
  EXPECT_FALSE(trailing.empty());
  EXPECT_EQ(trailing.find("byte 0"), std::string::npos) << trailing;
  const auto seg = error_of(
      one_record(R"("id": 1, "width": 4, "height": 4)",
                 R"("id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1, 2,, 3]])"));
  EXPECT_NE(seg.find("malformed JSON in a \"segmentation\" value"), std::string::npos) << seg;
  EXPECT_NE(seg.find("limits.json"), std::string::npos) << seg;
  const auto cut = error_of(R"({"images": [{"id": 1, "file_name": "a.jpg")");
  EXPECT_EQ(cut.find("byte 0"), std::string::npos) << cut;
}

TEST(CocoReader, MissingRequiredFieldNamesTheRecord) {
  const std::string json =
      R"({"images":[{"id":1}],"annotations":[{"id":42,"image_id":1,"bbox":[0,0,1,1]}]})";
  try {
    coco::parse_coco(json, "m.json");
    FAIL() << "expected InputError";
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("annotation 42"), std::string::npos) << e.what();
  }
}

TEST(CocoReader, MissingFileIsAnInputError) {
  try {
    coco::read_coco("/nonexistent/instances.json");
    FAIL();
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/instances.json"), std::string::npos);
  }
}

TEST(CocoReader, WriteThenReadRoundTrips) {
  TempDir dir;
  coco::CocoDataset ds;
  ds.images = {{3, "a \"q\".jpg", 64, 48}};
  ds.annotations = {{11, 3, 2, {1.25, 2.5, 10.0, 0.1}, 0.5, false}};
  ds.categories = {{2, "disc", "shape"}};
  const auto path = (dir / "out.json").string();
  coco::write_coco(ds, path);
  const auto back = coco::read_coco(path);
  ASSERT_EQ(back.images.size(), 1u);
  EXPECT_EQ(back.images[0].file_name, "a \"q\".jpg");
  EXPECT_EQ(back.annotations[0].bbox, ds.annotations[0].bbox);
  EXPECT_DOUBLE_EQ(back.annotations[0].area, 0.5);
  EXPECT_EQ(back.categories[0].name, "disc");
}

TEST(CategoryMap, ContiguousLabelsInIdOrder) {
  coco::CategoryMap map({{90, "z", ""}, {1, "a", ""}, {18, "dog", ""}});
  EXPECT_EQ(map.num_classes(), 3);
  EXPECT_EQ(map.label(1), 0);
  EXPECT_EQ(map.label(18), 1);
  EXPECT_EQ(map.label(90), 2);
  EXPECT_EQ(map.label(5), -1);
  EXPECT_EQ(map.category_id(1), 18);
  EXPECT_EQ(map.name(1), "dog");
}

TEST(CocoNames, EightyClassesInIdOrderAndTheNinetyOneIdLayout) {
  ASSERT_EQ(coco::coco80_names().size(), 80u);
  ASSERT_EQ(coco::coco91_names().size(), 91u);
  EXPECT_EQ(coco::coco80_names().front(), "person");
  EXPECT_EQ(coco::coco80_names().back(), "toothbrush");
  EXPECT_EQ(coco::coco91_names()[1], "person");
  EXPECT_EQ(coco::coco91_names()[12], "");  // an id COCO does not use
  EXPECT_EQ(coco::coco91_names()[13], "stop sign");
}

TEST(CocoNames, MatchTheCategoriesOfACocoFile) {
  REQUIRE_SHARED_DATA("COCO128's category list");
  const auto ds =
      coco::read_coco((testing::shared_data() / "coco128/annotations/instances.json").string());
  const coco::CategoryMap categories(ds.categories);
  ASSERT_EQ(categories.num_classes(), 80);
  for (int label = 0; label < 80; ++label) {
    EXPECT_EQ(coco::coco80_names()[size_t(label)], categories.name(label)) << label;
    EXPECT_EQ(coco::coco91_names()[size_t(categories.category_id(label))], categories.name(label));
  }
}

}  // namespace
}  // namespace aligndetr
