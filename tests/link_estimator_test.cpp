#define BOOST_TEST_MODULE link_estimator
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "kernels/model_zoo.hpp"
#include "planner/link_estimator.hpp"

using namespace d3;

namespace {

// A request's transfers on the device->edge link of resnet18 plans (activation cut) plus a light
// probe, with +-3% multiplicative noise from a seeded generator.
double noisy(double ms, seeded_generator& gen) { return ms * (1.0 + gen.uniform(-0.03f, 0.03f)); }

}  // namespace

BOOST_AUTO_TEST_CASE(ten_requests_estimate_an_emulated_link_within_ten_percent) {
  for (const std::string uplink : {"CAT1", "3G", "4G", "WiFi"}) {
    const link_profile truth = testbed::with_uplink(uplink)->device_edge;
    link_estimator estimator;
    seeded_generator gen(7);
    for (int request = 0; request < 10; ++request) {
      const size_t bytes = request % 3 == 0 ? 1024 : 802816;  // every third: an idle-time probe
      estimator.observe(bytes, noisy(transfer_ms(truth, bytes), gen));
    }
    BOOST_REQUIRE(estimator.ready());
    const link_profile e = estimator.estimate();
    BOOST_TEST(std::fabs(e.bandwidth_mbit_per_s / truth.bandwidth_mbit_per_s - 1) <= 0.10,
               uplink << ": bandwidth " << e.bandwidth_mbit_per_s << " vs " << truth.bandwidth_mbit_per_s);
    // Latency within 10% where it is measurable: on CAT1 and 3G even the 1 KB probe's transmission
    // (63 ms, 7.4 ms) and its 3% noise dwarf the 5 ms latency.
    if (uplink == "WiFi" || uplink == "4G")
      BOOST_TEST(std::fabs(e.latency_ms - truth.latency_ms) <= 0.10 * truth.latency_ms,
                 uplink << ": latency " << e.latency_ms << " vs " << truth.latency_ms);
  }
}

BOOST_AUTO_TEST_CASE(the_estimate_follows_a_link_that_changes) {
  const link_profile wifi{18.88, 5}, slow{1.1, 5};
  link_estimator estimator(8);
  for (int i = 0; i < 8; ++i) estimator.observe(i % 2 ? 802816 : 4096, transfer_ms(wifi, i % 2 ? 802816 : 4096));
  BOOST_TEST(std::fabs(estimator.estimate().bandwidth_mbit_per_s - 18.88) < 0.01);
  for (int i = 0; i < 8; ++i) estimator.observe(i % 2 ? 802816 : 4096, transfer_ms(slow, i % 2 ? 802816 : 4096));
  BOOST_TEST(std::fabs(estimator.estimate().bandwidth_mbit_per_s - 1.1) < 0.01);
  BOOST_TEST(std::fabs(estimator.estimate().latency_ms - 5.0) < 0.01);
}

BOOST_AUTO_TEST_CASE(one_size_cannot_separate_latency_from_bandwidth) {
  link_estimator estimator;
  for (int i = 0; i < 5; ++i) estimator.observe(802816, 345.0);
  BOOST_TEST(!estimator.ready());
  estimator.observe(1024, 5.5);
  BOOST_TEST(estimator.ready());
}
