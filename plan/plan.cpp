#include "plan/plan.hpp"

#include <climits>

#include "base/json_integer.hpp"
#include "base/text_file.hpp"

#include <algorithm>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

namespace d3 {

namespace {

using json = nlohmann::json;

std::vector<std::string> names_of(const graph& g, const std::vector<int>& layers) {
  std::vector<std::string> names;
  for (int l : layers) names.push_back(g.layers[l].name);
  return names;
}

}  // namespace

namespace {
constexpr const char* tile_marker = "@tile";
}  // namespace

std::string tile_suffix(int tile) { return tile_marker + std::to_string(tile); }

std::string tile_tensor(const std::string& tensor, int tile) { return tensor + tile_suffix(tile); }

std::string whole_tensor(const std::string& tensor) { return tensor.substr(0, tensor.find(tile_marker)); }

const char* to_string(stage_kind kind) {
  switch (kind) {
    case stage_kind::segment: return "segment";
    case stage_kind::scatter: return "scatter";
    case stage_kind::tile: return "tile";
    case stage_kind::gather: return "gather";
  }
  return "unknown";
}

result<deployment_plan> parse_plan_json(const std::string& text) {
  try {
    json j = json::parse(text);
    deployment_plan plan;
    if (j.contains("version")) {
      auto version = json_integer(j["version"], 0, INT32_MAX);
      if (!version) return status::error("plan: 'version' must be an integer in [0, 2147483647]");
      plan.version = int(*version);
    }
    plan.strategy = j.value("strategy", std::string("file"));
    if (!j.contains("segments") || !j["segments"].is_array() || j["segments"].empty())
      return status::error("plan: 'segments' must be a non-empty list");
    for (const json& s : j["segments"]) {
      plan_segment seg;
      seg.node = s.at("node").get<std::string>();
      seg.first = s.at("first").get<std::string>();
      seg.last = s.at("last").get<std::string>();
      plan.segments.push_back(seg);
    }
    if (j.contains("tiled_runs"))
      for (const json& r : j.at("tiled_runs")) {
        plan_tiled_run run;
        run.first = r.at("first").get<std::string>();
        run.last = r.at("last").get<std::string>();
        run.grid = r.at("grid").get<std::string>();
        run.nodes = r.at("nodes").get<std::vector<std::string>>();
        run.scatter_node = r.value("scatter_node", std::string());
        run.gather_node = r.value("gather_node", std::string());
        if (r.contains("row_weights")) run.row_weights = r.at("row_weights").get<std::vector<double>>();
        if (r.contains("col_weights")) run.col_weights = r.at("col_weights").get<std::vector<double>>();
        plan.tiled_runs.push_back(run);
      }
    if (j.contains("order")) plan.order = j.at("order").get<std::vector<std::string>>();
    if (j.contains("codecs"))
      for (const json& c : j.at("codecs")) {
        plan_codec pc;
        pc.tensor = c.at("tensor").get<std::string>();
        pc.to = c.at("to").get<std::string>();
        const std::string name = c.at("codec").get<std::string>();
        auto codec = parse_tensor_codec(name);
        if (!codec)
          return status::error("plan: codec '" + name + "' of tensor '" + pc.tensor + "' is unknown (raw, u8, sparse, zstd, sparse_zstd)");
        pc.codec = *codec;
        plan.codecs.push_back(pc);
      }
    return plan;
  } catch (const std::exception& e) {
    return status::error(std::string("plan: malformed JSON (") + e.what() + ")");
  }
}

result<deployment_plan> load_plan_file(const std::string& path) {
  auto text = read_text_file(path, "plan file");
  if (!text) return text.error();
  auto plan = parse_plan_json(*text);
  if (!plan) return status::error("plan file '" + path + "': " + plan.message());
  return plan;
}

deployment_plan with_nodes_renamed(const deployment_plan& plan, const std::map<std::string, std::string>& rename) {
  auto to = [&](std::string& node) {
    auto it = rename.find(node);
    if (it != rename.end()) node = it->second;
  };
  deployment_plan out = plan;
  for (plan_segment& s : out.segments) to(s.node);
  for (plan_tiled_run& r : out.tiled_runs) {
    for (std::string& n : r.nodes) to(n);
    if (!r.scatter_node.empty()) to(r.scatter_node);
    if (!r.gather_node.empty()) to(r.gather_node);
  }
  for (plan_codec& c : out.codecs) to(c.to);
  return out;
}

std::string describe(const deployment_plan& plan) {
  std::string out;
  auto add = [&](const std::string& part) { out += (out.empty() ? "" : "; ") + part; };
  for (const plan_segment& s : plan.segments) add(s.node + " " + s.first + ".." + s.last);
  for (const plan_tiled_run& r : plan.tiled_runs) {
    std::string nodes;
    for (const std::string& n : r.nodes) nodes += (nodes.empty() ? "" : ",") + n;
    add("tiled " + r.grid + " " + r.first + ".." + r.last + " over " + nodes);
  }
  return out;
}

std::string to_json(const deployment_plan& plan) {
  json j;
  j["version"] = plan.version;
  j["strategy"] = plan.strategy;
  j["segments"] = json::array();
  for (const plan_segment& s : plan.segments) j["segments"].push_back({{"node", s.node}, {"first", s.first}, {"last", s.last}});
  j["tiled_runs"] = json::array();
  for (const plan_tiled_run& r : plan.tiled_runs) {
    json run = {{"first", r.first}, {"last", r.last}, {"grid", r.grid}, {"nodes", r.nodes}};
    if (!r.scatter_node.empty()) run["scatter_node"] = r.scatter_node;
    if (!r.gather_node.empty()) run["gather_node"] = r.gather_node;
    if (!r.row_weights.empty()) run["row_weights"] = r.row_weights;
    if (!r.col_weights.empty()) run["col_weights"] = r.col_weights;
    j["tiled_runs"].push_back(run);
  }
  if (!plan.order.empty()) j["order"] = plan.order;
  if (!plan.codecs.empty()) {
    j["codecs"] = json::array();
    for (const plan_codec& c : plan.codecs)
      j["codecs"].push_back({{"tensor", c.tensor}, {"to", c.to}, {"codec", to_string(c.codec)}});
  }
  return j.dump(2);
}

tensor_codec route_codec(const stage_graph& sg, const route& r, int to_stage) {
  const std::string& to = sg.stages[size_t(to_stage)].node;
  if (r.from_stage >= 0 && sg.stages[size_t(r.from_stage)].node == to) return tensor_codec::raw;
  return codec_for(sg.codecs, r.tensor, to);
}

tensor_codec codec_for(const std::vector<plan_codec>& codecs, const std::string& tensor, const std::string& to) {
  const std::string whole = whole_tensor(tensor);
  for (const plan_codec& c : codecs)
    if (c.to == to && c.tensor == whole) return c.codec;
  return tensor_codec::raw;
}

result<stage_graph> build_stage_graph(const graph& g, const deployment_plan& plan, stage_graph_memo* memo) {
  if (!memo || memo->topological.empty()) {
    auto order_result = topological_order(g);
    if (!order_result) return order_result.error();
    if (!memo) {
      stage_graph_memo local;
      local.topological = std::move(order_result.value());
      return build_stage_graph(g, plan, &local);
    }
    memo->topological = std::move(order_result.value());
  }
  std::vector<int> order;
  for (int i : memo->topological)
    if (g.layers[i].kind != layer_kind::input) order.push_back(i);
  if (!plan.order.empty()) {
    // An explicit order: every computed layer once, each after the layers it reads.
    if (plan.order.size() != order.size())
      return status::error("plan: 'order' lists " + std::to_string(plan.order.size()) + " layers but the model has " +
                           std::to_string(order.size()) + " computed layers");
    std::vector<bool> placed(g.layers.size(), false);
    for (int l = 0; l < int(g.layers.size()); ++l) placed[size_t(l)] = g.layers[size_t(l)].kind == layer_kind::input;
    order.clear();
    for (const std::string& name : plan.order) {
      const int l = g.find(name);
      if (l < 0 || g.layers[size_t(l)].kind == layer_kind::input)
        return status::error("plan: 'order' names '" + name + "', which is no computed layer");
      if (placed[size_t(l)]) return status::error("plan: 'order' names '" + name + "' twice");
      for (int in : g.layers[size_t(l)].inputs)
        if (!placed[size_t(in)])
          return status::error("plan: 'order' places '" + name + "' before its input '" + g.layers[size_t(in)].name + "'");
      placed[size_t(l)] = true;
      order.push_back(l);
    }
  }
  std::map<std::string, int> position;
  for (size_t p = 0; p < order.size(); ++p) position[g.layers[order[p]].name] = int(p);
  auto locate = [&](const std::string& what, const std::string& name) -> result<int> {
    auto it = position.find(name);
    if (it == position.end()) return status::error("plan: " + what + ": no computed layer named '" + name + "'");
    return it->second;
  };

  // Segments: contiguous, in order, covering every computed layer exactly once.
  struct span {
    int begin, end;  // positions, inclusive
  };
  std::vector<span> segments;
  for (size_t i = 0; i < plan.segments.size(); ++i) {
    const plan_segment& s = plan.segments[i];
    const std::string what = "segment " + std::to_string(i) + " (" + s.node + ")";
    if (s.node.empty()) return status::error("plan: " + what + " names no node");
    auto b = locate(what, s.first);
    if (!b) return b.error();
    auto e = locate(what, s.last);
    if (!e) return e.error();
    if (*e < *b) return status::error("plan: " + what + ": '" + s.last + "' runs before '" + s.first + "'");
    const int expected = segments.empty() ? 0 : segments.back().end + 1;
    if (*b != expected)
      return status::error("plan: " + what + " starts at '" + s.first + "' but the layer after the previous segment is '" +
                           g.layers[order[size_t(expected)]].name + "' (segments must follow each other without gap or overlap)");
    segments.push_back({*b, *e});
  }
  if (segments.back().end != int(order.size()) - 1)
    return status::error("plan: the segments end at '" + g.layers[order[size_t(segments.back().end)]].name +
                         "'; layers up to '" + g.layers[order.back()].name + "' are not placed");

  stage_graph sg;

  // Tiled runs: validated, planned, and assigned to their segment.
  struct run_span {
    int begin, end, run;
  };
  std::vector<std::vector<run_span>> runs_in_segment(segments.size());
  for (size_t r = 0; r < plan.tiled_runs.size(); ++r) {
    const plan_tiled_run& pr = plan.tiled_runs[r];
    const std::string what = "tiled run " + std::to_string(r) + " (" + pr.first + ".." + pr.last + ")";
    auto b = locate(what, pr.first);
    if (!b) return b.error();
    auto e = locate(what, pr.last);
    if (!e) return e.error();
    const auto key = std::make_tuple(order[size_t(*b)], order[size_t(*e)], pr.grid, pr.row_weights, pr.col_weights);
    auto known = memo->runs.find(key);
    if (known == memo->runs.end()) {
      auto run = make_tiled_run(g, order[size_t(*b)], order[size_t(*e)]);
      if (!run) return status::error("plan: " + what + ": " + run.message());
      const tensor_shape& out = g.layers[run->output].output_shape;
      auto grid = tile_grid::parse(pr.grid, out.h, out.w);
      if (!grid) return status::error("plan: " + what + ": " + grid.message());
      if (!pr.row_weights.empty() || !pr.col_weights.empty()) {
        if (int(pr.row_weights.size()) != grid->rows() || int(pr.col_weights.size()) != grid->cols())
          return status::error("plan: " + what + ": grid " + pr.grid + " needs " + std::to_string(grid->rows()) +
                               " row weights and " + std::to_string(grid->cols()) + " column weights, got " +
                               std::to_string(pr.row_weights.size()) + " and " + std::to_string(pr.col_weights.size()));
        grid = tile_grid::proportional(pr.row_weights, pr.col_weights, out.h, out.w);
        if (!grid) return status::error("plan: " + what + ": " + grid.message());
      }
      auto tiles = plan_tiles(g, *run, *grid);
      if (!tiles) return status::error("plan: " + what + ": " + tiles.message());
      known = memo->runs.emplace(key, std::make_pair(std::move(run.value()), std::move(tiles.value()))).first;
    }
    const tiled_run& run = known->second.first;
    if (int(pr.nodes.size()) != int(known->second.second.size()))
      return status::error("plan: " + what + ": grid " + pr.grid + " has " + std::to_string(known->second.second.size()) +
                           " tiles but " + std::to_string(pr.nodes.size()) + " nodes are named");
    if (!plan.order.empty()) {  // with an explicit order, the run must be contiguous in it too
      std::set<int> in_run(run.layers.begin(), run.layers.end()), in_span(order.begin() + *b, order.begin() + *e + 1);
      if (in_run != in_span)
        return status::error("plan: " + what + ": the run's layers are not contiguous in the plan's order");
    }
    size_t seg = 0;
    while (seg < segments.size() && segments[seg].end < *b) ++seg;
    if (seg == segments.size() || *e > segments[seg].end)
      return status::error("plan: " + what + " crosses a segment boundary; a tiled run lies inside one segment");
    for (const run_span& other : runs_in_segment[seg])
      if (!(*e < other.begin || *b > other.end)) return status::error("plan: " + what + " overlaps another tiled run");
    runs_in_segment[seg].push_back({*b, *e, int(sg.runs.size())});
    sg.runs.push_back(run);
    sg.tiles.push_back(known->second.second);
  }

  // Stages in execution order.
  std::map<std::string, int> producer;  // tensor -> stage id (absent: the app, i.e. graph inputs)
  auto add_segment_stage = [&](const std::string& node, int begin, int end) {
    stage s;
    s.id = int(sg.stages.size());
    s.kind = stage_kind::segment;
    s.node = node;
    s.layers.assign(order.begin() + begin, order.begin() + end + 1);
    subgraph_boundary b = boundary_of(g, s.layers);
    s.inputs = names_of(g, b.inputs);
    s.outputs = names_of(g, b.outputs);
    for (const std::string& out : s.outputs) producer[out] = s.id;
    sg.stages.push_back(s);
  };
  for (size_t seg = 0; seg < segments.size(); ++seg) {
    std::vector<run_span>& runs = runs_in_segment[seg];
    std::sort(runs.begin(), runs.end(), [](const run_span& a, const run_span& b) { return a.begin < b.begin; });
    int next = segments[seg].begin;
    const std::string& node = plan.segments[seg].node;
    for (const run_span& rs : runs) {
      if (rs.begin > next) add_segment_stage(node, next, rs.begin - 1);
      const tiled_run& run = sg.runs[size_t(rs.run)];
      const plan_tiled_run& pr = plan.tiled_runs[size_t(rs.run)];
      const int tile_count = int(sg.tiles[size_t(rs.run)].size());
      // Scatter next to the producer of the run's input (so the halos travel, not the whole map).
      stage scatter;
      scatter.id = int(sg.stages.size());
      scatter.kind = stage_kind::scatter;
      scatter.run = rs.run;
      scatter.inputs = names_of(g, run.inputs);
      if (!pr.scatter_node.empty()) {
        scatter.node = pr.scatter_node;
      } else {
        auto p = producer.find(scatter.inputs[0]);
        scatter.node = p == producer.end() ? plan.segments[0].node : sg.stages[size_t(p->second)].node;
      }
      for (int t = 0; t < tile_count; ++t)
        for (const std::string& in : scatter.inputs) scatter.outputs.push_back(tile_tensor(in, t));
      sg.stages.push_back(scatter);
      for (int t = 0; t < tile_count; ++t) {
        stage tile;
        tile.id = int(sg.stages.size());
        tile.kind = stage_kind::tile;
        tile.node = pr.nodes[size_t(t)];
        tile.layers = run.layers;
        tile.run = rs.run;
        tile.tile = t;
        for (const std::string& in : scatter.inputs) tile.inputs.push_back(tile_tensor(in, t));
        tile.outputs = {tile_tensor(g.layers[run.output].name, t)};
        sg.stages.push_back(tile);
      }
      // Gather next to the run output's reader: the rest of this segment, else the next segment.
      stage gather;
      gather.id = int(sg.stages.size());
      gather.kind = stage_kind::gather;
      gather.run = rs.run;
      for (int t = 0; t < tile_count; ++t) gather.inputs.push_back(tile_tensor(g.layers[run.output].name, t));
      gather.outputs = {g.layers[run.output].name};
      if (!pr.gather_node.empty())
        gather.node = pr.gather_node;
      else if (rs.end < segments[seg].end)
        gather.node = node;
      else if (seg + 1 < segments.size())
        gather.node = plan.segments[seg + 1].node;
      else
        gather.node = pr.nodes[0];
      sg.stages.push_back(gather);
      for (const stage& s : {scatter, gather})
        for (const std::string& out : s.outputs) producer[out] = s.id;
      for (int t = 0; t < tile_count; ++t) producer[sg.stages[size_t(scatter.id + 1 + t)].outputs[0]] = scatter.id + 1 + t;
      next = rs.end + 1;
    }
    if (next <= segments[seg].end) add_segment_stage(node, next, segments[seg].end);
  }

  // Routes: every produced tensor to the stages that read it, graph outputs to the app.
  std::map<std::pair<int, std::string>, size_t> route_of;
  auto route_for = [&](int from, const std::string& tensor) -> route& {
    auto key = std::make_pair(from, tensor);
    auto it = route_of.find(key);
    if (it == route_of.end()) {
      route r;
      r.from_stage = from;
      r.tensor = tensor;
      it = route_of.emplace(key, sg.routes.size()).first;
      sg.routes.push_back(r);
    }
    return sg.routes[it->second];
  };
  for (const stage& s : sg.stages)
    for (const std::string& in : s.inputs) {
      auto p = producer.find(in);
      int from = p == producer.end() ? -1 : p->second;
      if (from >= s.id) return status::error("plan: stage " + std::to_string(s.id) + " reads '" + in + "' before it is produced");
      route_for(from, in).to_stages.push_back(s.id);
    }
  for (int out : g.outputs) {
    const std::string& name = g.layers[out].name;
    auto p = producer.find(name);
    if (p == producer.end()) return status::error("plan: the graph output '" + name + "' is produced by no stage");
    route_for(p->second, name).to_app = true;
  }
  for (int in : g.input_layers()) sg.graph_inputs.push_back(g.layers[in].name);
  for (int out : g.outputs) sg.graph_outputs.push_back(g.layers[out].name);
  for (const plan_codec& c : plan.codecs) {
    bool known = false;
    for (const layer& l : g.layers) known = known || l.name == c.tensor;
    if (!known) return status::error("plan: codec for tensor '" + c.tensor + "', which is no layer of the graph");
  }
  sg.codecs = plan.codecs;
  return sg;
}

std::vector<double> layer_shares(const graph& g, const stage_graph& sg, const stage& s) {
  std::vector<double> shares;
  if (s.kind == stage_kind::segment) shares.assign(s.layers.size(), 1.0);
  if (s.kind == stage_kind::tile) {
    const tile_geometry& geo = sg.tiles[size_t(s.run)][size_t(s.tile)];
    for (int l : s.layers) shares.push_back(computed_share(g, geo, l));
  }
  return shares;
}

size_t tensor_bytes(const graph& g, const stage_graph& sg, const std::string& tensor) {
  const size_t at = tensor.find(tile_marker);
  if (at == std::string::npos) {
    const int l = g.find(tensor);
    return l < 0 ? 0 : g.layers[size_t(l)].output_shape.bytes();
  }
  const int l = g.find(tensor.substr(0, at));
  const int tile = std::stoi(tensor.substr(at + 5));
  if (l < 0) return 0;
  for (size_t r = 0; r < sg.runs.size(); ++r) {
    const bool used = sg.runs[r].output == l ||
                      std::find(sg.runs[r].inputs.begin(), sg.runs[r].inputs.end(), l) != sg.runs[r].inputs.end();
    if (!used || tile < 0 || size_t(tile) >= sg.tiles[r].size()) continue;
    const tile_geometry& geo = sg.tiles[r][size_t(tile)];
    const region& reg = sg.runs[r].output == l ? geo.output : geo.computed[size_t(l)];
    const tensor_shape& s = g.layers[size_t(l)].output_shape;
    return size_t(s.n) * size_t(reg.rows()) * size_t(reg.cols()) * size_t(s.c) * sizeof(float);
  }
  return 0;
}

std::vector<link_bytes> bytes_between_nodes(const graph& g, const stage_graph& sg, const std::string& app_node) {
  std::map<std::pair<std::string, std::string>, size_t> totals;
  for (const route& r : sg.routes) {
    const std::string from = r.from_stage < 0 ? app_node : sg.stages[size_t(r.from_stage)].node;
    std::set<std::string> destinations;  // a tensor crosses to each destination node once
    for (int s : r.to_stages) destinations.insert(sg.stages[size_t(s)].node);
    if (r.to_app) destinations.insert(app_node);
    for (const std::string& to : destinations)
      if (to != from) totals[{from, to}] += tensor_bytes(g, sg, r.tensor);
  }
  std::vector<link_bytes> result;
  for (const auto& [key, bytes] : totals) result.push_back({key.first, key.second, bytes});
  return result;
}

}  // namespace d3
