// d3 model files: a Cap'n Proto message (schema/model.capnp) holding a graph and its weights.
// Loading maps the file read-only and lets the graph's weight blobs point into the mapping, so a
// model's weights are copied at most once (when the executor packs them).
#pragma once

#include <cstdint>
#include <string>

#include "kernels/graph.hpp"
#include "base/status.hpp"

namespace d3 {

// Writes `g` (shapes inferred) to `path`. Errors name the file and the failing step.
status save_model(const graph& g, const std::string& path);

// Reads a model file and validates it completely (magic, version, layer kinds, edges, weight sizes,
// shapes) before returning it with prepare_for_inference() applied. Never crashes on a malformed
// or truncated file: returns an error naming the file and what is wrong.
result<graph> load_model(const std::string& path);

// The same from bytes in memory (copied once, word-aligned); errors start with `source`.
result<graph> parse_model(const uint8_t* bytes, size_t size, const std::string& source);

// True when the file starts with a d3 model file's magic (used to tell files from model names).
bool looks_like_model_file(const std::string& path);

}  // namespace d3
