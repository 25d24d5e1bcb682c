#include <gtest/gtest.h>

#include "aligndetr/engine/config.h"
#include "aligndetr/util/error.h"
#include "test_support.h"

namespace aligndetr {
namespace {

using testing::TempDir;
using testing::write_text;

TEST(Config, BaseChainMergesMapsAndReplacesValues) {
  TempDir dir;
  write_text(dir / "base.yaml",
             "model:\n  width: 256\n  layers: [6, 6]\nsolver:\n  lr: 1.0e-4\n  steps: 100\n");
  write_text(dir / "mid.yaml", "_base_: base.yaml\nsolver:\n  lr: 2.0e-4\n");
  write_text(dir / "top.yaml", "_base_: [mid.yaml]\nmodel:\n  layers: [2, 2]\nname: tiny\n");
  const auto c = engine::Config::load((dir / "top.yaml").string());
  EXPECT_EQ(c.get_int("model.width"), 256);
  EXPECT_EQ(c.get_int_list("model.layers"), (std::vector<int64_t>{2, 2}));
  EXPECT_DOUBLE_EQ(c.get_double("solver.lr"), 2e-4);
  EXPECT_EQ(c.get_int("solver.steps"), 100);
  EXPECT_EQ(c.get_string("name"), "tiny");
  EXPECT_FALSE(c.has("_base_"));
}

TEST(Config, OverridesChangeExistingKeysOnly) {
  auto c = engine::Config::parse("solver:\n  lr: 1.0e-4\n  milestones: [10]\nuse_dn: true\n");
  c.set("solver.lr=2e-4");
  c.set("solver.milestones=[5, 8]");
  c.set("use_dn=false");
  EXPECT_DOUBLE_EQ(c.get_double("solver.lr"), 2e-4);
  EXPECT_EQ(c.get_int_list("solver.milestones"), (std::vector<int64_t>{5, 8}));
  EXPECT_FALSE(c.get_bool("use_dn"));
  try {
    c.set("solver.lrr=1");
    FAIL();
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown config key 'solver.lrr'"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(c.set("solver.lr"), util::InputError);
}

TEST(Config, ErrorsNameFileAndKey) {
  TempDir dir;
  write_text(dir / "c.yaml", "model:\n  width: wide\n");
  const auto c = engine::Config::load((dir / "c.yaml").string());
  try {
    c.get_int("model.width");
    FAIL();
  } catch (const util::InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("c.yaml"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'model.width' must be an integer, got 'wide'"), std::string::npos) << msg;
  }
  try {
    c.get_int("model.depth");
    FAIL();
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("missing key 'model.depth'"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(c.get_int("model.depth", 50), 50);
}

TEST(Config, MissingFileBadYamlAndCycles) {
  TempDir dir;
  EXPECT_THROW(engine::Config::load((dir / "nope.yaml").string()), util::InputError);
  write_text(dir / "bad.yaml", "a: [1, 2\n");
  try {
    engine::Config::load((dir / "bad.yaml").string());
    FAIL();
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("invalid YAML"), std::string::npos) << e.what();
  }
  write_text(dir / "a.yaml", "_base_: b.yaml\nx: 1\n");
  write_text(dir / "b.yaml", "_base_: a.yaml\ny: 1\n");
  try {
    engine::Config::load((dir / "a.yaml").string());
    FAIL();
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("loops back"), std::string::npos) << e.what();
  }
}

// Found by fuzzing (fuzz/fuzz_config_reader.cpp): each was an escaped YAML::BadConversion.
TEST(Config, KeysThatCannotBeAddressedAreInputErrorsNamingTheLine) {
  const auto expect_error = [](const std::string& yaml, const std::string& expected) {
    try {
      (void)engine::Config::parse(yaml, "bad.yaml");
      FAIL() << "accepted: " << yaml;
    } catch (const util::InputError& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
  };
  expect_error("solver:\n  [a, b]: 1\n", "line 2: a key under 'solver' is a list or a map");
  expect_error("solver:\n  {a: 1}: 1\n", "a key under 'solver' is a list or a map");
  expect_error("solver:\n  lr.x: 1\n", "line 2: key 'lr.x' under 'solver' is empty or holds a '.'");
  expect_error("- 1\n- 2\n", "'bad.yaml' is not a YAML map");
  std::string deep = "a: ";
  for (int i = 0; i < 100; ++i) deep += "[";
  expect_error(deep + std::string(100, ']') + "\n", "nested too deeply or too large");
  // Aliases of aliases: 2^30 leaves from a few lines.
  std::string bomb = "a0: &a0 [x, x]\n";
  for (int i = 1; i <= 30; ++i) {
    bomb += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [*a" + std::to_string(i - 1) +
            ", *a" + std::to_string(i - 1) + "]\n";
  }
  expect_error(bomb, "nested too deeply or too large");

  auto c = engine::Config::parse("solver:\n  lr: 1\n");
  try {
    c.set("solver.lr={[1]: 2}");
    FAIL() << "an override with a list for a key was accepted";
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("is a list or a map"), std::string::npos) << e.what();
  }

  TempDir dir;
  write_text(dir / "top.yaml", "_base_: {a: 1}\nx: 1\n");
  try {
    (void)engine::Config::load((dir / "top.yaml").string());
    FAIL() << "a map for _base_ was accepted";
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("`_base_` must be a path or a list of paths"),
              std::string::npos)
        << e.what();
  }
}

TEST(Config, UnusedKeysAreReported) {
  const auto c = engine::Config::parse("model:\n  width: 1\n  widht: 2\nsolver:\n  lr: 1\n");
  c.get_int("model.width");
  EXPECT_EQ(c.unused_keys("model"), std::vector<std::string>{"model.widht"});
  try {
    c.require_all_used("model");
    FAIL();
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown key(s) model.widht"), std::string::npos)
        << e.what();
  }
}

TEST(Config, DumpRoundTrips) {
  auto c = engine::Config::parse("a:\n  b: 3\n  c: [1, 2]\n");
  c.set("a.b=4");
  const auto back = engine::Config::parse(c.dump());
  EXPECT_EQ(back.get_int("a.b"), 4);
  EXPECT_EQ(back.get_int_list("a.c"), (std::vector<int64_t>{1, 2}));
}

TEST(Config, ListsOfMapsAreAddressedByIndex) {
  auto c = engine::Config::parse(
      "model:\n  init_weights:\n    - {file: a.pt, prefix: backbone.}\n    - {file: b.pt, fille: "
      "x}\n",
      "lists");
  EXPECT_EQ(c.list_size("model.init_weights"), 2u);
  EXPECT_EQ(c.list_size("model.absent"), 0u);
  EXPECT_EQ(c.get_string("model.init_weights.0.file"), "a.pt");
  EXPECT_EQ(c.get_string("model.init_weights.0.prefix"), "backbone.");
  EXPECT_EQ(c.get_string("model.init_weights.1.file"), "b.pt");
  EXPECT_FALSE(c.has("model.init_weights.2.file"));
  // A typo inside an element is reported like any other unknown key.
  EXPECT_EQ(c.unused_keys("model"), (std::vector<std::string>{"model.init_weights.1.fille"}));
  EXPECT_THROW(c.list_size("model.init_weights.0.file"), util::InputError);
  // Records the engine adds: a new element at the end, a new key in one.
  c.assign("model.init_weights.2.file", "c.pt");
  c.assign("model.init_weights.0.sha256", "abc");
  EXPECT_EQ(c.list_size("model.init_weights"), 3u);
  EXPECT_EQ(c.get_string("model.init_weights.2.file"), "c.pt");
  EXPECT_EQ(c.get_string("model.init_weights.0.sha256"), "abc");
  // An override reaches list elements by number and leaves the list a list.
  c.set("model.init_weights.1.file=e.pt");
  EXPECT_EQ(c.get_string("model.init_weights.1.file"), "e.pt");
  EXPECT_EQ(c.list_size("model.init_weights"), 3u);
  EXPECT_THROW(c.set("model.init_weights.99999999999999999999.file=x"), util::InputError);
  // `init_weights:` with nothing is an empty list, and a known key.
  auto none = engine::Config::parse("model:\n  init_weights:\n", "none");
  EXPECT_EQ(none.list_size("model.init_weights"), 0u);
  EXPECT_TRUE(none.unused_keys("model").empty());
  c.remove("model.init_weights");
  EXPECT_EQ(c.list_size("model.init_weights"), 0u);
  c.assign("model.init_weights.0.file", "d.pt");
  EXPECT_EQ(engine::Config::parse(c.dump()).get_string("model.init_weights.0.file"), "d.pt");
}

}  // namespace
}  // namespace aligndetr
