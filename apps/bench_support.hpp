// What the d3-bench subcommands share: how a benchmark stops on bad input or a failed engine
// (bench_failure, caught by d3-bench's main, which prints it and returns its code) and medians.
#pragma once

#include <string>
#include <vector>

#include "apps/app_support.hpp"
#include "apps/options.hpp"

namespace d3 {

constexpr int bench_exit_failed = 1;
constexpr int bench_exit_bad_input = 2;

struct bench_failure {
  int code;
  std::string message;
};

// Ends the benchmark with `code`; the stack unwinds (child processes and files close as usual).
[[noreturn]] inline void bench_fail(int code, const std::string& message) { throw bench_failure{code, message}; }

// Reads argv[2..) option by option with `read(option_reader&)`; a problem ends the benchmark as
// bad input, naming the option (`hint` ends the message, e.g. "see d3-bench tiling --help").
template <class Read>
void read_bench_options(int argc, char** argv, const std::string& hint, Read read) {
  try {
    option_reader in(argc, argv, 2, hint);
    while (in.next()) read(in);
  } catch (const option_error& e) {
    bench_fail(bench_exit_bad_input, e.message);
  }
}

inline double median(std::vector<double> v) { return percentile(std::move(v), 0.5); }

// d3-bench engine, tiling and plan (apps/bench_engine.cpp, bench_tiling.cpp, bench_plan.cpp);
// argv[1] is the subcommand. Return the exit code or throw bench_failure.
int bench_engine(int argc, char** argv);
int bench_tiling(int argc, char** argv);
int bench_plan(int argc, char** argv);
int bench_codecs(int argc, char** argv);  // apps/bench_codecs.cpp

}  // namespace d3
