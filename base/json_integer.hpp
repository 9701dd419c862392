// Integers from JSON values that may hold anything (files from outside). nlohmann's get<int>()
// casts a floating-point value without a check, which is undefined behaviour out of range (found by
// fuzz_plan_json: "version": 2.2e26), and wraps an out-of-range integer. Header-only; works with
// any nlohmann::basic_json.
#pragma once

#include <cstdint>
#include <optional>

namespace d3 {

// The value when it is a JSON integer in [min, max], else nothing.
template <class Json>
std::optional<int64_t> json_integer(const Json& v, int64_t min, int64_t max) {
  if (!v.is_number_integer()) return std::nullopt;
  if (v.is_number_unsigned()) {
    const uint64_t u = v.template get<uint64_t>();
    if (max < 0 || u > uint64_t(max)) return std::nullopt;
    if (int64_t(u) < min) return std::nullopt;
    return int64_t(u);
  }
  const int64_t s = v.template get<int64_t>();
  if (s < min || s > max) return std::nullopt;
  return s;
}

}  // namespace d3
