#pragma once
// A full libjpeg decode that reports what OpenCV's decoder keeps to itself: libjpeg's warnings
// ("Corrupt JPEG data: premature end of data segment", "Premature end of JPEG file", ...), under
// which OpenCV still returns an image, partly grey or shifted.

#include <string>

namespace aligndetr::data {

// Decodes a JPEG held in `bytes`. Returns an empty string when libjpeg reports nothing, else its
// first error or warning message and how many warnings it gave.
std::string jpeg_decoder_problem(const std::string& bytes);

}  // namespace aligndetr::data
