// Reading a whole text file (configs, plans, testbeds, traces) as a value.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

#include "base/status.hpp"

namespace d3 {

// The file's contents; the error is "cannot open <what> '<path>'".
inline result<std::string> read_text_file(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  if (!in) return status::error("cannot open " + what + " '" + path + "'");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace d3
