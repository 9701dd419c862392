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
  // Provisioning (d3-node's INI `models`): every layer of the prepared graph `g` that has
  // weights, cached under model_hash(g) as if the app had shipped them, so that no deployment or
  // migration of that model ships them to this node (the app asks what a node lacks first).
  // Under the same budget as shipments; the error names it. Returns the weight bytes cached.
  result<size_t> provision(const graph& g);
  // The cached layer (weights shared, not copied); its `inputs` index the shipment it came in.
  std::optional<layer> find(uint64_t model_hash, const std::string& name) const;
  // A shipment of the cached layers `names` (in execution order) that another node can store:
  // the layers (weights shared, not copied), each reading the tensors it read in the shipment it
  // came in (a layer among `names` where one produces it, else an input layer named and shaped
  // as there). Lets a node hand its weights to a peer over their link instead of the app
  // shipping them again. An error names the first layer not cached.
  result<layer_shipment> extract(uint64_t model_hash, const std::vector<std::string>& names) const;

  size_t layer_count() const;
  size_t weight_bytes() const;
  void clear();

  // A budget for the cached weights (0: none). A shipment that would exceed it first evicts the
  // least recently used layers no live stage holds (a stage keeps the weights it was built with:
  // shared, so those are in use); if that is not enough it is refused, naming the sizes. Layers
  // evicted so far (for the node's log).
  void set_budget(size_t bytes);
  size_t budget() const;
  size_t evicted() const;

 private:
  struct entry {
    layer value;
    // Per input of `value`: the name and shape of the tensor it reads (its producer's output).
    std::vector<std::pair<std::string, tensor_shape>> reads;
    mutable uint64_t last_used = 0;
  };
  // Frees room for `incoming` bytes under the budget; false when live stages hold too much.
  bool make_room(size_t incoming);

  mutable std::mutex mutex_;
  mutable uint64_t clock_ = 0;  // bumped on every store and find: the LRU order
  std::map<std::pair<uint64_t, std::string>, entry> layers_;
  size_t bytes_ = 0;
  size_t budget_ = 0;
  size_t evicted_ = 0;
};

}  // namespace d3
