// The CPU check that guards the AVX2-compiled JSON readers: it must name what is missing before
// any AVX2 instruction runs, instead of letting the program die of an illegal instruction.

#include <gtest/gtest.h>

#include <string>

#include "aligndetr/util/json.h"

namespace aligndetr {
namespace {

TEST(JsonCpuCheck, NamesEveryMissingExtension) {
  const auto lacking = [](const std::string& absent) {
    return util::missing_json_cpu_features(
        [absent](const char* feature) { return absent != "all" && absent != feature; });
  };
#ifdef ALIGNDETR_JSON_AVX2
  EXPECT_EQ(lacking("all"), "avx2, bmi, bmi2, pclmul, lzcnt, popcnt");
  EXPECT_EQ(lacking("avx2"), "avx2");
  EXPECT_EQ(lacking("lzcnt"), "lzcnt");
#else
  // Readers built without AVX2 run on any CPU.
  EXPECT_EQ(lacking("all"), "");
#endif
  EXPECT_EQ(lacking("sse2"), "");
}

TEST(JsonCpuCheck, ThisCpuRunsTheReaders) {
  // The test binary itself runs the readers elsewhere; the check must agree that it can.
  EXPECT_NO_THROW(util::check_json_cpu_support());
}

}  // namespace
}  // namespace aligndetr
