// Deployment plans (plan/plan.hpp, JSON).
#include "fuzz/fuzz_target.hpp"
#include "plan/plan.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)d3::parse_plan_json(fuzz_text(data, size));
  return 0;
}
