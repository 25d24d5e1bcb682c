#pragma once
// Helpers for the simdjson-based readers.

#include <string>

namespace aligndetr {

// Throws InputError if this CPU cannot run the JSON kernels the build was compiled for
// (see ALIGNDETR_JSON_AVX2 in CMakeLists.txt). Cheap after the first call.
void check_json_cpu_support();

// Escapes a string for inclusion between double quotes in JSON output.
std::string json_escape(const std::string& s);

}  // namespace aligndetr
