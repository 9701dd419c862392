// What every fuzz target does with an input: hand the bytes to one parser that reads bytes from
// outside the process, and let it fail as it may. A parser must return an error for bad bytes; a
// crash, a sanitizer report, a leak or a hang is the finding. Each target is one file of this
// folder defining D3_FUZZ_PARSE(bytes, size).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

// The input as text (the JSON parsers take strings).
inline std::string fuzz_text(const uint8_t* data, size_t size) { return std::string(reinterpret_cast<const char*>(data), size); }
