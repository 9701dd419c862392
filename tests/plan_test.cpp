#define BOOST_TEST_MODULE plan
#include <boost/test/unit_test.hpp>

#include <map>
#include <optional>

#include <nlohmann/json.hpp>

#include "plan/plan.hpp"
#include "plan/plan_repair.hpp"
#include "plan/request_accounting.hpp"
#include "kernels/executor.hpp"
#include "kernels/model_zoo.hpp"
#include "kernels/tile_executor.hpp"

using namespace d3;

namespace {

const char* resnet18_three_tier = R"({
  "version": 3, "strategy": "file",
  "segments": [{"node": "device", "first": "conv1", "last": "maxpool"},
               {"node": "edge1", "first": "layer1.0.conv1", "last": "layer2.1.add"},
               {"node": "cloud", "first": "layer3.0.conv1", "last": "fc"}],
  "tiled_runs": [{"first": "layer1.0.conv1", "last": "layer2.1.add", "grid": "2x1", "nodes": ["edge1", "edge2"]}]
})";

graph load(const std::string& name) {
  auto g = builtin_model(name);
  BOOST_REQUIRE_MESSAGE(g.is_ok(), g.message());
  return std::move(g.value());
}

stage_graph build(const graph& g, const std::string& json) {
  auto plan = parse_plan_json(json);
  BOOST_REQUIRE_MESSAGE(plan.is_ok(), plan.message());
  auto sg = build_stage_graph(g, *plan);
  BOOST_REQUIRE_MESSAGE(sg.is_ok(), sg.message());
  return std::move(sg.value());
}

std::string build_error(const graph& g, const std::string& json) {
  auto plan = parse_plan_json(json);
  if (!plan) return plan.message();
  auto sg = build_stage_graph(g, *plan);
  return sg.is_ok() ? "" : sg.message();
}

// Runs a stage graph in one process the way the nodes will: every stage waits for its named
// input tensors, computes, and hands its outputs on by name. Returns the app's outputs.
std::map<std::string, tensor> run_stages(const graph& g, const stage_graph& sg, const tensor& input) {
  std::map<std::string, tensor> available{{sg.graph_inputs.at(0), input}};
  for (const stage& s : sg.stages) {
    for (const std::string& in : s.inputs) BOOST_REQUIRE_MESSAGE(available.count(in), "stage " << s.id << " lacks " << in);
    switch (s.kind) {
      case stage_kind::segment: {
        auto e = executor::create(g, s.layers);
        BOOST_REQUIRE_MESSAGE(e.is_ok(), e.message());
        auto out = (*e)->run(available);
        BOOST_REQUIRE_MESSAGE(out.is_ok(), out.message());
        for (auto& [name, t] : out.value()) available[name] = std::move(t);
        break;
      }
      case stage_kind::scatter: {
        const tiled_run& run = sg.runs[size_t(s.run)];
        size_t k = 0;
        for (size_t t = 0; t < sg.tiles[size_t(s.run)].size(); ++t)
          for (int in : run.inputs)
            available[s.outputs[k++]] = extract_region(available.at(g.layers[in].name), sg.tiles[size_t(s.run)][t].computed[in]);
        break;
      }
      case stage_kind::tile: {
        auto e = tile_executor::create(g, sg.runs[size_t(s.run)], sg.tiles[size_t(s.run)], {s.tile});
        BOOST_REQUIRE_MESSAGE(e.is_ok(), e.message());
        std::vector<const tensor*> inputs;
        for (const std::string& in : s.inputs) inputs.push_back(&available.at(in));
        auto out = (*e)->run_tile(s.tile, inputs);
        BOOST_REQUIRE_MESSAGE(out.is_ok(), out.message());
        available[s.outputs[0]] = std::move(out.value());
        break;
      }
      case stage_kind::gather: {
        const tiled_run& run = sg.runs[size_t(s.run)];
        tensor whole(g.layers[run.output].output_shape);
        for (size_t t = 0; t < s.inputs.size(); ++t)
          insert_region(whole, sg.tiles[size_t(s.run)][t].output, available.at(s.inputs[t]));
        available[s.outputs[0]] = std::move(whole);
        break;
      }
    }
  }
  std::map<std::string, tensor> outputs;
  for (const std::string& name : sg.graph_outputs) outputs[name] = available.at(name);
  return outputs;
}

}  // namespace

BOOST_AUTO_TEST_CASE(three_tier_plan_with_tiles_becomes_stages) {
  graph g = load("resnet18");
  stage_graph sg = build(g, resnet18_three_tier);
  // device segment, scatter, 2 tiles, gather, cloud segment
  BOOST_REQUIRE(sg.stages.size() == 6u);
  const stage_kind kinds[] = {stage_kind::segment, stage_kind::scatter, stage_kind::tile,
                              stage_kind::tile, stage_kind::gather, stage_kind::segment};
  const char* nodes[] = {"device", "device", "edge1", "edge2", "cloud", "cloud"};
  for (size_t i = 0; i < 6; ++i) {
    BOOST_TEST(int(sg.stages[i].kind) == int(kinds[i]), "stage " << i);
    BOOST_TEST(sg.stages[i].node == nodes[i], "stage " << i);
  }
  BOOST_TEST((sg.stages[0].outputs == std::vector<std::string>{"maxpool"}));
  BOOST_TEST((sg.stages[2].inputs == std::vector<std::string>{"maxpool@tile0"}));
  BOOST_TEST((sg.stages[4].outputs == std::vector<std::string>{"layer2.1.add"}));
  BOOST_TEST((sg.graph_outputs == std::vector<std::string>{"fc"}));
  // Every route goes forward, and the logits go to the app.
  bool logits_to_app = false;
  for (const route& r : sg.routes) {
    for (int to : r.to_stages) BOOST_TEST(to > r.from_stage);
    logits_to_app |= r.to_app && r.tensor == "fc";
  }
  BOOST_TEST(logits_to_app);
}

BOOST_AUTO_TEST_CASE(bytes_between_nodes_count_halos_and_destinations) {
  graph g = load("resnet18");
  stage_graph sg = build(g, resnet18_three_tier);
  std::map<std::pair<std::string, std::string>, size_t> bytes;
  for (const link_bytes& b : bytes_between_nodes(g, sg, "device")) bytes[{b.from, b.to}] = b.bytes;
  // device -> each edge: its tile's share of maxpool's 56x56x64 map, halo rows included.
  const tile_geometry& tile0 = sg.tiles[0][0];
  const int maxpool = g.find("maxpool");
  BOOST_TEST(bytes.at({"device", "edge1"}) == size_t(tile0.computed[maxpool].rows()) * 56 * 64 * 4);
  BOOST_TEST(tile0.computed[maxpool].rows() > 28);  // more than half: the halo
  // each edge -> cloud: its half of layer2.1.add's 28x28x128 map
  BOOST_TEST(bytes.at({"edge1", "cloud"}) == size_t(14) * 28 * 128 * 4);
  BOOST_TEST(bytes.at({"edge2", "cloud"}) == size_t(14) * 28 * 128 * 4);
  // cloud -> device: the logits
  BOOST_TEST(bytes.at({"cloud", "device"}) == size_t(1000) * 4);
  BOOST_TEST(bytes.count({"device", "cloud"}) == 0u);
}

BOOST_AUTO_TEST_CASE(stages_run_in_order_reproduce_the_model_bit_for_bit) {
  struct cases {
    std::string model, plan;
  };
  const std::vector<cases> all = {
      {"resnet18", resnet18_three_tier},
      // A cut inside a residual block: the skip tensor crosses device -> edge too.
      {"resnet18", R"({"segments": [{"node": "device", "first": "conv1", "last": "layer1.0.conv1"},
                                    {"node": "edge1", "first": "layer1.0.conv2", "last": "layer3.0.conv1"},
                                    {"node": "cloud", "first": "layer3.0.conv2", "last": "fc"}],
                       "tiled_runs": [{"first": "layer1.0.conv2", "last": "layer2.1.add", "grid": "2x2",
                                       "nodes": ["edge1", "edge2", "edge1", "edge2"]}]})"},
      // Uneven tiles (a node of speed 0.25 next to two of 0.5): bit for bit all the same.
      {"resnet18", R"({"segments": [{"node": "device", "first": "conv1", "last": "maxpool"},
                                    {"node": "edge1", "first": "layer1.0.conv1", "last": "fc"}],
                       "tiled_runs": [{"first": "layer1.0.conv1", "last": "layer2.1.add", "grid": "3x1",
                                       "nodes": ["edge1", "edge2", "edge3"], "row_weights": [0.5, 0.25, 0.5],
                                       "col_weights": [1.25]}]})"},
      {"googlenet", R"({"segments": [{"node": "device", "first": "conv1.conv", "last": "maxpool2"},
                                     {"node": "edge1", "first": "inception3a.branch1.conv", "last": "inception3b.concat"},
                                     {"node": "cloud", "first": "maxpool3", "last": "fc"}],
                        "tiled_runs": [{"first": "inception3a.branch1.conv", "last": "inception3b.concat", "grid": "1x2",
                                        "nodes": ["edge1", "edge2"]}]})"},
  };
  for (const cases& c : all) {
    graph g = load(c.model);
    stage_graph sg = build(g, c.plan);
    tensor x = random_tensor(g.layers[g.input_layers()[0]].output_shape, 4);
    auto whole = executor::create(g);
    BOOST_REQUIRE(whole.is_ok());
    auto expected = (*whole)->run({&x});
    BOOST_REQUIRE(expected.is_ok());
    auto outputs = run_stages(g, sg, x);
    BOOST_TEST(bitwise_equal(outputs.at(sg.graph_outputs[0]), expected.value()[0]), c.model);
  }
}

// A device set closed under predecessors but not a prefix of the graph's order (what a DADS min cut
// can choose): the plan carries its own order, runs bit for bit, and bad orders are rejected.
BOOST_AUTO_TEST_CASE(uneven_tiles_follow_their_weights) {
  graph g = load("resnet18");
  stage_graph sg = build(g, R"({"segments": [{"node": "edge1", "first": "conv1", "last": "fc"}],
      "tiled_runs": [{"first": "layer1.0.conv1", "last": "layer2.1.add", "grid": "2x2",
                      "nodes": ["edge1", "edge2", "edge3", "edge4"],
                      "row_weights": [3, 1], "col_weights": [1, 1]}]})");
  BOOST_REQUIRE_EQUAL(sg.tiles.size(), 1u);
  // layer2.1.add is 28 x 28: rows split 21 / 7, columns 14 / 14.
  BOOST_TEST(sg.tiles[0][0].output.rows() == 21);
  BOOST_TEST(sg.tiles[0][2].output.rows() == 7);
  BOOST_TEST(sg.tiles[0][1].output.cols() == 14);
  const std::string three_rows = R"({"segments": [{"node": "edge1", "first": "conv1", "last": "fc"}],
      "tiled_runs": [{"first": "layer1.0.conv1", "last": "layer2.1.add", "grid": "2x1",
                      "nodes": ["edge1", "edge2"], "row_weights": [1, 1, 1], "col_weights": [1]}]})";
  BOOST_TEST(build_error(g, three_rows).find("needs 2 row weights and 1 column weights, got 3 and 1") != std::string::npos,
             build_error(g, three_rows));
  const std::string negative = R"({"segments": [{"node": "edge1", "first": "conv1", "last": "fc"}],
      "tiled_runs": [{"first": "layer1.0.conv1", "last": "layer2.1.add", "grid": "2x1",
                      "nodes": ["edge1", "edge2"], "row_weights": [1, -1], "col_weights": [1]}]})";
  BOOST_TEST(build_error(g, negative).find("weights must be positive") != std::string::npos, build_error(g, negative));
  auto plan = parse_plan_json(three_rows);
  BOOST_REQUIRE(plan.is_ok());
  auto again = parse_plan_json(to_json(plan.value()));
  BOOST_REQUIRE(again.is_ok());
  BOOST_TEST(again->tiled_runs[0].row_weights.size() == 3u);
}

BOOST_AUTO_TEST_CASE(plans_with_an_explicit_order) {
  graph g = load("googlenet");
  auto topo = topological_order(g);
  BOOST_REQUIRE(topo.is_ok());
  std::vector<std::string> device, rest;
  bool past = false;
  for (int l : *topo) {
    const std::string& name = g.layers[size_t(l)].name;
    if (g.layers[size_t(l)].kind == layer_kind::input) continue;
    ((!past || name == "inception3a.branch4.0") ? device : rest).push_back(name);
    past |= name == "maxpool2";
  }
  nlohmann::json plan = {{"segments", {{{"node", "device"}, {"first", device.front()}, {"last", device.back()}},
                                       {{"node", "cloud"}, {"first", rest.front()}, {"last", rest.back()}}}}};
  std::vector<std::string> order = device;
  order.insert(order.end(), rest.begin(), rest.end());
  plan["order"] = order;
  stage_graph sg = build(g, plan.dump());
  BOOST_TEST(sg.stages.size() == 2u);
  BOOST_TEST(sg.stages[0].layers.back() == g.find("inception3a.branch4.0"));
  tensor x = random_tensor(g.layers[g.input_layers()[0]].output_shape, 5);
  auto whole = executor::create(g);
  BOOST_REQUIRE(whole.is_ok());
  auto expected = (*whole)->run({&x});
  BOOST_REQUIRE(expected.is_ok());
  BOOST_TEST(bitwise_equal(run_stages(g, sg, x).at(sg.graph_outputs[0]), expected.value()[0]));

  auto with_order = [&](std::vector<std::string> o) {
    nlohmann::json p = plan;
    p["order"] = o;
    return build_error(g, p.dump());
  };
  std::vector<std::string> swapped = order;
  std::swap(swapped[0], swapped[1]);
  BOOST_TEST(with_order(swapped).find("before its input") != std::string::npos, with_order(swapped));
  std::vector<std::string> short_order(order.begin(), order.end() - 1);
  BOOST_TEST(with_order(short_order).find("lists") != std::string::npos);
  std::vector<std::string> twice = order;
  twice.back() = twice.front();
  BOOST_TEST(with_order(twice).find("twice") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(bad_plans_are_rejected_with_the_entry_named) {
  graph g = load("resnet18");
  auto expect = [&](const std::string& json, const std::string& word) {
    std::string error = build_error(g, json);
    BOOST_TEST(error.find(word) != std::string::npos, "expected '" << word << "' in: " << error);
  };
  expect("{not json", "malformed JSON");
  expect(R"({"segments": []})", "segments");
  expect(R"({"segments": [{"node": "device", "first": "conv1", "last": "nope"}]})", "'nope'");
  expect(R"({"segments": [{"node": "device", "first": "conv1", "last": "maxpool"}]})", "not placed");
  expect(R"({"segments": [{"node": "device", "first": "conv1", "last": "maxpool"},
                          {"node": "cloud", "first": "layer1.0.conv2", "last": "fc"}]})", "gap or overlap");
  expect(R"({"segments": [{"node": "device", "first": "conv1", "last": "layer1.0.conv1"},
                          {"node": "cloud", "first": "layer1.0.conv2", "last": "fc"}],
            "tiled_runs": [{"first": "maxpool", "last": "layer1.0.add", "grid": "2x1", "nodes": ["a", "b"]}]})",
         "crosses a segment boundary");
  expect(R"({"segments": [{"node": "device", "first": "conv1", "last": "fc"}],
            "tiled_runs": [{"first": "conv1", "last": "maxpool", "grid": "2x2", "nodes": ["a", "b"]}]})",
         "4 tiles but 2 nodes");
  expect(R"({"segments": [{"node": "device", "first": "conv1", "last": "fc"}],
            "tiled_runs": [{"first": "conv1", "last": "fc", "grid": "2x1", "nodes": ["a", "b"]}]})",
         "not spatially local");
}

BOOST_AUTO_TEST_CASE(plans_round_trip_through_json) {
  auto plan = parse_plan_json(resnet18_three_tier);
  BOOST_REQUIRE(plan.is_ok());
  auto again = parse_plan_json(to_json(*plan));
  BOOST_REQUIRE(again.is_ok());
  BOOST_TEST(again->version == 3);
  BOOST_TEST(again->segments.size() == 3u);
  BOOST_TEST(again->segments[1].last == "layer2.1.add");
  BOOST_TEST((again->tiled_runs.at(0).nodes == std::vector<std::string>{"edge1", "edge2"}));
}

// Codecs in plans: JSON round trip, unknown codecs and tensors refused, tile parts covered by their
// layer's entry, and the request accounting's transfers of encoded crossings (the bytes the sender
// reported, or none when the sender's bytes cannot be split among several destinations).
BOOST_AUTO_TEST_CASE(plans_carry_codecs) {
  graph g = load("resnet18");
  std::string json = resnet18_three_tier;
  json.insert(json.rfind('}'), R"(, "codecs": [{"tensor": "maxpool", "to": "edge1", "codec": "zstd"},
                                           {"tensor": "layer2.1.add", "to": "cloud", "codec": "sparse"}])");
  auto plan = parse_plan_json(json);
  BOOST_REQUIRE_MESSAGE(plan.is_ok(), plan.message());
  auto again = parse_plan_json(to_json(*plan));
  BOOST_REQUIRE(again.is_ok());
  BOOST_REQUIRE(again->codecs.size() == 2u);
  BOOST_TEST(again->codecs[1].tensor == "layer2.1.add");
  BOOST_TEST((again->codecs[1].codec == tensor_codec::sparse));
  const stage_graph sg = build(g, json);
  BOOST_TEST((codec_for(sg.codecs, "maxpool@tile0", "edge1") == tensor_codec::zstd));
  BOOST_TEST((codec_for(sg.codecs, "maxpool@tile1", "edge2") == tensor_codec::raw));
  BOOST_TEST((codec_for(sg.codecs, "layer2.1.add", "cloud") == tensor_codec::sparse));
  // On the routes: the tile parts cross to the gather on the cloud encoded; the gathered tensor,
  // the same layer's output to the same node, stays on the cloud and goes raw.
  int crossing = 0, staying = 0;
  for (const route& r : sg.routes)
    for (int to : r.to_stages) {
      if (r.from_stage < 0 || whole_tensor(r.tensor) != "layer2.1.add") continue;
      const stage& from = sg.stages[size_t(r.from_stage)];
      if (from.kind == stage_kind::tile) {
        ++crossing;
        BOOST_TEST((route_codec(sg, r, to) == tensor_codec::sparse), r.tensor);
      } else if (from.kind == stage_kind::gather) {
        ++staying;
        BOOST_TEST(sg.stages[size_t(to)].node == from.node);
        BOOST_TEST((route_codec(sg, r, to) == tensor_codec::raw), r.tensor);
      }
    }
  BOOST_TEST(crossing == 2);
  BOOST_TEST(staying == 1);
  std::string bad = resnet18_three_tier;
  bad.insert(bad.rfind('}'), R"(, "codecs": [{"tensor": "maxpool", "to": "edge1", "codec": "lz4"}])");
  BOOST_TEST(build_error(g, bad).find("'lz4'") != std::string::npos, build_error(g, bad));
  bad = resnet18_three_tier;
  bad.insert(bad.rfind('}'), R"(, "codecs": [{"tensor": "nope", "to": "edge1", "codec": "zstd"}])");
  BOOST_TEST(build_error(g, bad).find("'nope'") != std::string::npos, build_error(g, bad));

  // An untiled device | cloud split, the crossing encoded: the transfer's bytes are what the device
  // stage reported sending, not the raw size.
  const std::string split = R"({"segments": [{"node": "device", "first": "conv1", "last": "maxpool"},
                                             {"node": "cloud", "first": "layer1.0.conv1", "last": "fc"}],
                                "codecs": [{"tensor": "maxpool", "to": "cloud", "codec": "zstd"}]})";
  const stage_graph two = build(g, split);
  request_accounting accounting(g, two, "device");
  std::vector<stage_report> reports(2);
  reports[0] = {0, 0.0, 10.0, 5.0, 12345, 0.1};
  reports[1] = {1, 30.0, 50.0, 10.0, 0, 0.1};
  const auto transfers = accounting.transfers(reports, 0.0, 60.0, 0);
  bool seen = false;
  for (const transfer_observation& t : transfers)
    if (t.from == "device" && t.to == "cloud") {
      seen = true;
      BOOST_TEST(t.bytes == 12345u);
      BOOST_TEST(t.ms == 20.0);
    }
  BOOST_TEST(seen);
}

BOOST_AUTO_TEST_CASE(a_transfer_is_observed_only_when_the_receiver_waited_for_it) {
  // A run tiled over edge1 and edge2 with its gather on edge1: the gather has one remote producer
  // (edge2's tile) and one local one (edge1's tile). Its ready time is edge2's tile's arrival only
  // when edge1's tile had finished before it.
  graph g = load("resnet18");
  const stage_graph sg = build(g, R"({"segments": [{"node": "device", "first": "conv1", "last": "maxpool"},
                                                   {"node": "edge1", "first": "layer1.0.conv1", "last": "layer2.1.add"},
                                                   {"node": "cloud", "first": "layer3.0.conv1", "last": "fc"}],
                                      "tiled_runs": [{"first": "layer1.0.conv1", "last": "layer2.1.add", "grid": "2x1",
                                                      "nodes": ["edge1", "edge2"], "gather_node": "edge1"}]})");
  int gather = -1, local_tile = -1, remote_tile = -1;
  for (const stage& st : sg.stages) {
    if (st.kind == stage_kind::gather) gather = st.id;
    if (st.kind == stage_kind::tile) (st.node == "edge1" ? local_tile : remote_tile) = st.id;
  }
  BOOST_REQUIRE(gather >= 0 && local_tile >= 0 && remote_tile >= 0);
  BOOST_REQUIRE(sg.stages[size_t(gather)].node == "edge1");
  request_accounting accounting(g, sg, "device");
  auto gather_transfer = [&](double local_finish_ms, double gather_ready_ms) -> std::optional<double> {
    std::vector<stage_report> reports;
    for (const stage& st : sg.stages) reports.push_back({st.id, 0.0, 1.0, 0.0, 0, 0.0});
    reports[size_t(remote_tile)].finish_ms = 20.0;
    reports[size_t(local_tile)].finish_ms = local_finish_ms;
    reports[size_t(gather)].ready_ms = gather_ready_ms;
    std::optional<double> ms;
    for (const transfer_observation& t : accounting.transfers(reports, 0.0, 100.0))
      if (t.from == "edge2" && t.to == "edge1") {
        BOOST_TEST(!ms.has_value());  // one observation of that crossing per request
        ms = t.ms;
      }
    return ms;
  };
  // The local tile finished first: the gather waited for edge2's tile, 5 ms on the link.
  auto seen = gather_transfer(18.0, 25.0);
  BOOST_REQUIRE(seen.has_value());
  BOOST_TEST(*seen == 5.0);
  // The local tile finished last: the gather waited for it, and edge2's arrival is unknown.
  BOOST_TEST(!gather_transfer(37.0, 37.0).has_value());
  // Within the margin of a local message's delivery: unknown too.
  BOOST_TEST(!gather_transfer(24.5, 25.0).has_value());
}

BOOST_AUTO_TEST_CASE(a_plan_repaired_after_a_node_loss_runs_bit_for_bit_on_the_nodes_left) {
  graph g = load("resnet18");
  auto plan = parse_plan_json(R"({"segments": [{"node": "device", "first": "conv1", "last": "maxpool"},
                                               {"node": "edge1", "first": "layer1.0.conv1", "last": "layer2.1.add"},
                                               {"node": "cloud", "first": "layer3.0.conv1", "last": "fc"}],
                                  "tiled_runs": [{"first": "layer1.0.conv1", "last": "layer2.1.add", "grid": "2x2",
                                                  "nodes": ["edge1", "edge2", "edge3", "edge4"]}]})");
  BOOST_REQUIRE(plan.is_ok());
  tensor x = random_tensor(g.layers[g.input_layers()[0]].output_shape, 9);
  auto whole = executor::create(g);
  BOOST_REQUIRE(whole.is_ok());
  auto expected = (*whole)->run({&x});
  BOOST_REQUIRE(expected.is_ok());
  auto check = [&](const deployment_plan& p) {
    auto sg = build_stage_graph(g, p);
    BOOST_REQUIRE_MESSAGE(sg.is_ok(), sg.message());
    BOOST_TEST(bitwise_equal(run_stages(g, *sg, x).at(sg->graph_outputs[0]), expected.value()[0]), describe(p));
  };
  std::map<std::string, std::string> all = {{"device", "device"}, {"edge1", "edge"}, {"edge2", "edge"},
                                            {"edge3", "edge"}, {"edge4", "edge"}, {"cloud", "cloud"}};
  // edge2 lost: the run is re-split over the three tile nodes left.
  auto no_edge2 = all;
  no_edge2.erase("edge2");
  auto repaired = repair_plan(g, *plan, no_edge2);
  BOOST_REQUIRE_MESSAGE(repaired.is_ok(), repaired.message());
  BOOST_REQUIRE_EQUAL(repaired->tiled_runs.size(), 1u);
  BOOST_TEST(repaired->tiled_runs[0].nodes == std::vector<std::string>({"edge1", "edge3", "edge4"}),
             boost::test_tools::per_element());
  BOOST_TEST(repaired->tiled_runs[0].grid == "3x1");
  BOOST_TEST(!plan_nodes(*repaired).count("edge2"));
  check(*repaired);
  // edge1 lost too (it held the segment): the segment moves to edge3, the run to edge3 and edge4.
  auto two_left = no_edge2;
  two_left.erase("edge1");
  repaired = repair_plan(g, *plan, two_left);
  BOOST_REQUIRE_MESSAGE(repaired.is_ok(), repaired.message());
  BOOST_TEST(repaired->segments[1].node == "edge3");
  BOOST_TEST(repaired->tiled_runs[0].grid == "2x1");
  check(*repaired);
  // Every edge lost: the cloud takes the edge segment, the run is dropped.
  std::map<std::string, std::string> no_edges = {{"device", "device"}, {"cloud", "cloud"}};
  repaired = repair_plan(g, *plan, no_edges);
  BOOST_REQUIRE_MESSAGE(repaired.is_ok(), repaired.message());
  BOOST_TEST(repaired->tiled_runs.empty());
  BOOST_TEST(repaired->segments[1].node == "cloud");
  check(*repaired);
  // The cloud lost: an edge takes its work.
  auto no_cloud = all;
  no_cloud.erase("cloud");
  repaired = repair_plan(g, *plan, no_cloud);
  BOOST_REQUIRE(repaired.is_ok());
  BOOST_TEST(repaired->segments[2].node == "edge1");
  check(*repaired);
  // The device node lost (the app lives on): its segment goes to an edge, the tiles stay.
  auto no_device = all;
  no_device.erase("device");
  repaired = repair_plan(g, *plan, no_device);
  BOOST_REQUIRE_MESSAGE(repaired.is_ok(), repaired.message());
  BOOST_TEST(repaired->segments[0].node == "edge1");
  BOOST_TEST(repaired->tiled_runs.size() == 1u);
  BOOST_TEST(!plan_nodes(*repaired).count("device"));
  check(*repaired);
  // Only the cloud left: it takes everything.
  repaired = repair_plan(g, *plan, {{"cloud", "cloud"}});
  BOOST_REQUIRE_MESSAGE(repaired.is_ok(), repaired.message());
  BOOST_TEST(plan_nodes(*repaired) == std::set<std::string>({"cloud"}), boost::test_tools::per_element());
  check(*repaired);
  // Nothing left: an error naming the node.
  auto none = repair_plan(g, *plan, {});
  BOOST_TEST(!none.is_ok());
  BOOST_TEST(none.message().find("no node is left") != std::string::npos, none.message());
}

BOOST_AUTO_TEST_CASE(renaming_nodes_renames_every_place_a_plan_names_one) {
  deployment_plan plan;
  plan.segments = {{"device", "a", "b"}, {"edge1", "c", "d"}, {"cloud", "e", "f"}};
  plan.tiled_runs = {{"c", "d", "1x2", {"edge1", "edge2"}, "edge1", "edge2", {}, {}}};
  plan.codecs = {{"b", "edge1", tensor_codec::raw}, {"d", "cloud", tensor_codec::raw}};
  const deployment_plan renamed = with_nodes_renamed(plan, {{"edge1", "edge3"}, {"edge2", "edge1"}});
  BOOST_TEST(renamed.segments[0].node == "device");
  BOOST_TEST(renamed.segments[1].node == "edge3");
  BOOST_TEST(renamed.segments[2].node == "cloud");
  BOOST_TEST(renamed.tiled_runs[0].nodes == (std::vector<std::string>{"edge3", "edge1"}));
  BOOST_TEST(renamed.tiled_runs[0].scatter_node == "edge3");
  BOOST_TEST(renamed.tiled_runs[0].gather_node == "edge1");
  BOOST_TEST(renamed.codecs[0].to == "edge3");
  BOOST_TEST(renamed.codecs[1].to == "cloud");
  BOOST_TEST(renamed.segments[1].first == "c");
}
