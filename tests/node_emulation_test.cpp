// A node process's emulation state (emulation/node_emulation.hpp): the (emul, JSON) settings the
// app sends, applied to the node's compute clock and its per-destination link clocks.
#define BOOST_TEST_MODULE node_emulation
#include <boost/test/unit_test.hpp>

#include "base/send_backlog.hpp"
#include "emulation/node_emulation.hpp"

using namespace d3;

BOOST_AUTO_TEST_CASE(virtual_settings_shape_links_per_destination) {
  node_emulation e;
  e.set_identity("edge1", 0.5);
  BOOST_REQUIRE(e.configure(R"({"clock": "virtual", "links": {"cloud": {"mbit_per_s": 8, "latency_ms": 20},
                                                              "edge2": {"mbit_per_s": 0, "latency_ms": 0}}})")
                    .is_ok());
  BOOST_TEST((e.mode() == clock_mode::virtual_time));
  // 8 Mbit/s: 1000 bytes take 1 ms to transmit, then 20 ms of latency; the next one queues.
  BOOST_TEST(e.send("cloud", 100.0, 1000) == 121.0);
  BOOST_TEST(e.send("cloud", 100.0, 1000) == 122.0);
  BOOST_TEST(e.send("edge2", 100.0, 1 << 20) == 100.0);  // unshaped
  BOOST_TEST(e.send("edge1", 100.0, 1 << 20) == 100.0);  // its own node
  BOOST_TEST(e.is_remote("cloud"));
  BOOST_TEST(!e.is_remote("edge1"));
  // Compute at speed 0.5: 4 ms of CPU take 8 ms; work queues behind the previous one.
  BOOST_TEST(e.compute(10.0, 4.0) == 18.0);
  BOOST_TEST(e.compute(12.0, 1.0) == 20.0);
}

BOOST_AUTO_TEST_CASE(keep_clocks_changes_links_but_not_the_time_line) {
  node_emulation e;
  e.set_identity("device", 1.0);
  BOOST_REQUIRE(e.configure(R"({"clock": "virtual", "links": {"edge1": {"mbit_per_s": 8, "latency_ms": 5}}})").is_ok());
  BOOST_TEST(e.compute(0.0, 10.0) == 10.0);
  BOOST_REQUIRE(e.configure(R"({"clock": "virtual", "keep_clocks": true, "speed": 0.5,
                                "links": {"edge1": {"mbit_per_s": 0.8, "latency_ms": 5}}})")
                    .is_ok());
  BOOST_TEST(e.speed() == 0.5);
  BOOST_TEST(e.send("edge1", 0.0, 1000) == 15.0);  // the new 0.8 Mbit/s link: 10 ms + 5 ms
  // A full configuration resets the clocks.
  BOOST_REQUIRE(e.configure(R"({"clock": "wall"})").is_ok());
  BOOST_TEST((e.mode() == clock_mode::wall));
  BOOST_TEST(e.send("edge1", 3.0, 1000) == 3.0);  // no links any more: unshaped
}

BOOST_AUTO_TEST_CASE(bad_settings_are_refused_naming_the_problem) {
  node_emulation e;
  auto expect = [&](const std::string& text, const std::string& needle) {
    status s = e.configure(text);
    BOOST_TEST(!s.is_ok(), text);
    BOOST_TEST(s.message().find(needle) != std::string::npos, s.message() + " lacks " + needle);
  };
  expect("{", "not JSON");
  expect(R"({"clock": "sundial"})", "unknown clock 'sundial'");
  expect(R"({"clock": "virtual", "links": {"cloud": {"mbit_per_s": -1, "latency_ms": 0}}})", "link to 'cloud'");
  expect(R"({"clock": "virtual", "links": {"cloud": {"mbit_per_s": "fast"}}})", "bad emulation settings");
}

// base/send_backlog.hpp: what was sent to a peer drains at the floor rate (plus a quarter for
// framing), sends queue behind each other, and once every announced send is known to have
// crossed (arrived) the backlog ends then, not when the floor rate would have drained it.
BOOST_AUTO_TEST_CASE(send_backlog_drains_at_the_floor_or_when_every_send_arrived) {
  using namespace std::chrono;
  send_backlog b;
  b.set_floor(1.0);  // 1 Mbit/s: 100 kB take 0.8 s, 1 s with the quarter
  const auto t0 = steady_clock::now();
  BOOST_TEST((b.drained_by("cloud") == steady_clock::time_point{}));
  b.sent("cloud", 100000, t0);
  BOOST_TEST(duration_cast<milliseconds>(b.drained_by("cloud") - t0).count() == 1000);
  b.sent("cloud", 100000, t0 + milliseconds(500));  // queues behind the first
  BOOST_TEST(duration_cast<milliseconds>(b.drained_by("cloud") - t0).count() == 2000);
  BOOST_TEST((b.drained_by("edge1") == steady_clock::time_point{}));  // per peer
  b.arrived("cloud", t0 + milliseconds(300));  // one of two: the floor's estimate stands
  BOOST_TEST(duration_cast<milliseconds>(b.drained_by("cloud") - t0).count() == 2000);
  b.arrived("cloud", t0 + milliseconds(400));  // both crossed
  BOOST_TEST(duration_cast<milliseconds>(b.drained_by("cloud") - t0).count() == 400);
  b.arrived("cloud", t0 + milliseconds(450));  // more arrivals than sends change nothing
  BOOST_TEST(duration_cast<milliseconds>(b.drained_by("cloud") - t0).count() == 400);
  b.set_floor(0);  // keeps 1 Mbit/s
  b.sent("cloud", 100000, t0 + milliseconds(3000));
  BOOST_TEST(duration_cast<milliseconds>(b.drained_by("cloud") - t0).count() == 4000);
}

// A pong to a ping handed to the connection after some sends proves those crossed: the backlog is
// then only what was sent after the ping, draining from the pong. A session that sends faster
// than the floor drains keeps a bounded backlog (before, drained_by ran ahead by 1 s per send).
BOOST_AUTO_TEST_CASE(send_backlog_forgets_what_an_answered_ping_proves_crossed) {
  using namespace std::chrono;
  send_backlog b;
  b.set_floor(1.0);  // 100 kB: 1 s each
  const auto t0 = steady_clock::now();
  auto at = [&](int ms) { return t0 + milliseconds(ms); };
  auto ahead = [&](const steady_clock::time_point& t) { return duration_cast<milliseconds>(b.drained_by("edge1") - t).count(); };
  // 100 sends, one every 100 ms, a ping every 200 ms answered 20 ms later.
  for (int k = 0; k < 100; ++k) {
    b.sent("edge1", 100000, at(100 * k));
    if (k % 2 == 1) b.crossed_before("edge1", at(100 * k + 50), at(100 * k + 70));
  }
  // The last ping (at 9950 ms, answered at 9970) proved all 100 crossed.
  BOOST_TEST(ahead(at(9970)) == 0);
  // Sends after a ping stay: two after the last answered ping drain from its answer.
  b.sent("edge1", 100000, at(10000));
  b.sent("edge1", 100000, at(10100));
  b.crossed_before("edge1", at(9990), at(10150));  // a ping older than both: nothing crossed
  BOOST_TEST(ahead(at(10000)) == 2000);
  b.crossed_before("edge1", at(10050), at(10200));  // after the first only
  BOOST_TEST(ahead(at(10200)) == 1000);
  // Another peer's pong says nothing about this one.
  b.crossed_before("cloud", at(20000), at(20000));
  BOOST_TEST(ahead(at(10200)) == 1000);
}
