// ONNX external data: initializers whose bytes live in files beside the model (torch.onnx writes
// them for models over protobuf's 2 GB limit). Each file is mapped once and each tensor's bytes are
// read from the mapping when the importer first needs them, so the weights are read once, not
// loaded into the protobuf and again into the graph.
#pragma once

#include <onnx/onnx_pb.h>

#include <map>
#include <memory>
#include <string>

#include "base/status.hpp"

namespace d3 {
namespace onnx_detail {

class external_data {
 public:
  // `model_path`: the .onnx file, whose directory holds the data files; empty when the model came
  // from memory (then external data is an error).
  explicit external_data(std::string model_path);
  ~external_data();
  external_data(const external_data&) = delete;
  external_data& operator=(const external_data&) = delete;

  // Copies the bytes `t`'s external_data entries name (location, offset, length) into its
  // raw_data and marks it as stored inline. Errors name what is wrong: a location outside the
  // model's directory (absolute, or through ".."), an unreadable file, a range past its end.
  status load_into(onnx::TensorProto& t);

 private:
  struct mapping;
  result<const mapping*> map(const std::string& location);
  std::string directory_;
  bool from_memory_;
  std::map<std::string, std::unique_ptr<mapping>> files_;
};

}  // namespace onnx_detail
}  // namespace d3
