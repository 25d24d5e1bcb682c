// metrics.jsonl on a disk that fills up and frees again (/dev/full stands in for the full disk):
// the failed lines are held and written, in order, once writing works again; none of the lines
// already written is lost.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "aligndetr/engine/metrics_writer.h"
#include "test_support.h"

namespace aligndetr {
namespace {

namespace fs = std::filesystem;

TEST(MetricsWriter, AFullDiskHoldsLinesAndLosesNone) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full on this system";
  testing::TempDir dir;
  const auto real = dir / "real.jsonl";
  const auto path = dir / "metrics.jsonl";
  testing::write_text(real, "");
  fs::create_symlink(real, path);
  engine::MetricsWriter writer(path.string());
  EXPECT_TRUE(writer.write("{\"iter\": 1}"));
  // The disk fills: two lines fail and are held.
  fs::remove(path);
  fs::create_symlink("/dev/full", path);
  EXPECT_FALSE(writer.write("{\"iter\": 2}"));
  EXPECT_FALSE(writer.write("{\"iter\": 3}"));
  // Space again: the held lines go first, then the new one.
  fs::remove(path);
  fs::create_symlink(real, path);
  EXPECT_TRUE(writer.write("{\"iter\": 4}"));
  std::ifstream in(real);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), "{\"iter\": 1}\n{\"iter\": 2}\n{\"iter\": 3}\n{\"iter\": 4}\n");
}

}  // namespace
}  // namespace aligndetr
