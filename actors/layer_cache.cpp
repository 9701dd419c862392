#include "actors/layer_cache.hpp"

namespace d3 {

layer_cache& layer_cache::process() {
  static layer_cache cache;
  return cache;
}

std::vector<std::string> layer_cache::lacking(uint64_t model_hash, const std::vector<std::string>& names) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::string> out;
  for (const std::string& n : names)
    if (layers_.count({model_hash, n}) == 0) out.push_back(n);
  return out;
}

result<size_t> layer_cache::store(layer_shipment shipment) {
  status s = infer_shapes(shipment.fragment);
  if (!s) return status::error("layer shipment of model " + std::to_string(shipment.model_hash) + ": " + s.message());
  size_t stored = 0;
  std::lock_guard<std::mutex> lock(mutex_);
  for (size_t i = 0; i < shipment.fragment.layers.size(); ++i) {
    if (!shipment.weights_included[i]) continue;
    layer& l = shipment.fragment.layers[i];
    if (l.kind == layer_kind::input) continue;
    auto key = std::make_pair(shipment.model_hash, l.name);
    auto it = layers_.find(key);
    if (it != layers_.end()) bytes_ -= d3::weight_bytes(it->second);
    bytes_ += d3::weight_bytes(l);
    layers_[key] = std::move(l);
    ++stored;
  }
  return stored;
}

std::optional<layer> layer_cache::find(uint64_t model_hash, const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = layers_.find({model_hash, name});
  if (it == layers_.end()) return std::nullopt;
  return it->second;
}

size_t layer_cache::layer_count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return layers_.size();
}

size_t layer_cache::weight_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return bytes_;
}

void layer_cache::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  layers_.clear();
  bytes_ = 0;
}

}  // namespace d3
