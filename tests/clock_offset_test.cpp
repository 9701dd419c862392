// base/clock_offset.hpp: a peer's clock offset from pings whose answers can wait in the mailbox.
#define BOOST_TEST_MODULE clock_offset
#include <boost/test/unit_test.hpp>

#include "base/clock_offset.hpp"

#include <cmath>

using namespace d3;

namespace {

// A ping sent at `sent`, delayed `out` ms on the way there and `back` on the way back (mailbox
// waits included), to a peer whose clock reads `true_offset` ms ahead.
void ping(clock_offset_estimator& e, double sent, double out, double back, double true_offset) {
  const double answered = sent + out;
  e.add(sent, out + back, answered + true_offset, answered + back);
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_best_round_trip_sets_the_offset) {
  clock_offset_estimator e;
  BOOST_TEST(e.empty());
  BOOST_TEST(e.offset(0) == 0.0);
  ping(e, 0, 0.1, 0.1, 5.0);   // prompt: error 0
  ping(e, 250, 0.1, 46, 5.0);  // the answer waited 46 ms in the mailbox: error -23 ms
  BOOST_TEST(e.offset(300) == 5.0, boost::test_tools::tolerance(1e-9));
}

// The failure the window fixes: every recent answer waited, the prompt one is 10 s old.
BOOST_AUTO_TEST_CASE(a_prompt_answer_outlives_a_run_of_late_ones) {
  clock_offset_estimator e;
  ping(e, 0, 0.2, 0.2, -3.0);
  for (int i = 1; i <= 40; ++i) ping(e, 250.0 * i, 0.2, 40 + i % 7, -3.0);
  // The old sample's bound: 0.2 + 10 s * 1e-4 = 1.2 ms, under every late one's 20+ ms.
  BOOST_TEST(e.offset(10000) == -3.0, boost::test_tools::tolerance(1e-9));
  // Beyond the window it is gone: the best late sample (error -20 ms) is all that is left.
  clock_offset_estimator small(16);
  ping(small, 0, 0.2, 0.2, -3.0);
  for (int i = 1; i <= 40; ++i) ping(small, 250.0 * i, 0.2, 40 + i % 7, -3.0);
  BOOST_TEST(small.offset(10000) < -20.0);
}

// Drift: a newer sample with a slightly longer round trip wins over a much older one.
BOOST_AUTO_TEST_CASE(an_old_sample_yields_to_a_fresh_one_as_the_clocks_drift) {
  clock_offset_estimator e;
  ping(e, 0, 0.1, 0.1, 1.0);            // bound at t: 0.1 + t * 1e-4
  ping(e, 50000, 0.3, 0.3, 1.5);        // bound: 0.3 + (t - 50000) * 1e-4
  BOOST_TEST(e.offset(50001) == 1.5, boost::test_tools::tolerance(1e-9));  // 5.1 against 0.3
  clock_offset_estimator f;
  ping(f, 0, 0.1, 0.1, 1.0);
  ping(f, 1000, 0.3, 0.3, 1.5);
  BOOST_TEST(f.offset(1001) == 1.0, boost::test_tools::tolerance(1e-9));  // 0.2 against 0.3
}

// The bound says how far the offset may be off: half the best round trip (plus drift), infinite
// before any pong. Every late answer (46 ms round trips) leaves the true offset 23 ms away.
BOOST_AUTO_TEST_CASE(the_error_bound_covers_the_true_offset) {
  clock_offset_estimator e;
  BOOST_TEST(std::isinf(e.error_bound(0)));
  for (int i = 0; i < 10; ++i) ping(e, 250.0 * i, 0.1, 46, 2.0);
  const double now = 2500;
  BOOST_TEST(e.error_bound(now) >= std::abs(e.offset(now) - 2.0));
  BOOST_TEST(e.error_bound(now) > 20.0);
  ping(e, 2600, 0.1, 0.1, 2.0);
  BOOST_TEST(e.error_bound(2700) < 0.2);
  BOOST_TEST(e.offset(2700) == 2.0, boost::test_tools::tolerance(1e-9));
}

// One kernel, one time namespace: the same clock, whatever the pongs say.
BOOST_AUTO_TEST_CASE(the_same_clock_has_no_offset_and_no_error) {
  clock_offset_estimator e;
  e.set_same_clock();
  BOOST_TEST(!e.empty());
  BOOST_TEST(e.error_bound(0) == 0.0);
  ping(e, 0, 0.1, 46, 0.0);  // a late pong: on its own it would read -23 ms
  BOOST_TEST(e.offset(100) == 0.0);
  BOOST_TEST(e.error_bound(100) == 0.0);
}
