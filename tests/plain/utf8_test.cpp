// util::is_valid_utf8 on hand-made byte strings: what results files may carry as JSON strings.

#include <gtest/gtest.h>

#include <string>

#include "aligndetr/util/json.h"

namespace aligndetr::util {
namespace {

TEST(Utf8, WellFormedTextIsAccepted) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("street_01.jpg"));
  EXPECT_TRUE(
      is_valid_utf8("stra\xc3\x9f"
                    "e.jpg"));                                 // U+00DF, two bytes
  EXPECT_TRUE(is_valid_utf8("\xe6\x9d\xb1\xe4\xba\xac.png"));  // two CJK characters
  EXPECT_TRUE(is_valid_utf8("\xf0\x9f\x93\xb7.png"));          // U+1F4F7, four bytes
  EXPECT_TRUE(is_valid_utf8("\xf4\x8f\xbf\xbf"));              // U+10FFFF, the last
}

TEST(Utf8, MalformedBytesAreRejected) {
  EXPECT_FALSE(is_valid_utf8("caf\xe9.jpg"));       // Latin-1 e-acute
  EXPECT_FALSE(is_valid_utf8("\xc3"));              // a lead byte at the end
  EXPECT_FALSE(is_valid_utf8("\xe6\x9d"));          // a truncated three-byte form
  EXPECT_FALSE(is_valid_utf8("\x80x"));             // a continuation byte first
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));      // a surrogate (U+D800)
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xff"));
  EXPECT_FALSE(
      is_valid_utf8("ok\xe2\x82"
                    "x"));  // a bad continuation byte
}

}  // namespace
}  // namespace aligndetr::util
