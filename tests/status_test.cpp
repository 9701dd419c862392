// Errors as values (base/status.hpp): results hold a value or an error, and the helper macros
// return errors from the enclosing function.
#define BOOST_TEST_MODULE status
#include <boost/test/unit_test.hpp>

#include <memory>

#include "base/status.hpp"

using namespace d3;

namespace {

result<std::unique_ptr<int>> make(bool ok) {
  if (!ok) return status::error("cannot make it");
  return std::make_unique<int>(42);
}

result<int> twice(bool ok) {
  D3_ASSIGN_OR_RETURN(std::unique_ptr<int> value, make(ok));  // moves a move-only value out
  return *value * 2;
}

status both(bool first, bool second) {
  D3_RETURN_IF_ERROR(twice(first).error());
  D3_RETURN_IF_ERROR(twice(second).error());
  return status::ok();
}

}  // namespace

BOOST_AUTO_TEST_CASE(assign_or_return_passes_values_and_errors) {
  auto good = twice(true);
  BOOST_REQUIRE(good.is_ok());
  BOOST_TEST(good.value() == 84);
  auto bad = twice(false);
  BOOST_TEST(!bad.is_ok());
  BOOST_TEST(bad.message() == "cannot make it");
  BOOST_TEST(both(true, true).is_ok());
  BOOST_TEST(both(true, false).message() == "cannot make it");
}
