// The built-in models, loaded for a test (a failure to load ends the test case).
#pragma once

#include <boost/test/unit_test.hpp>

#include <string>

#include "kernels/model_zoo.hpp"

namespace d3::testing {

inline graph load_model(const std::string& name) {
  auto g = builtin_model(name);
  BOOST_REQUIRE_MESSAGE(g.is_ok(), g.message());
  return std::move(g.value());
}

}  // namespace d3::testing
