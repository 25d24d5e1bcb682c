#pragma once
// Helpers for the simdjson-based readers.

#include <cstddef>
#include <functional>
#include <string>

namespace aligndetr::util {

// The JSON readers (coco/) are compiled for x86-64 AVX2 when ALIGNDETR_JSON_AVX2 is on, and an
// older CPU would die of an illegal instruction in them. This file is compiled without those
// flags, so the check itself runs anywhere.
//
// The instruction-set extensions the readers need that `has_feature` (a
// __builtin_cpu_supports-style predicate) reports missing, comma-separated; empty when all are
// there or the readers were built without AVX2.
std::string missing_json_cpu_features(const std::function<bool(const char*)>& has_feature);

// Throws InputError, naming the missing extensions and the build option, if this CPU cannot run
// the JSON readers. Cheap after the first call; every reader calls it before parsing.
void check_json_cpu_support();

// Where in a JSON text a parser stopped, as "byte N (line L)", for error messages.
std::string json_location(const char* base, size_t size, const char* at);

// Whether the bytes are well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF).
bool is_valid_utf8(const std::string& s);

// Escapes a string for inclusion between double quotes in JSON output.
std::string json_escape(const std::string& s);

}  // namespace aligndetr::util
