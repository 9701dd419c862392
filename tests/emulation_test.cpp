#define BOOST_TEST_MODULE emulation
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include "emulation/cluster_file.hpp"
#include "emulation/emulation.hpp"
#include "emulation/emulation_trace.hpp"
#include "emulation/node_emulation.hpp"
#include "emulation/testbed_file.hpp"

using namespace d3;

BOOST_AUTO_TEST_CASE(transfer_time_is_latency_plus_bytes_over_bandwidth) {
  // B Mbit/s, L ms, N bytes: L + 8N/B (B in bit/ms = 1000 * Mbit/s).
  const struct {
    double mbit, latency;
    size_t bytes;
  } cases[] = {{18.88, 5, 802816}, {0.13, 5, 602112}, {100, 20, 4000}, {1000, 0.2, 12845056}, {5.85, 5, 1}};
  for (const auto& c : cases) {
    const double expected = c.latency + 8.0 * double(c.bytes) / (c.mbit * 1000.0);
    link_clock link({c.mbit, c.latency});
    const double arrival = link.send(100.0, c.bytes);
    BOOST_TEST(std::fabs((arrival - 100.0) - expected) <= 0.01 * expected, c.mbit << " Mbit/s");
    BOOST_TEST(std::fabs(transfer_ms({c.mbit, c.latency}, c.bytes) - expected) <= 1e-9 * expected);
  }
  BOOST_TEST(transfer_ms({0, 3}, 1 << 30) == 3.0);  // unshaped bandwidth: latency only
}

BOOST_AUTO_TEST_CASE(messages_queue_behind_each_other_on_a_link) {
  link_clock link({8.0, 10.0});  // 8 Mbit/s: 1000 bytes take 1 ms to transmit
  const double first = link.send(0, 1000);
  const double second = link.send(0, 1000);  // sent at the same time: waits for the first's transmission
  BOOST_TEST(first == 11.0);
  BOOST_TEST(second == 12.0);
  const double later = link.send(50, 1000);  // link idle again
  BOOST_TEST(later == 61.0);
}

BOOST_AUTO_TEST_CASE(background_traffic_fills_idle_time_and_delays_nothing) {
  link_clock link({8.0, 10.0});  // 1000 bytes per ms
  BOOST_TEST(link.send_background(0, 5000) == 15.0);  // alone: 5 ms on the link, 10 ms latency
  // A message at 2 ms leaves at once (2000 background bytes have crossed by then)...
  BOOST_TEST(link.send(2, 1000) == 13.0);
  // ...and the other 3000 follow once it has left the link at 3 ms.
  BOOST_TEST(link.background_done_ms() == 16.0);
  BOOST_TEST(link.send(20, 1000) == 31.0);
  BOOST_TEST(link.background_done_ms() == 16.0);  // drained in the idle time before 20 ms
  // Queued behind busy time: a message at 40 ms for 8 ms, then background at 41 ms.
  BOOST_TEST(link.send(40, 8000) == 58.0);
  BOOST_TEST(link.send_background(41, 2000) == 48.0 + 2.0 + 10.0);
  BOOST_TEST(link.send_background(41, 0) == 60.0);  // 0 bytes asks
  // Unshaped: latency only.
  link_clock fast({0.0, 3.0});
  BOOST_TEST(fast.send_background(5, size_t(1) << 30) == 8.0);
}

// A migration's shipment shares the link with the requests' messages as two TCP flows would:
// neither waits behind the whole of the other.
BOOST_AUTO_TEST_CASE(shared_bulk_and_messages_take_half_the_link_each) {
  link_clock link({8.0, 10.0});  // 1000 bytes per ms
  BOOST_TEST(link.send_shared(0, 10000) == 20.0);  // alone: 10 ms on the link, 10 ms latency
  // At 2 ms 8000 bulk bytes are left: the 1000-byte message takes 2 ms (half the link) and
  // carries 1000 of them along...
  BOOST_TEST(link.send(2, 1000) == 14.0);
  // ...so the bulk ends 1 ms later than alone.
  BOOST_TEST(link.shared_done_ms() == 21.0);
  BOOST_TEST(link.send_shared(3, 0) == 21.0);  // 0 bytes asks
  // A message longer than the bulk left: half rate while it lasts, then the full rate.
  // (6000 bulk bytes left at 5 ms: 1000 crossed in the idle ms after the first message.)
  BOOST_TEST(link.send(5, 9000) == 5.0 + 2 * 6.0 + 3.0 + 10.0);
  BOOST_TEST(link.shared_done_ms() == 5.0 + 12.0 + 10.0);
  // Background (standby copies) waits for the bulk: it gets only the idle time after it.
  link_clock both({8.0, 10.0});
  both.send_background(0, 2000);
  both.send_shared(0, 3000);
  BOOST_TEST(both.shared_done_ms() == 13.0);
  BOOST_TEST(both.background_done_ms() == 15.0);
  BOOST_TEST(both.send(20, 1000) == 31.0);  // both carried in the idle time before
  BOOST_TEST(both.shared_done_ms() == 13.0);
  BOOST_TEST(both.background_done_ms() == 15.0);
  // Unshaped: latency only.
  link_clock fast({0.0, 3.0});
  BOOST_TEST(fast.send_shared(5, size_t(1) << 30) == 8.0);
}

BOOST_AUTO_TEST_CASE(a_background_backlog_needed_now_shares_the_link_as_bulk) {
  link_clock link({8.0, 10.0});
  link.send_background(0, 5000);
  BOOST_TEST(link.send(1, 2000) == 13.0);  // 1000 background bytes crossed before it
  BOOST_TEST(link.promote_background(2) == 3.0 + 4.0 + 10.0);  // the other 4000 after it, alone
  BOOST_TEST(link.background_done_ms() == 17.0);
  BOOST_TEST(link.shared_done_ms() == 17.0);
  // A message sent meanwhile shares the link (1 ms of its own, 1 ms carrying 1000 of the
  // copies' bytes) rather than waiting behind all of them, and the copies end 1 ms later.
  BOOST_TEST(link.send(2, 1000) == 3.0 + 2.0 + 10.0);
  BOOST_TEST(link.shared_done_ms() == 18.0);
  BOOST_TEST(link.background_done_ms() == 18.0);  // the copies with it
  BOOST_TEST(link.promote_background(30) == 18.0);  // nothing left to promote
  BOOST_TEST(link.send_background(40, 0) == 18.0);
}

BOOST_AUTO_TEST_CASE(a_new_link_profile_keeps_what_is_queued) {
  link_clock link({8.0, 10.0});
  BOOST_TEST(link.send(100, 8000) == 118.0);  // on the link until 108 ms
  link.set_profile({80.0, 1.0});
  BOOST_TEST(std::fabs(link.send(100, 1000) - 109.1) < 1e-9);  // waits for 108 ms, then 0.1 ms
  link.send_background(110, 10000);
  link.set_profile({8.0, 1.0});  // the backlog left crosses at the new rate
  BOOST_TEST(link.background_done_ms() == 110.0 + 10.0 + 1.0);
}

BOOST_AUTO_TEST_CASE(a_slow_receiver_paces_a_fast_link) {
  // 100 Mbit/s: 1 MB in 80 ms on the wire. A receiver at 1 ms per MB keeps up; at 100 it paces.
  link_clock keeps_up({100.0, 2.0}, 1.0), paces({100.0, 2.0}, 100.0);
  BOOST_TEST(keeps_up.send(0.0, 1000000) == 82.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(paces.send(0.0, 1000000) == 102.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(paces.send(0.0, 500000) == 152.0, boost::test_tools::tolerance(1e-9));  // queued behind the first
  // No link at all (a process on the same machine): the receiver's work alone.
  link_clock loopback({}, 10.0);
  BOOST_TEST(loopback.send(5.0, 2000000) == 25.0, boost::test_tools::tolerance(1e-9));
  // A node's emulation reads it per destination; a negative cost is refused.
  node_emulation e;
  e.set_identity("edge1", 1.0);
  BOOST_REQUIRE(e.configure(R"({"clock": "virtual", "links": {"device": {"receive_ms_per_mb": 4}}})").is_ok());
  BOOST_TEST(e.send("device", 10.0, 500000) == 12.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(e.send("edge2", 10.0, 500000) == 10.0, boost::test_tools::tolerance(1e-9));  // no link: free
  status bad = e.configure(R"({"clock": "virtual", "links": {"device": {"receive_ms_per_mb": -1}}})");
  BOOST_TEST(!bad.is_ok());
  BOOST_TEST(bad.message().find("device") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_node_computes_one_thing_at_a_time_at_its_speed) {
  node_clock device(0.1), cloud(4.0);
  BOOST_TEST(device.compute(0, 2) == 20.0);     // 2 ms of this machine's CPU take 20 ms at 0.1
  BOOST_TEST(device.compute(5, 1) == 30.0);     // ready at 5, but busy until 20
  BOOST_TEST(device.compute(100, 1) == 110.0);  // idle: starts when ready
  BOOST_TEST(cloud.compute(0, 8) == 2.0);
}

BOOST_AUTO_TEST_CASE(the_evaluation_testbed) {
  auto wifi = testbed::with_uplink("WiFi");
  BOOST_REQUIRE(wifi.is_ok());
  BOOST_TEST(wifi->link(node_role::device, node_role::edge).bandwidth_mbit_per_s == 18.88);
  BOOST_TEST(wifi->link(node_role::edge, node_role::cloud).latency_ms == 20.0);
  BOOST_TEST(wifi->link(node_role::edge, node_role::edge).bandwidth_mbit_per_s == 1000.0);
  link_profile direct = wifi->link(node_role::device, node_role::cloud);
  BOOST_TEST(direct.bandwidth_mbit_per_s == 18.88);
  BOOST_TEST(direct.latency_ms == 25.0);
  BOOST_TEST(wifi->speed_of(node_role::cloud) == 4.0);
  BOOST_TEST(testbed::with_uplink("CAT1")->device_edge.bandwidth_mbit_per_s == 0.13);
  auto bad = testbed::with_uplink("5G");
  BOOST_TEST(!bad.is_ok());
  BOOST_TEST(bad.message().find("5G") != std::string::npos);
  BOOST_TEST(!node_role_from_string("fog").is_ok());
}

BOOST_AUTO_TEST_CASE(thread_cpu_time_counts_work_not_sleep) {
  const double start = thread_cpu_ms();
  volatile double sink = 0;
  for (int i = 0; i < 20000000; ++i) sink = sink + i * 1e-9;
  const double worked = thread_cpu_ms() - start;
  BOOST_TEST(worked > 1.0);
}

BOOST_AUTO_TEST_CASE(a_trace_applies_its_steps_in_time_order) {
  auto trace = parse_trace_json(R"({"steps": [
      {"at_ms": 0, "uplink": "WiFi"},
      {"at_ms": 4000, "uplink": "3G", "speeds": {"edge2": 0.25}},
      {"at_ms": 9000, "links": {"device-edge": {"mbit_per_s": 18.88, "latency_ms": 5},
                                "edge-cloud": {"mbit_per_s": 10, "latency_ms": 40}}}]})");
  BOOST_REQUIRE_MESSAGE(trace.is_ok(), trace.message());
  BOOST_TEST(trace->step_at(-1) == -1);
  BOOST_TEST(trace->step_at(0) == 0);
  BOOST_TEST(trace->step_at(3999.9) == 0);
  BOOST_TEST(trace->step_at(4000) == 1);
  BOOST_TEST(trace->step_at(1e9) == 2);
  testbed t;  // WiFi
  t = trace->steps[1].apply(t);
  BOOST_TEST(t.device_edge.bandwidth_mbit_per_s == 1.1);
  BOOST_TEST(t.uplink == "3G");
  BOOST_TEST(t.edge_cloud.bandwidth_mbit_per_s == 100.0);  // untouched
  BOOST_TEST(trace->steps[1].speeds.at("edge2") == 0.25);
  t = trace->steps[2].apply(t);
  BOOST_TEST(t.device_edge.bandwidth_mbit_per_s == 18.88);
  BOOST_TEST(t.edge_cloud.bandwidth_mbit_per_s == 10.0);
  BOOST_TEST(t.edge_cloud.latency_ms == 40.0);
  BOOST_TEST(trace->steps[1].describe() == "at 4000 ms: uplink 3G, edge2 speed 0.25");
}

BOOST_AUTO_TEST_CASE(a_bad_trace_is_refused_naming_step_and_field) {
  auto expect_error = [](const std::string& text, const std::string& needle) {
    auto trace = parse_trace_json(text);
    BOOST_TEST(!trace.is_ok(), text);
    BOOST_TEST(trace.message().find(needle) != std::string::npos, trace.message() + " lacks " + needle);
  };
  expect_error("[1, 2]", "steps");
  expect_error(R"({"steps": []})", "at least one step");
  expect_error(R"({"steps": [{"uplink": "WiFi"}]})", "step 0: at_ms is missing");
  expect_error(R"({"steps": [{"at_ms": 0, "uplink": "5G"}]})", "step 0: uplink");
  expect_error(R"({"steps": [{"at_ms": 5}, {"at_ms": 5}]})", "step 1: at_ms 5 does not come after");
  expect_error(R"({"steps": [{"at_ms": 0, "links": {"device-device": {"mbit_per_s": 1, "latency_ms": 1}}}]})",
               "unknown link 'device-device'");
  expect_error(R"({"steps": [{"at_ms": 0, "links": {"edge-edge": {"mbit_per_s": 0, "latency_ms": 1}}}]})",
               "edge-edge'.mbit_per_s must be a positive number");
  expect_error(R"({"steps": [{"at_ms": 0, "links": {"edge-edge": {"mbit_per_s": 5}}}]})",
               "needs both mbit_per_s and latency_ms");
  expect_error(R"({"steps": [{"at_ms": 0, "speeds": {"edge1": -1}}]})", "speed of 'edge1'");
  expect_error(R"({"steps": [{"at_ms": 0, "bandwidth": 3}]})", "unknown key 'bandwidth'");
  BOOST_TEST(load_trace_file("/nonexistent/trace.json").message().find("/nonexistent/trace.json") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(device_cloud_is_lan_then_backbone_unless_set) {
  testbed t;
  t.device_edge = {100, 2};
  t.edge_cloud = {5.85, 20};
  const link_profile series = t.link(node_role::device, node_role::cloud);
  BOOST_TEST(series.bandwidth_mbit_per_s == 5.85);
  BOOST_TEST(series.latency_ms == 22.0);
  BOOST_TEST(t.set_link("device-cloud", {3, 40}).is_ok());
  BOOST_TEST(t.link(node_role::cloud, node_role::device).bandwidth_mbit_per_s == 3.0);
  BOOST_TEST(t.link(node_role::device, node_role::cloud).latency_ms == 40.0);
  BOOST_TEST(!t.set_link("cloud-cloud", {1, 1}).is_ok());
}

// The shipped testbed files are the built-in ones, number for number.
void expect_same_testbed(const testbed_file& file, const testbed_file& builtin) {
  BOOST_TEST(file.edge_nodes == builtin.edge_nodes);
  BOOST_TEST(file.name == builtin.name);
  BOOST_TEST(file.scenario_names() == builtin.scenario_names(), boost::test_tools::per_element());
  for (const testbed_scenario& s : builtin.scenarios) {
    BOOST_REQUIRE(file.scenario(s.name));
    const testbed a = file.with(*file.scenario(s.name)), b = builtin.with(s);
    BOOST_TEST(a.uplink == s.name);
    for (node_role from : {node_role::device, node_role::edge, node_role::cloud}) {
      BOOST_TEST(a.speed_of(from) == b.speed_of(from));
      for (node_role to : {node_role::device, node_role::edge, node_role::cloud}) {
        BOOST_TEST(a.link(from, to).bandwidth_mbit_per_s == b.link(from, to).bandwidth_mbit_per_s, s.name);
        BOOST_TEST(a.link(from, to).latency_ms == b.link(from, to).latency_ms, s.name);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(shipped_testbed_files_match_the_builtin_ones) {
  auto d3 = load_testbed_file(std::string(D3_CONFIG_DIR) + "/testbed-d3.json");
  BOOST_REQUIRE_MESSAGE(d3.is_ok(), d3.message());
  expect_same_testbed(*d3, testbed_file::d3_setting());
  auto mobile = load_testbed_file(std::string(D3_CONFIG_DIR) + "/testbed-mobile-edge.json");
  BOOST_REQUIRE_MESSAGE(mobile.is_ok(), mobile.message());
  expect_same_testbed(*mobile, testbed_file::mobile_edge());
  // D3's setting: the LAN to the edges, the scenario's rate to the cloud, both in series from the device.
  const testbed cat1 = d3->with(*d3->scenario("CAT1"));
  BOOST_TEST(cat1.link(node_role::device, node_role::edge).bandwidth_mbit_per_s == 100.0);
  BOOST_TEST(cat1.link(node_role::edge, node_role::cloud).bandwidth_mbit_per_s == 0.13);
  BOOST_TEST(cat1.link(node_role::device, node_role::cloud).latency_ms == 22.0);
  // The first testbed: the scenario is the device's uplink.
  const testbed m3g = mobile->with(*mobile->scenario("3G"));
  BOOST_TEST(m3g.link(node_role::device, node_role::edge).bandwidth_mbit_per_s == 1.1);
  BOOST_TEST(m3g.link(node_role::edge, node_role::cloud).bandwidth_mbit_per_s == 100.0);
}

BOOST_AUTO_TEST_CASE(a_scenario_may_override_any_link) {
  auto f = parse_testbed_json(R"({"links": {"device-edge": {"mbit_per_s": 50, "latency_ms": 1}},
                                   "scenarios": {"far": {"device-cloud": {"mbit_per_s": 2, "latency_ms": 60},
                                                         "edge-edge": {"mbit_per_s": 10, "latency_ms": 1}},
                                                 "near": {}}})",
                              "inline");
  BOOST_REQUIRE_MESSAGE(f.is_ok(), f.message());
  BOOST_TEST(f->scenario_names() == std::vector<std::string>({"far", "near"}), boost::test_tools::per_element());
  const testbed far = f->with(*f->scenario("far")), near = f->with(*f->scenario("near"));
  BOOST_TEST(far.link(node_role::device, node_role::cloud).latency_ms == 60.0);
  BOOST_TEST(far.link(node_role::edge, node_role::edge).bandwidth_mbit_per_s == 10.0);
  BOOST_TEST(far.link(node_role::device, node_role::edge).bandwidth_mbit_per_s == 50.0);
  BOOST_TEST(near.link(node_role::edge, node_role::edge).bandwidth_mbit_per_s == 1000.0);  // D3 setting's
  BOOST_TEST(near.link(node_role::device, node_role::cloud).latency_ms == 21.0);          // series: 1 + 20
  auto none = parse_testbed_json(R"({"edge_nodes": 2})", "inline");
  BOOST_REQUIRE(none.is_ok());
  BOOST_TEST(none->scenario_names() == std::vector<std::string>({"base"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(a_bad_testbed_file_is_refused_naming_the_key) {
  auto expect_error = [](const std::string& text, const std::string& needle) {
    auto f = parse_testbed_json(text, "t.json");
    BOOST_TEST(!f.is_ok(), text);
    BOOST_TEST(f.message().find(needle) != std::string::npos, f.message() + " lacks " + needle);
    BOOST_TEST(f.message().find("t.json") != std::string::npos);
  };
  expect_error("{", "not valid JSON");
  expect_error("[]", "JSON object");
  expect_error(R"({"edge_speed": 0})", "edge_speed must be a positive number");
  expect_error(R"({"edge_nodes": 0})", "edge_nodes must be an integer");
  expect_error(R"({"links": {"edge-fog": {"mbit_per_s": 1, "latency_ms": 1}}})", "unknown link 'edge-fog'");
  expect_error(R"({"links": {"edge-edge": {"mbit_per_s": -1, "latency_ms": 1}}})", "links.edge-edge.mbit_per_s");
  expect_error(R"({"scenarios": {}})", "scenarios must be a non-empty object");
  expect_error(R"({"scenarios": {"a b": {}}})", "scenario name 'a b'");
  expect_error(R"({"scenarios": {"x": {"edge-cloud": {"mbit_per_s": 1}}}})", "scenarios.x.edge-cloud needs both");
  expect_error(R"({"uplinks": {}})", "unknown key 'uplinks'");
  BOOST_TEST(load_testbed_file("/nonexistent/t.json").message().find("/nonexistent/t.json") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(the_repo_cluster_files_parse_with_their_roles_and_testbed) {
  auto c = load_cluster_file(std::string(D3_CONFIG_DIR) + "/cluster.json");
  BOOST_REQUIRE_MESSAGE(c.is_ok(), c.message());
  BOOST_REQUIRE_EQUAL(c->nodes.size(), 4u);
  BOOST_TEST(c->nodes[1].name == "edge1");
  BOOST_TEST(c->nodes[1].role == "edge");
  BOOST_TEST(c->nodes[1].host == "127.0.0.1");
  BOOST_TEST(c->nodes[1].port == 4302);
  BOOST_TEST(c->has_testbed);
  auto t = c->emulated_testbed();
  BOOST_REQUIRE(t.is_ok());
  BOOST_TEST(t->uplink == "WiFi");
  auto four = load_cluster_file(std::string(D3_CONFIG_DIR) + "/cluster-4edge.json");
  BOOST_REQUIRE_MESSAGE(four.is_ok(), four.message());
  BOOST_TEST(four->roles().at("edge4") == "edge");
}

BOOST_AUTO_TEST_CASE(a_cluster_file_applies_its_links_and_defaults) {
  auto c = parse_cluster_json(R"({"testbed": {"uplink": "3G", "links": {"edge-edge": {"mbit_per_s": 10, "latency_ms": 1}}},
                                  "nodes": [{"name": "edge7", "port": 5000}, {"name": "cloud", "host": "10.0.0.2", "port": 5001}]})",
                              "c.json");
  BOOST_REQUIRE_MESSAGE(c.is_ok(), c.message());
  BOOST_TEST(c->nodes[0].role == "edge");  // from the name
  BOOST_TEST(c->nodes[1].role == "cloud");
  BOOST_TEST(c->nodes[1].host == "10.0.0.2");
  auto t = c->emulated_testbed();
  BOOST_REQUIRE(t.is_ok());
  BOOST_TEST(t->uplink == "3G");
  BOOST_TEST(t->link(node_role::edge, node_role::edge).bandwidth_mbit_per_s == 10.0);
  auto overridden = c->emulated_testbed("4G");
  BOOST_REQUIRE(overridden.is_ok());
  BOOST_TEST(overridden->uplink == "4G");
  BOOST_TEST(overridden->link(node_role::edge, node_role::edge).bandwidth_mbit_per_s == 10.0);
}

BOOST_AUTO_TEST_CASE(a_bad_cluster_file_is_refused_naming_the_key) {
  auto expect_error = [](const std::string& text, const std::string& needle) {
    auto c = parse_cluster_json(text, "c.json");
    BOOST_TEST(!c.is_ok(), text);
    BOOST_TEST(c.message().find(needle) != std::string::npos, c.message() + " lacks " + needle);
    BOOST_TEST(c.message().find("c.json") != std::string::npos);
  };
  expect_error("{", "not valid JSON");
  expect_error(R"({"nodes": []})", "lists no nodes");
  expect_error(R"({"nodes": [{"name": "a"}]})", "needs a port");
  expect_error(R"({"nodes": [{"name": "a", "port": 70000}]})", "nodes[0].port must be a port");
  expect_error(R"({"nodes": [{"name": "a", "port": "1"}]})", "nodes[0].port must be a port");
  expect_error(R"({"nodes": [{"name": "a", "port": 1}, {"name": "a", "port": 2}]})", "named twice");
  expect_error(R"({"nodes": [{"name": "a", "port": 1, "adress": "x"}]})", "unknown key 'adress'");
  expect_error(R"({"nodes": [{"name": "a", "port": 1}], "testbed": {"uplink": "5G"}})", "5G");
  expect_error(R"({"nodes": [{"name": "a", "port": 1}], "testbed": {"links": {"edge-fog": {"mbit_per_s": 1, "latency_ms": 1}}}})",
               "edge-fog");
  expect_error(R"({"nodes": [{"name": "a", "port": 1}], "hosts": []})", "unknown key 'hosts'");
}

// (No other case of this module takes the lock: the child must open the file itself, as a
// shared open file would share the flock.)
// The machine's CPU lock (virtual clock) held by a process that is then stopped (SIGSTOP, as
// d3-bench chaos freezes a node) must not stop every other process of the machine with it: a
// waiter passes a stopped holder by. A holder that runs is waited for.
BOOST_AUTO_TEST_CASE(the_machine_cpu_lock_passes_a_stopped_holder_by_and_waits_for_a_running_one) {
  char path[] = "/tmp/d3-cpu-lock-test-XXXXXX";
  const int fd = ::mkstemp(path);
  BOOST_REQUIRE(fd >= 0);
  ::close(fd);
  ::setenv("D3_CPU_LOCK", path, 1);  // before this process's first lock: the file is opened once
  int ready[2];
  BOOST_REQUIRE(::pipe(ready) == 0);
  const pid_t holder = ::fork();
  BOOST_REQUIRE(holder >= 0);
  if (holder == 0) {
    machine_cpu_lock held(true);
    char c = 1;
    if (::write(ready[1], &c, 1) != 1) ::_exit(1);
    for (int i = 0; i < 3000; ++i) ::usleep(10'000);  // at most 30 s: the test kills it sooner
    ::_exit(0);
  }
  char c = 0;
  BOOST_REQUIRE(::read(ready[0], &c, 1) == 1);
  // Running holder: a waiter waits (here: 300 ms of it, from a thread that is then released).
  std::atomic<bool> taken{false};
  std::thread waiter([&] {
    machine_cpu_lock lock(true);
    taken = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  BOOST_TEST(!taken.load());
  // Stopped holder: the waiter passes it by within a few of its 50 ms looks.
  const auto stopped_at = std::chrono::steady_clock::now();
  BOOST_REQUIRE(::kill(holder, SIGSTOP) == 0);
  for (int i = 0; i < 200 && !taken; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const double waited_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - stopped_at).count();
  BOOST_TEST(taken.load());
  BOOST_TEST(waited_ms < 1000.0);
  ::kill(holder, SIGKILL);
  ::waitpid(holder, nullptr, 0);
  waiter.join();
  ::unsetenv("D3_CPU_LOCK");
  ::unlink(path);
  ::close(ready[0]);
  ::close(ready[1]);
}
