#include "apps/options.hpp"

#include <cmath>
#include <cstdlib>

#include "apps/app_support.hpp"

namespace d3 {

option_reader::option_reader(int argc, char** argv, int first, std::string help_hint)
    : argc_(argc), argv_(argv), next_(first), help_hint_(std::move(help_hint)) {}

bool option_reader::next() {
  if (next_ >= argc_) return false;
  name_ = argv_[next_++];
  has_inline_ = false;
  const size_t eq = name_.find('=');
  if (name_.rfind("--", 0) == 0 && eq != std::string::npos) {
    inline_value_ = name_.substr(eq + 1);
    name_ = name_.substr(0, eq);
    has_inline_ = true;
  }
  return true;
}

std::string option_reader::value() {
  if (has_inline_) return inline_value_;
  if (next_ >= argc_) fail(name_ + " needs a value (" + help_hint_ + ")");
  return argv_[next_++];
}

long option_reader::integer(long low, long high) {
  auto v = parse_integer(name_, value(), low, high);
  if (!v) fail(v.message());
  return v.value();
}

double option_reader::number(double low, double high) {
  const std::string text = value();
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !std::isfinite(v) || v < low || v > high)
    fail(name_ + " expects a number in [" + format("%g", low) + ", " + format("%g", high) + "], got '" + text + "'");
  return v;
}

std::vector<double> option_reader::positive_numbers() {
  const std::string text = value();
  std::vector<double> out;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    if (item.empty() || *end != '\0' || !(v > 0) || !std::isfinite(v))
      fail(name_ + " expects comma-separated positive numbers, got '" + item + "'");
    out.push_back(v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::string option_reader::choice(const std::vector<std::string>& choices) {
  const std::string v = value();
  for (const std::string& c : choices)
    if (v == c) return v;
  fail(name_ + " expects " + join(choices, " or ") + ", got '" + v + "'");
}

void option_reader::unknown() const { fail("unknown option '" + name_ + "' (" + help_hint_ + ")"); }

}  // namespace d3
