// Messages of the distributed runtime as Cap'n Proto (schema/bundle.capnp), flattened into byte
// vectors (what CAF messages carry, see ../shared/notes/dependencies.md):
//   - a tensor bundle: the tensors one stage sends one destination for one request, with the
//     request id and the plan version it runs under;
//   - a layer shipment: a fragment of a prepared graph (selected layers + input layers standing in
//     for the tensors they read from outside), with or without each layer's weights, tagged with
//     the model hash, so a node caches layers by (model hash, layer name);
//   - a stage spec: what a node builds one stage actor (segment, scatter, tile, gather) from.
// Every decoder validates sizes, indices and shapes and never crashes on corrupt bytes: it
// returns an error naming what is wrong.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kernels/graph.hpp"
#include "base/status.hpp"
#include "codec/tensor_codec.hpp"
#include "kernels/tensor.hpp"
#include "kernels/tiling.hpp"
#include "plan/plan.hpp"
#include "schema/tensor_message.hpp"

namespace d3 {

// ------------------------------------------------------------------ tensor bundles

struct tensor_bundle {
  uint64_t request_id = 0;
  uint32_t plan_version = 0;
  std::vector<named_tensor> tensors;
  double virtual_ms = 0;  // virtual clock (emulation): when the bundle arrives at its destination
};

struct tensor_ref {
  std::string name;
  const tensor* value = nullptr;
  // How its data travels (codec/tensor_codec.hpp); a codec that does not apply to the values, or
  // would not make them smaller, falls back to raw (the receiver reads the codec from the message).
  tensor_codec codec = tensor_codec::raw;
};

// One flat, 8-byte aligned message; the floats are copied once. Empty when it cannot be one
// message (a tensor of 512 MiB or more).
// `virtual_ms`: the bundle's virtual arrival time (emulation, virtual clock; 0 otherwise).
// `payload_bytes` (optional): set to the tensors' data bytes as encoded (what a link carries).
std::vector<uint8_t> encode_bundle(uint64_t request_id, uint32_t plan_version, const std::vector<tensor_ref>& tensors,
                                   double virtual_ms = 0, size_t* payload_bytes = nullptr);
std::vector<uint8_t> encode_bundle(const tensor_bundle& bundle);
// Sets the virtual arrival time of an encoded bundle in place (the sender knows it only after
// encoding, whose time the virtual clock charges). Errors when `bytes` is no bundle.
status set_bundle_virtual_ms(std::vector<uint8_t>& bytes, double virtual_ms);
result<tensor_bundle> decode_bundle(const uint8_t* bytes, size_t size);
// The request id of a bundle whose tensors may be corrupt (for error replies); nullopt when the
// bytes are not even a readable bundle header.
std::optional<uint64_t> peek_request_id(const uint8_t* bytes, size_t size);

// ------------------------------------------------------------------ layer shipments

// A 64-bit hash of a prepared graph: name, structure and every weight and bias byte. Equal
// hashes mean the same model (the key of the nodes' layer caches).
uint64_t model_hash(const graph& g);

struct layer_shipment {
  uint64_t model_hash = 0;
  graph fragment;                     // input layers first, then the selected layers
  std::vector<bool> weights_included; // per fragment layer
};

// The fragment of `g` (prepared, shapes inferred) made of `layers` (computed layers, in execution
// order): one input layer per tensor they read from outside (named after its producer, shaped
// like its output), the selected layers with edges renumbered, outputs = the tensors leaving the
// selection (boundary_of). Weights are shared, not copied; only layers listed in `with_weights`
// keep them.
layer_shipment make_fragment(const graph& g, const std::vector<int>& layers, uint64_t model_hash,
                             const std::vector<int>& with_weights);
std::vector<uint8_t> encode_shipment(const layer_shipment& shipment);
// encode_shipment(make_fragment(...)).
std::vector<uint8_t> encode_layers(const graph& g, const std::vector<int>& layers, uint64_t model_hash,
                                   const std::vector<int>& with_weights);
// Validates every field (kinds, edges, window sizes, weight byte counts) but does not infer
// shapes (layers without their weights would fail that): callers fill weights in, then call
// infer_shapes(). Weights are copied out of `bytes`.
// `max_layers`: a shipment listing more layers is refused before any layer is read.
result<layer_shipment> decode_shipment(const uint8_t* bytes, size_t size, size_t max_layers = SIZE_MAX);

// ------------------------------------------------------------------ stage specs


struct region_copy {
  std::string whole;  // the whole tensor
  std::string part;   // its part ("T@tile<k>")
  region area;
};

struct stage_spec {
  int stage_id = -1;
  stage_kind type = stage_kind::segment;
  uint32_t plan_version = 0;
  uint64_t model_hash = 0;
  std::vector<std::string> inputs, outputs;
  layer_shipment fragment;            // segment, tile: the layers, weights usually left out
  // tile: the run is every computed layer of the fragment; the grid cuts the run's output.
  int tile_index = -1;
  std::vector<int> grid_row_bounds, grid_col_bounds;
  std::vector<region> tile_input_regions;  // expected, per input
  region tile_output_region;
  // scatter: parts cut out of the inputs; gather: parts put into the output.
  std::vector<region_copy> copies;
  tensor_shape whole_shape{0, 0, 0, 0};    // gather: the output's shape
};

std::vector<uint8_t> encode_stage_spec(const stage_spec& spec);
result<stage_spec> decode_stage_spec(const uint8_t* bytes, size_t size);

}  // namespace d3
