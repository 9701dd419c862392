// A child process spoken to line by line over pipes (benchmarks drive reference engines this way,
// so runs of both engines can alternate inside one measurement).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/status.hpp"

namespace d3 {

class child_process {
 public:
  // Starts argv[0] (searched in PATH) with its stdin and stdout connected to this object; its
  // stderr is inherited.
  static result<child_process> start(const std::vector<std::string>& argv);
  child_process(child_process&& other) noexcept;
  child_process& operator=(child_process&&) = delete;
  ~child_process();  // closes the pipes and reaps (kills after a grace period) the child

  status write_line(const std::string& line);
  // The next line without its newline; an error when the child closes stdout or after
  // `timeout_ms` without a full line (a hung child never hangs the caller).
  result<std::string> read_line(int timeout_ms);

 private:
  child_process() = default;
  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
  std::string pending_;
  std::string name_;
};

}  // namespace d3
