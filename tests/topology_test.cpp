#define BOOST_TEST_MODULE topology
#include <boost/test/unit_test.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "topology/topology_log.hpp"

using namespace d3;

namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("d3-topology-test-" + std::to_string(::getpid()) + "-" + name)).string();
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_log_written_and_read_back_renders_the_live_deployment) {
  const std::string path = temp_path("log.jsonl");
  std::remove(path.c_str());
  {
    auto log = topology_log::open(path);
    BOOST_REQUIRE(log.is_ok());
    (*log)->write({{"event", "node_up"}, {"node", "device"}, {"role", "device"}, {"address", "127.0.0.1:4301"}});
    (*log)->write({{"event", "node_up"}, {"node", "edge1"}, {"role", "edge"}, {"address", "127.0.0.1:4302"}});
    (*log)->write({{"event", "plan_deployed"}, {"version", 1}, {"strategy", "file"}, {"model", "resnet18"}});
    (*log)->write({{"event", "actor_spawned"}, {"actor", 0}, {"kind", "segment"}, {"node", "device"},
                   {"layers", {"conv1", "maxpool"}}, {"plan_version", 1}, {"sends_to", {1}}});
    (*log)->write({{"event", "actor_spawned"}, {"actor", 1}, {"kind", "tile"}, {"tile", 0}, {"node", "edge1"},
                   {"layers", {"layer1.0.conv1", "layer2.1.add"}}, {"region", "rows [0, 14) cols [0, 28)"},
                   {"plan_version", 1}});
    (*log)->write({{"event", "actor_spawned"}, {"actor", 2}, {"kind", "segment"}, {"node", "edge1"},
                   {"layers", {"x"}}, {"plan_version", 1}});
    (*log)->write({{"event", "actor_exited"}, {"actor", 2}, {"node", "edge1"}, {"reason", "normal"}});
  }
  auto events = read_topology_log(path);
  BOOST_REQUIRE_MESSAGE(events.is_ok(), events.message());
  BOOST_TEST(events->size() == 7u);
  BOOST_TEST(events->at(0).contains("time"));  // stamped on write
  const std::string tree = render_topology_tree(*events);
  BOOST_TEST_MESSAGE(tree);
  BOOST_TEST(tree.find("plan version 1 (file) of resnet18") != std::string::npos);
  BOOST_TEST(tree.find("node edge1 (edge, 127.0.0.1:4302)") != std::string::npos);
  BOOST_TEST(tree.find("actor 0 segment: conv1..maxpool") != std::string::npos);
  BOOST_TEST(tree.find("actor 1 tile 0: layer1.0.conv1..layer2.1.add, rows [0, 14) cols [0, 28)") != std::string::npos);
  BOOST_TEST(tree.find("actor 2") == std::string::npos);  // exited: no longer shown
  // Before the teardown, actor 2 was still there.
  BOOST_TEST(render_topology_tree(as_deployed(*events)).find("actor 2 segment: x") != std::string::npos);
  const std::string dot = render_topology_dot(*events);
  BOOST_TEST(dot.find("a0 -> a1;") != std::string::npos);
  BOOST_TEST(dot.find("subgraph cluster_") != std::string::npos);
  std::remove(path.c_str());
}

BOOST_AUTO_TEST_CASE(malformed_logs_name_the_line) {
  const std::string path = temp_path("bad.jsonl");
  {
    std::ofstream out(path);
    out << "{\"event\": \"node_up\", \"node\": \"a\"}\n\n{\"event\": \"node_up\", \"node\": \n";
  }
  auto events = read_topology_log(path);
  BOOST_TEST(!events.is_ok());
  BOOST_TEST(events.message().find("line 3") != std::string::npos, events.message());
  {
    std::ofstream out(path);
    out << "[1, 2]\n";
  }
  events = read_topology_log(path);
  BOOST_TEST(!events.is_ok());
  BOOST_TEST(events.message().find("line 1") != std::string::npos, events.message());
  BOOST_TEST(!read_topology_log(temp_path("missing.jsonl")).is_ok());
  std::remove(path.c_str());
}

// Plan versions side by side (a migration or a failover): actor ids restart at 0 per version,
// a retired version's actors are gone, an exit names its version.
BOOST_AUTO_TEST_CASE(versions_side_by_side_keep_their_actors_apart) {
  using d3::topology_event;
  const std::vector<topology_event> events = {
      {{"event", "node_up"}, {"node", "edge1"}, {"role", "edge"}},
      {{"event", "node_up"}, {"node", "edge2"}, {"role", "edge"}},
      {{"event", "actor_spawned"}, {"actor", 0}, {"kind", "segment"}, {"node", "edge1"}, {"plan_version", 1},
       {"layers", {"conv1", "fc"}}},
      {{"event", "plan_deployed"}, {"version", 1}, {"strategy", "file"}, {"model", "m"}},
      {{"event", "node_down"}, {"node", "edge1"}, {"reason", "connection lost"}},
      {{"event", "actor_spawned"}, {"actor", 0}, {"kind", "segment"}, {"node", "edge2"}, {"plan_version", 2},
       {"layers", {"conv1", "fc"}}},
      {{"event", "plan_deployed"}, {"version", 2}, {"strategy", "file (failover)"}, {"model", "m"}},
      {{"event", "plan_retired"}, {"version", 1}, {"actors", 1}, {"reason", "..."}},
  };
  const std::string tree = d3::render_topology_tree(events);
  BOOST_TEST(tree.find("node edge1 (edge) [down]\n  (no actors)") != std::string::npos, tree);
  BOOST_TEST(tree.find("node edge2 (edge)\n  └─ actor 0 segment: conv1..fc") != std::string::npos, tree);
  std::vector<topology_event> ended = events;
  ended.push_back({{"event", "actor_exited"}, {"actor", 0}, {"node", "edge2"}, {"plan_version", 2}, {"reason", "teardown"}});
  ended.push_back({{"event", "node_rejoined"}, {"node", "edge1"}, {"role", "edge"}});
  const std::string after = d3::render_topology_tree(ended);
  BOOST_TEST(after.find("node edge2 (edge)\n  (no actors)") != std::string::npos, after);
  BOOST_TEST(after.find("[down]") == std::string::npos, after);
}
