#pragma once
// Helpers for the simdjson-based readers.

#include <cstddef>
#include <string>

namespace aligndetr {

// Throws InputError if this CPU cannot run the JSON kernels the build was compiled for
// (see ALIGNDETR_JSON_AVX2 in CMakeLists.txt). Cheap after the first call.
void check_json_cpu_support();

// Where in a JSON text a parser stopped, as "byte N (line L)", for error messages.
std::string json_location(const char* base, size_t size, const char* at);

// Escapes a string for inclusion between double quotes in JSON output.
std::string json_escape(const std::string& s);

}  // namespace aligndetr
