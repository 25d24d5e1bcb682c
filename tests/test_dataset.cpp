#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "aligndetr/coco/annotations.h"
#include "aligndetr/data/dataset.h"
#include "aligndetr/data/loader.h"
#include "aligndetr/data/synth.h"
#include "aligndetr/data/validate.h"
#include "aligndetr/util/error.h"
#include "test_support.h"

namespace aligndetr {
namespace {

namespace fs = std::filesystem;

data::DatasetOptions coco128_options(bool train) {
  data::DatasetOptions o;
  o.ann_file = (testing::shared_data() / "coco128/annotations/instances.json").string();
  o.images_dir = (testing::shared_data() / "coco128/images").string();
  o.train = train;
  // Small sizes keep the test fast; the pipeline is the same.
  o.transforms.train_short_sizes = {128, 160, 192};
  o.transforms.train_max_size = 320;
  o.transforms.crop_resize_sizes = {100, 125, 150};
  o.transforms.crop_min = 96;
  o.transforms.crop_max = 150;
  o.transforms.test_short_size = 160;
  o.transforms.test_max_size = 320;
  return o;
}

TEST(Dataset, Coco128TrainingSetDropsEmptyImagesAndCrowd) {
  REQUIRE_SHARED_DATA("COCO128's image, crowd and box counts");
  const data::CocoDetection train(coco128_options(true));
  EXPECT_EQ(train.size(), 126u);  // 2 images have no annotation at all
  EXPECT_EQ(train.categories().num_classes(), 80);
  int64_t boxes = 0;
  for (size_t i = 0; i < train.size(); ++i)
    boxes += static_cast<int64_t>(train.load(i).boxes.size());
  EXPECT_EQ(boxes, 939 - 10);  // crowd boxes are not training targets

  auto keep_empty = coco128_options(true);
  keep_empty.drop_empty = false;
  EXPECT_EQ(data::CocoDetection(keep_empty).size(), 128u);
  EXPECT_EQ(data::CocoDetection(coco128_options(false)).size(), 128u);
}

TEST(Dataset, LoadedBoxesAreTheFileBoxesInXyxy) {
  REQUIRE_SHARED_DATA("a known COCO128 annotation read back");
  const data::CocoDetection val(coco128_options(false));
  // Image 74 holds annotation 1774: bbox [61.87, 276.25, 296.42, 103.18], category 18 (dog).
  const int64_t index = [&] {
    for (size_t i = 0; i < val.size(); ++i) {
      if (val.image_info(i).id == 74) return static_cast<int64_t>(i);
    }
    return int64_t{-1};
  }();
  ASSERT_GE(index, 0);
  const auto s = val.load(static_cast<size_t>(index));
  EXPECT_EQ(s.image.cols, val.image_info(static_cast<size_t>(index)).width);
  bool found = false;
  for (size_t b = 0; b < s.boxes.size(); ++b) {
    if (std::abs(s.boxes[b][0] - 61.87f) < 1e-3f && std::abs(s.boxes[b][1] - 276.25f) < 1e-3f) {
      found = true;
      EXPECT_NEAR(s.boxes[b][2], 61.87f + 296.42f, 1e-3);
      EXPECT_NEAR(s.boxes[b][3], 276.25f + 103.18f, 1e-3);
      EXPECT_EQ(val.categories().category_id(static_cast<int>(s.labels[b])), 18);
    }
  }
  EXPECT_TRUE(found);
}

TEST(Dataset, EvalSampleHasTheConfiguredSizeAndNormalizedTargets) {
  REQUIRE_SHARED_DATA("a known COCO128 image size");
  const data::CocoDetection val(coco128_options(false));
  const data::Sample s = val.get(0, 0, 0);  // image 9, 640x480 -> 160 short edge -> 160x213
  EXPECT_EQ(s.target.orig_size, (std::array<int64_t, 2>{480, 640}));
  EXPECT_EQ(s.target.size, (std::array<int64_t, 2>{160, 213}));
  EXPECT_EQ(s.image.sizes(), torch::IntArrayRef({3, 160, 213}));
  EXPECT_TRUE((s.target.boxes >= 0).all().item<bool>());
  EXPECT_TRUE((s.target.boxes <= 1).all().item<bool>());
}

// 126 synthetic training images of 96 px (as many as COCO128 keeps for training).
std::shared_ptr<const data::CocoDetection> synth_training_set(const fs::path& dir) {
  data::SynthOptions so;
  so.out_dir = dir.string();
  so.train_images = 126;
  so.val_images = 0;
  so.size = 96;
  so.min_object_size = 16;
  so.seed = 5;
  data::write_synthetic_dataset(so);
  data::DatasetOptions o;
  o.ann_file = (dir / "annotations/instances_train.json").string();
  o.images_dir = (dir / "images/train").string();
  o.transforms.train_short_sizes = {64, 80, 96};
  o.transforms.train_max_size = 160;
  o.transforms.crop_resize_sizes = {48, 64};
  o.transforms.crop_min = 40;
  o.transforms.crop_max = 64;
  return std::make_shared<const data::CocoDetection>(o);
}

std::vector<data::Batch> all_batches(std::shared_ptr<const data::CocoDetection> ds, int workers,
                                     int64_t epoch) {
  data::LoaderOptions o;
  o.batch_size = 4;
  o.workers = workers;
  o.seed = 7;
  data::DataLoader loader(ds, o);
  loader.start_epoch(epoch);
  std::vector<data::Batch> out;
  while (auto b = loader.next()) out.push_back(std::move(*b));
  return out;
}

TEST(Loader, DeterministicAcrossWorkerCounts) {
  testing::TempDir dir;
  const auto ds = synth_training_set(dir.path());
  ASSERT_EQ(ds->size(), 126u);
  const auto a = all_batches(ds, 0, 3);
  const auto b = all_batches(ds, 1, 3);
  const auto c = all_batches(ds, 3, 3);
  ASSERT_EQ(a.size(), 126u / 4);  // drop_last
  data::LoaderOptions lo;
  lo.batch_size = 4;
  lo.workers = 0;
  EXPECT_EQ(data::DataLoader(ds, lo).batches_per_epoch(), a.size());
  ASSERT_EQ(b.size(), a.size());
  ASSERT_EQ(c.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    for (const auto* other : {&b[i], &c[i]}) {
      ASSERT_TRUE(torch::equal(a[i].images, other->images)) << "batch " << i;
      ASSERT_TRUE(torch::equal(a[i].mask, other->mask));
      for (size_t j = 0; j < a[i].targets.size(); ++j) {
        EXPECT_EQ(a[i].targets[j].image_id, other->targets[j].image_id);
        EXPECT_TRUE(torch::equal(a[i].targets[j].boxes, other->targets[j].boxes));
      }
    }
  }
  // Another epoch gives another order and other augmentations.
  const auto d = all_batches(ds, 2, 4);
  EXPECT_NE(a[0].targets[0].image_id * 1000 + a[0].targets[1].image_id,
            d[0].targets[0].image_id * 1000 + d[0].targets[1].image_id);
}

TEST(Loader, RanksSplitTheEpochWithoutOverlap) {
  testing::TempDir dir;
  const auto ds = synth_training_set(dir.path());
  ASSERT_EQ(ds->size(), 126u);
  std::vector<size_t> seen;
  for (int rank = 0; rank < 3; ++rank) {
    data::LoaderOptions o;
    o.rank = rank;
    o.world_size = 3;
    o.seed = 1;
    data::DataLoader loader(ds, o);
    const auto mine = loader.epoch_indices(0);
    EXPECT_EQ(mine.size(), 42u);
    EXPECT_EQ(loader.batches_per_epoch(), 21u);  // 42 images in batches of 2
    seen.insert(seen.end(), mine.begin(), mine.end());
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::unique(seen.begin(), seen.end()) - seen.begin(), 126);
}

// A synthetic training set of `images` 96-pixel images in `dir`, to be read with these options.
data::DatasetOptions synthetic_training_set(const fs::path& dir, int images) {
  data::SynthOptions so;
  so.out_dir = dir.string();
  so.train_images = images;
  so.val_images = 0;
  so.size = 96;
  data::write_synthetic_dataset(so);
  data::DatasetOptions o;
  o.ann_file = (dir / "annotations/instances_train.json").string();
  o.images_dir = (dir / "images/train").string();
  return o;
}

// One worker, the set's order: batch i holds images i * batch_size, ...
data::LoaderOptions in_order(int batch_size) {
  data::LoaderOptions lo;
  lo.batch_size = batch_size;
  lo.workers = 1;
  lo.shuffle = false;
  return lo;
}

// Replaces an image of the set after validation with bytes that pass the cheap check (JPEG start
// and end markers) and fail to decode.
void make_undecodable(const fs::path& dir, const data::CocoDetection& ds, size_t index) {
  testing::write_text(dir / "images/train" / ds.image_info(index).file_name,
                      "\xff\xd8\xff garbage \xff\xd9");
}

TEST(Loader, WorkerErrorsReachTheCaller) {
  testing::TempDir dir;
  auto o = synthetic_training_set(dir.path(), 6);
  o.on_invalid = data::OnInvalid::kFail;
  auto ds = std::make_shared<const data::CocoDetection>(o);
  // Decoding fails inside a worker.
  make_undecodable(dir.path(), *ds, 0);
  data::LoaderOptions lo;
  lo.batch_size = 6;
  lo.workers = 2;
  lo.shuffle = false;
  data::DataLoader loader(ds, lo);
  loader.start_epoch(0);
  try {
    loader.next();
    FAIL() << "expected InputError";
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find(ds->image_info(0).file_name), std::string::npos)
        << e.what();
  }
}

TEST(Loader, AnUndecodableTrainingImageIsSkippedAndCountedUnderSkip) {
  testing::TempDir dir;
  auto ds = std::make_shared<const data::CocoDetection>(synthetic_training_set(dir.path(), 4));
  make_undecodable(dir.path(), *ds, 1);
  data::DataLoader loader(ds, in_order(4));
  loader.start_epoch(0);
  const auto batch = loader.next();
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->images.size(0), 4);  // the batch keeps its size
  EXPECT_EQ(loader.undecodable(), 1u);
  // Image 2 took image 1's place.
  EXPECT_TRUE(torch::equal(batch->targets[1].boxes, batch->targets[2].boxes));
}

// A JPEG of noise (so that its entropy-coded data is long), width x height.
std::string noise_jpeg(int width, int height) {
  cv::Mat image(height, width, CV_8UC3);
  cv::randu(image, cv::Scalar::all(0), cv::Scalar::all(255));
  std::vector<uchar> bytes;
  cv::imencode(".jpg", image, bytes, {cv::IMWRITE_JPEG_QUALITY, 90});
  return std::string(bytes.begin(), bytes.end());
}

// `jpeg` with an EXIF block whose orientation tag is `orientation` (6: turn a quarter clockwise
// to show), right after the start-of-image marker.
std::string with_exif_orientation(const std::string& jpeg, int orientation) {
  const std::string exif(
      "\xff\xe1\x00\x22"                  // APP1, 34 bytes with the length field
      "Exif\x00\x00"                      // EXIF identifier
      "MM\x00\x2a\x00\x00\x00\x08"        // big-endian TIFF header, first directory at 8
      "\x00\x01"                          // one entry:
      "\x01\x12\x00\x03\x00\x00\x00\x01"  // orientation, SHORT, count 1,
      "\x00\x00\x00\x00"                  // value (set below)
      "\x00\x00\x00\x00",                 // no next directory
      36);
  std::string tagged = exif;
  tagged[29] = static_cast<char>(orientation);  // low byte of the big-endian SHORT
  return jpeg.substr(0, 2) + tagged + jpeg.substr(2);
}

TEST(Validate, DecodeTreatsLibjpegWarningsAsUnreadable) {
  testing::TempDir dir;
  const std::string good = noise_jpeg(64, 48);
  // Cut inside the scan, then an end-of-image marker: the cheap check passes, and OpenCV decodes
  // it (grey below the cut) while libjpeg warns of the premature end of the data.
  const std::string cut = good.substr(0, good.size() * 3 / 5) + "\xff\xd9";
  testing::write_text(dir / "good.jpg", good);
  testing::write_text(dir / "cut.jpg", cut);
  const cv::Mat raw(1, int(cut.size()), CV_8UC1, const_cast<char*>(cut.data()));
  ASSERT_FALSE(cv::imdecode(raw, cv::IMREAD_COLOR).empty()) << "OpenCV refuses it by itself";
  EXPECT_EQ(data::check_image_file((dir / "good.jpg").string(), true).problem, "");
  EXPECT_EQ(data::check_image_file((dir / "cut.jpg").string(), false).problem, "");
  const auto check = data::check_image_file((dir / "cut.jpg").string(), true);
  EXPECT_NE(check.problem.find("corrupt JPEG data: libjpeg says"), std::string::npos)
      << check.problem;
  EXPECT_FALSE(check.size_mismatch);
}

TEST(Validate, ExifOrientationSetsTheDecodedSizeAndAFullDecodeComparesItWithTheRecord) {
  testing::TempDir dir;
  const auto path = (dir / "turned.jpg").string();
  testing::write_text(path, with_exif_orientation(noise_jpeg(40, 20), 6));
  const cv::Mat applied = data::read_image_rgb(path, data::ExifOrientation::kApply);
  const cv::Mat stored = data::read_image_rgb(path, data::ExifOrientation::kIgnore);
  EXPECT_EQ(applied.cols, 20);
  EXPECT_EQ(applied.rows, 40);
  EXPECT_EQ(stored.cols, 40);
  EXPECT_EQ(stored.rows, 20);
  // A record of the stored pixels (40x20).
  const auto turned = data::check_image_file(path, true, data::ExifOrientation::kApply, 40, 20);
  EXPECT_TRUE(turned.size_mismatch);
  EXPECT_NE(turned.problem.find("decodes to 20x40, not the 40x20 its record gives; its EXIF "
                                "orientation turns it"),
            std::string::npos)
      << turned.problem;
  EXPECT_NE(turned.problem.find("data.exif_orientation: ignore"), std::string::npos);
  EXPECT_EQ(data::check_image_file(path, true, data::ExifOrientation::kIgnore, 40, 20).problem, "");
  const auto other = data::check_image_file(path, true, data::ExifOrientation::kIgnore, 41, 20);
  EXPECT_NE(other.problem.find("another version of the file"), std::string::npos) << other.problem;

  auto ds = coco::parse_coco(R"({"images": [
      {"id": 1, "file_name": "turned.jpg", "width": 40, "height": 20}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}],
    "categories": [{"id": 1, "name": "x"}]})",
                             "turned.json");
  data::ValidationOptions o;
  o.images_dir = dir.path().string();
  o.decode_images = true;
  const auto report = data::validate_coco(ds, o);
  EXPECT_EQ(report.counts.at("image_size_mismatch"), 1);
  EXPECT_TRUE(ds.images.empty());
}

// The set's image `index` replaced by its own pixels transposed, tagged to be turned back (EXIF
// orientation 6 turns clockwise; a transposed image turned clockwise is the original mirrored,
// which keeps the record's size).
void store_turned(const fs::path& dir, const data::CocoDetection& ds, size_t index) {
  const auto path = dir / "images/train" / ds.image_info(index).file_name;
  cv::Mat image = cv::imread(path.string(), cv::IMREAD_COLOR), transposed;
  cv::transpose(image, transposed);
  std::vector<uchar> bytes;
  cv::imencode(".jpg", transposed, bytes);
  testing::write_text(path, with_exif_orientation(std::string(bytes.begin(), bytes.end()), 6));
}

TEST(Loader, AnImageNotOfItsRecordedSizeIsSkippedUnderSkipAndAnErrorUnderFail) {
  testing::TempDir dir;
  auto o = synthetic_training_set(dir.path(), 4);
  const data::CocoDetection plain(o);
  store_turned(dir.path(), plain, 1);
  const auto& info = plain.image_info(1);
  ASSERT_NE(info.width, info.height) << "the test needs a non-square image";

  // Turned by its tag it has its record's size; kept as stored it has not.
  EXPECT_EQ(plain.load(1).image.cols, info.width);
  o.exif = data::ExifOrientation::kIgnore;
  auto ignoring = std::make_shared<const data::CocoDetection>(o);
  data::DataLoader loader(ignoring, in_order(4));
  loader.start_epoch(0);
  const auto batch = loader.next();
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->images.size(0), 4);
  EXPECT_EQ(loader.undecodable(), 1u);

  o.on_invalid = data::OnInvalid::kFail;
  const data::CocoDetection failing(o);
  try {
    failing.load(1);
    FAIL() << "an image of another size than its record was loaded";
  } catch (const util::CorruptInput& e) {
    const std::string expected = fmt::format("decodes to {}x{}, not the {}x{} its record gives",
                                             info.height, info.width, info.width, info.height);
    EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("set data.exif_orientation: apply"), std::string::npos)
        << e.what();
  }
}

TEST(Dataset, NoUsableImagesSaysWhy) {
  testing::TempDir dir;
  testing::write_text(dir / "one.json", R"({"images": [
      {"id": 1, "file_name": "a.jpg", "width": 0, "height": 10}], "annotations": [],
      "categories": [{"id": 1, "name": "x"}]})");
  testing::write_text(
      dir / "none.json",
      R"({"images": [], "annotations": [], "categories": [{"id": 1, "name": "x"}]})");
  for (const auto& [file, expected] :
       {std::pair{"one.json", "no usable images: of the 1 it lists, 1 is invalid"},
        std::pair{"none.json", "no usable images: the file lists none"}}) {
    data::DatasetOptions o;
    o.ann_file = (dir / file).string();
    try {
      const data::CocoDetection ds(o);
      FAIL() << file << " gave a dataset";
    } catch (const util::InputError& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
  }
}

TEST(Validate, DuplicateIdsAreInvalidRecordsAndABadImageTakesItsBoxesWithIt) {
  auto ds = coco::parse_coco(R"({"images": [
      {"id": 1, "file_name": "a.jpg", "width": 10, "height": 10},
      {"id": 2, "file_name": "b.jpg", "width": 0, "height": 10}],
    "annotations": [
      {"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]},
      {"id": 5, "image_id": 1, "category_id": 1, "bbox": [3, 3, 2, 2]},
      {"id": 6, "image_id": 2, "category_id": 1, "bbox": [1, 1, 2, 2]}],
    "categories": [{"id": 1, "name": "x"}, {"id": 1, "name": "y"}]})",
                             "dups.json");
  data::ValidationOptions o;
  o.on_invalid = data::OnInvalid::kSkip;
  const auto report = data::validate_coco(ds, o);
  EXPECT_EQ(report.counts.at("duplicate_annotation_id"), 1);
  EXPECT_EQ(report.counts.at("duplicate_category_id"), 1);
  EXPECT_EQ(report.counts.at("image_bad_size"), 1);
  // The 0-wide image's box is not a box problem of its own.
  EXPECT_EQ(report.counts.count("box_outside_image"), 0u);
  EXPECT_EQ(report.total(), 3);
  ASSERT_EQ(ds.categories.size(), 1u);
  EXPECT_EQ(ds.categories[0].name, "x");
  ASSERT_EQ(ds.annotations.size(), 1u);
  EXPECT_DOUBLE_EQ(ds.annotations[0].bbox[0], 1);
  o.on_invalid = data::OnInvalid::kFail;
  auto again = coco::parse_coco(R"({"images": [{"id": 1, "file_name": "a.jpg", "width": 10,
      "height": 10}], "annotations": [], "categories": [{"id": 3, "name": "x"},
      {"id": 3, "name": "y"}]})",
                                "dups.json");
  try {
    data::validate_coco(again, o);
    FAIL() << "duplicate category ids accepted under fail";
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("category id 3 ('y') appears more than once"),
              std::string::npos)
        << e.what();
  }
}

TEST(Synth, MinObjectSizeSetsTheSmallestObjects) {
  const auto share_at_least = [](int min_object_size, double side) {
    testing::TempDir dir;
    data::SynthOptions o;
    o.train_images = 30;
    o.val_images = 0;
    o.size = 128;
    o.min_object_size = min_object_size;
    o.out_dir = dir.path().string();
    data::write_synthetic_dataset(o);
    const auto ds = coco::read_coco((dir / "annotations/instances_train.json").string());
    int n = 0;
    for (const auto& a : ds.annotations) n += std::max(a.bbox[2], a.bbox[3]) >= side;
    return double(n) / double(ds.annotations.size());
  };
  // Objects cut by the image border or hidden behind others may still show a small box.
  EXPECT_GT(share_at_least(32, 20), 0.85);
  EXPECT_LT(share_at_least(8, 20), 0.75);
  data::SynthOptions bad;
  bad.out_dir = "unused";
  bad.min_object_size = 2;
  EXPECT_THROW(data::write_synthetic_dataset(bad), util::InputError);
}

TEST(Synth, DeterministicAndARealProblem) {
  testing::TempDir a, b;
  data::SynthOptions o;
  o.train_images = 12;
  o.val_images = 3;
  o.size = 128;
  o.seed = 5;
  o.out_dir = a.path().string();
  data::write_synthetic_dataset(o);
  o.out_dir = b.path().string();
  data::write_synthetic_dataset(o);
  const auto ja = coco::read_coco((a / "annotations/instances_train.json").string());
  const auto jb = coco::read_coco((b / "annotations/instances_train.json").string());
  ASSERT_EQ(ja.annotations.size(), jb.annotations.size());
  for (size_t i = 0; i < ja.annotations.size(); ++i) {
    EXPECT_EQ(ja.annotations[i].bbox, jb.annotations[i].bbox);
  }
  std::ifstream fa(a / "images/train/000001.jpg", std::ios::binary);
  std::ifstream fb(b / "images/train/000001.jpg", std::ios::binary);
  EXPECT_TRUE(
      std::equal(std::istreambuf_iterator<char>(fa), {}, std::istreambuf_iterator<char>(fb)));

  EXPECT_EQ(ja.categories.size(), 8u);
  EXPECT_EQ(ja.images.size(), 12u);
  EXPECT_GE(ja.annotations.size(), 12u * 2);
  double min_area = 1e9, max_area = 0;
  for (const auto& ann : ja.annotations) {
    min_area = std::min(min_area, ann.bbox[2] * ann.bbox[3]);
    max_area = std::max(max_area, ann.bbox[2] * ann.bbox[3]);
    const auto& im = ja.images[static_cast<size_t>(ja.image_index(ann.image_id))];
    EXPECT_GE(ann.bbox[0], 0);
    EXPECT_LE(ann.bbox[0] + ann.bbox[2], im.width);
    EXPECT_LE(ann.bbox[1] + ann.bbox[3], im.height);
    EXPECT_LE(ann.area, ann.bbox[2] * ann.bbox[3]);
  }
  EXPECT_LT(min_area, 16 * 16);  // small objects
  EXPECT_GT(max_area, 40 * 40);  // and large ones
  // Other seed, other data.
  testing::TempDir c;
  o.seed = 6;
  o.out_dir = c.path().string();
  data::write_synthetic_dataset(o);
  const auto jc = coco::read_coco((c / "annotations/instances_train.json").string());
  EXPECT_NE(jc.annotations[0].bbox, ja.annotations[0].bbox);
}

}  // namespace
}  // namespace aligndetr
