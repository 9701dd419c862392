// One layer's fields in Cap'n Proto (schema/model.capnp's Layer), written and read in one place
// for model files and runtime layer shipments. Weights and biases are left to the callers: a model
// file borrows them from its mapping, a shipment copies them.
#pragma once

#include <string>

#include "kernels/graph.hpp"
#include "base/status.hpp"
#include "schema/model.capnp.h"

namespace d3 {

// Sanity bounds that keep shape arithmetic in range for anything read from bytes.
constexpr int max_layer_dimension = 1 << 20;
constexpr int max_layer_window = 1 << 16;
constexpr int max_layer_channels = 1 << 24;

capnp::Text::Reader capnp_text(const std::string& s);
std::string std_string(capnp::Text::Reader t);

// Writes every field of `l` but its weights and bias. Precondition: no negative input index.
void write_layer_fields(schema::Layer::Builder lb, const layer& l);

// Reads every field but weights and bias into `l`, validating what could make later arithmetic
// overflow or index out of bounds: a known kind, inputs below `layer_count`, dimensions, windows,
// channels, epsilon and activation in range. Errors start with `what` (e.g. "layer 3 'conv1'").
status read_layer_fields(schema::Layer::Reader lr, size_t layer_count, const std::string& what, layer& l);

}  // namespace d3
