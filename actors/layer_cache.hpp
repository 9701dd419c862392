// The node's layer cache: decoded layers (with their weights) keyed by (model hash, layer name),
// one per process, shared by every stage actor the node hosts. A layer shipped once is not
// shipped again: the app asks which keys a node lacks before shipping.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kernels/graph.hpp"
#include "base/status.hpp"
#include "schema/bundle.hpp"

namespace d3 {

class layer_cache {
 public:
  static layer_cache& process();  // the process-wide cache

  // The names among `names` that are not cached for `model_hash`, in the given order.
  std::vector<std::string> lacking(uint64_t model_hash, const std::vector<std::string>& names) const;
  // Validates the shipment (every layer's shapes and weight sizes, via infer_shapes on the
  // fragment) and caches the layers whose weights it includes. Returns how many it stored.
  result<size_t> store(layer_shipment shipment);
  // The cached layer (weights shared, not copied); its `inputs` index the shipment it came in.
  std::optional<layer> find(uint64_t model_hash, const std::string& name) const;

  size_t layer_count() const;
  size_t weight_bytes() const;
  void clear();

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<uint64_t, std::string>, layer> layers_;
  size_t bytes_ = 0;
};

}  // namespace d3
