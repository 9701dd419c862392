// ONNX models in: reads an ONNX file (opsets 6-18; PyTorch exports 11-17) with Debian's
// libonnx protobuf classes and maps it node by node onto the graph IR. Weights are transposed to
// d3's layouts (kernels/graph.hpp) once, here. Shape arithmetic on constants (Shape, Gather,
// Unsqueeze, Concat feeding Reshape) is folded at import.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/graph.hpp"
#include "base/status.hpp"

namespace d3 {

// The graph as imported: one layer per computing ONNX node (batch norms and activations still
// separate), layer names = ONNX node names (or output tensor names when a node has none), shapes
// inferred. Errors name the file, and for an unsupported op or attribute the op type, the node and
// the attribute.
result<graph> import_onnx_unprepared(const std::string& path);

// The same with prepare_for_inference() applied: what every tool runs.
result<graph> import_onnx(const std::string& path);

// import_onnx from bytes in memory (an ONNX file's content); errors name `source`.
result<graph> import_onnx_bytes(const uint8_t* bytes, size_t size, const std::string& source);

// The layer of `prepared` (import_onnx of a file) that holds the tensor of ONNX node `node`, whose
// output is `output` (a node without a name is named after its output): the node's own layer, or,
// for a batch norm or activation that prepare_for_inference fused away, the layer it was fused
// into (which then holds the fused result). `unprepared` is import_onnx_unprepared of the same file.
// An unknown node, or one that vanished in some other way, is an error naming it.
result<std::string> surviving_layer(const graph& prepared, const graph& unprepared, const std::string& node,
                                    const std::string& output);

// True when `path` ends in ".onnx" (how tools tell ONNX files from d3 model files and names).
bool is_onnx_path(const std::string& path);

}  // namespace d3
