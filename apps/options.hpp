// The apps' command-line options, read one by one: `--name VALUE` or `--name=VALUE`. A problem ends
// the parse with an error naming the option and what was expected; parse_options turns it into a
// value (the option_error thrown by the reader never leaves parse_options).
#pragma once

#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "base/status.hpp"

namespace d3 {

struct option_error {
  std::string message;
};

class option_reader {
 public:
  // Reads argv[first..argc); `help_hint` ends the "needs a value" and "unknown option" errors,
  // e.g. "see d3-bench grid --help".
  option_reader(int argc, char** argv, int first, std::string help_hint);

  // Advances to the next option; false after the last one.
  bool next();
  const std::string& name() const { return name_; }
  bool is(const char* a, const char* b = nullptr) const { return name_ == a || (b && name_ == b); }

  // The current option's value: after '=', else the next argument.
  std::string value();
  // An integer in [low, high]; a number in [low, high]; comma-separated positive numbers.
  long integer(long low, long high);
  double number(double low, double high);
  std::vector<double> positive_numbers();
  // A value that must be one of `choices`.
  std::string choice(const std::vector<std::string>& choices);

  [[noreturn]] void fail(const std::string& message) const { throw option_error{message}; }
  [[noreturn]] void unknown() const;

 private:
  int argc_;
  char** argv_;
  int next_;
  std::string help_hint_, name_, inline_value_;
  bool has_inline_ = false;
};

// Runs `parse` (a callable returning Options that reads with an option_reader and may call
// fail()): its options, or the error.
template <class Options, class Parse>
result<Options> parse_options(Parse parse) {
  try {
    return parse();
  } catch (const option_error& e) {
    return status::error(e.message);
  }
}

// After parsing: the exit code to return at once (the error printed as "<app>: <message>", 2; or
// 0 when --help printed the usage), or nothing to go on.
template <class Options>
std::optional<int> stop_after_parse(const result<Options>& parsed, bool help, const std::string& app) {
  if (!parsed) {
    std::cerr << app << ": " << parsed.message() << "\n";
    return 2;
  }
  if (help) return 0;
  return std::nullopt;
}

}  // namespace d3
