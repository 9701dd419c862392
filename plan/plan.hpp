// Deployment plans and the stage graph the runtime deploys. Pure logic on the graph IR: no actors,
// no sockets (the runtime turns each stage into one actor on its node).
//
// A plan names, in execution order, contiguous segments of the model's computed layers and the
// node each runs on, plus tiled runs (kernels/tiling.hpp) inside segments, each tile on its own
// node. JSON form (apps/config/*.plan.json):
//   {"version": 1, "strategy": "file",
//    "segments": [{"node": "device", "first": "conv1", "last": "maxpool"},
//                 {"node": "edge1", "first": "layer1.0.conv1", "last": "layer2.1.add"},
//                 {"node": "cloud", "first": "layer3.0.conv1", "last": "fc"}],
//    "tiled_runs": [{"first": "layer1.0.conv1", "last": "layer2.1.add", "grid": "2x1",
//                    "nodes": ["edge1", "edge2"]}]}
// A tiled run may carry "row_weights" and "col_weights" (R and C positive numbers): tile heights
// and widths proportional to them, e.g. to the speeds of the nodes computing them.
// An optional "order" lists every computed layer in the execution order the segments refer to
// (any topological order); without it, the graph's own topological order. A min-cut split (DADS)
// places a set of layers closed under predecessors on the device, which is a prefix of some
// topological order but not always of the graph's own one.
#pragma once

#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/graph.hpp"
#include "base/status.hpp"
#include "codec/tensor_codec.hpp"
#include "kernels/tiling.hpp"

namespace d3 {

struct plan_segment {
  std::string node;
  std::string first, last;  // layer names; the segment is every computed layer between them
};

struct plan_tiled_run {
  std::string first, last;         // layer names, inside one segment
  std::string grid;                // "RxC"
  std::vector<std::string> nodes;  // one per tile, row-major
  std::string scatter_node;        // optional: default, the node producing the run's first input
  std::string gather_node;         // optional: default, the node of the run output's first reader
  // Optional uneven tiles (e.g. by node speed): R row weights and C column weights, tile sizes
  // proportional to them (tile_grid::proportional); empty: uniform.
  std::vector<double> row_weights, col_weights;
};

// How one tensor travels to one node (codec/tensor_codec.hpp). `tensor` is a layer's name and
// covers every tile part of it ("T@tile<k>") sent to `to`; `to` may be the app's node.
struct plan_codec {
  std::string tensor;
  std::string to;
  tensor_codec codec = tensor_codec::raw;
};

struct deployment_plan {
  int version = 1;
  std::string strategy = "file";
  std::vector<plan_segment> segments;
  std::vector<plan_tiled_run> tiled_runs;
  std::vector<std::string> order;  // optional: computed layers in execution order
  // Optional: tensors that travel encoded, chosen by the planner (planner/codec_choice.hpp) or
  // written by hand: "codecs": [{"tensor": "layer1.0.relu", "to": "edge1", "codec": "sparse"}].
  // Every other crossing is raw.
  std::vector<plan_codec> codecs;
};

// The codec of `tensor` (a layer's name, or a tile part "T@tile<k>" of one) sent to node `to`.
tensor_codec codec_for(const std::vector<plan_codec>& codecs, const std::string& tensor, const std::string& to);

result<deployment_plan> parse_plan_json(const std::string& text);
result<deployment_plan> load_plan_file(const std::string& path);
std::string to_json(const deployment_plan& plan);
// `plan` with every node it names (segments, tiles, scatter and gather, codec destinations)
// renamed by `rename`; names not in it stay.
deployment_plan with_nodes_renamed(const deployment_plan& plan, const std::map<std::string, std::string>& rename);
// One line for reports: "device conv1..maxpool; edge1 layer1.0.conv1..fc; tiled 2x1 ... over edge1,edge2".
std::string describe(const deployment_plan& plan);

enum class stage_kind { segment, scatter, tile, gather };
const char* to_string(stage_kind kind);

// The name of tile k's share of tensor T: "T@tile<k>" (its input region, or its region of the run
// output); tile_suffix(k) is "@tile<k>".
std::string tile_suffix(int tile);
std::string tile_tensor(const std::string& tensor, int tile);
// The layer a tensor name belongs to: "T" for "T@tile<k>" and for "T".
std::string whole_tensor(const std::string& tensor);

// One actor of a deployment. Tensor names are layer names; a tile's share of tensor T for tile k
// is tile_tensor(T, k) (its input regions, and its output region of the run output).
struct stage {
  int id = -1;
  stage_kind kind = stage_kind::segment;
  std::string node;
  std::vector<int> layers;           // segment: its layers; tile: the run's layers
  std::vector<std::string> inputs;   // tensors it waits for, per request
  std::vector<std::string> outputs;  // tensors it produces, per request
  int run = -1;                      // scatter, tile, gather: index into stage_graph::runs
  int tile = -1;                     // tile: index of the tile
};

// Who receives a tensor: stage ids (in ascending order) and/or the app (graph outputs).
struct route {
  int from_stage = -1;  // -1: the app (graph inputs)
  std::string tensor;
  std::vector<int> to_stages;
  bool to_app = false;
};

struct stage_graph {
  std::vector<stage> stages;  // execution order: every stage comes after the stages it reads from
  std::vector<route> routes;  // one per (producer, tensor)
  std::vector<tiled_run> runs;
  std::vector<std::vector<tile_geometry>> tiles;  // per run, per tile
  std::vector<std::string> graph_inputs, graph_outputs;
  std::vector<plan_codec> codecs;  // the plan's (validated against the graph's layer names)
};

// The codec route `r` sends its tensor with to stage `to_stage` (one of r.to_stages). Codecs are
// for links: a tensor that stays on its node (a gather feeding the segment beside it, though the
// plan names a codec for that tensor to that node, for the tile parts crossing there) goes raw.
// The app's inputs (from_stage -1) leave another process: the plan's codec for the stage's node.
tensor_codec route_codec(const stage_graph& sg, const route& r, int to_stage);

// Precondition: g prepared. Errors name the plan entry and the layer: unknown layer, segments
// that overlap, leave a gap or run backwards, a tiled run outside one segment or not tileable,
// a tile count that does not match the grid.
// `memo` (optional, for one graph only) keeps work plans of the same graph share: its
// topological order and each tiled run's geometry by (first, last, grid, weights).
struct stage_graph_memo {
  std::vector<int> topological;
  std::map<std::tuple<int, int, std::string, std::vector<double>, std::vector<double>>,
           std::pair<tiled_run, std::vector<tile_geometry>>>
      runs;
};
result<stage_graph> build_stage_graph(const graph& g, const deployment_plan& plan, stage_graph_memo* memo = nullptr);

// Bytes of one tensor a stage sends: a layer's whole output, or for "T@tile<k>" tile k's region
// of T (its input region, or its share of the run output). 0 for an unknown tensor.
size_t tensor_bytes(const graph& g, const stage_graph& s, const std::string& tensor);

// Per layer of stage `s` (in s.layers order), the share of the layer's output it computes: 1 for
// a segment, the tile's computed area over the whole map for a tile (halo included); empty for
// scatter and gather, which compute nothing.
std::vector<double> layer_shares(const graph& g, const stage_graph& sg, const stage& s);

// Bytes that cross between nodes per request (each tensor once per destination node), by
// (from node, to node); the app is the node named "app". For accounting and tests.
struct link_bytes {
  std::string from, to;
  size_t bytes = 0;
};
std::vector<link_bytes> bytes_between_nodes(const graph& g, const stage_graph& s, const std::string& app_node);

}  // namespace d3
