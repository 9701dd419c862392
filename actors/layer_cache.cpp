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
  std::lock_guard<std::mutex> lock(mutex_);
  size_t incoming = 0;
  for (size_t i = 0; i < shipment.fragment.layers.size(); ++i)
    if (shipment.weights_included[i] && !layers_.count({shipment.model_hash, shipment.fragment.layers[i].name}))
      incoming += d3::weight_bytes(shipment.fragment.layers[i]);
  if (!make_room(incoming))
    return status::error("layer cache budget of " + std::to_string(budget_ >> 20) + " MB exceeded: " +
                         std::to_string(bytes_ >> 20) + " MB held (in use by live stages), " + std::to_string(incoming >> 20) +
                         " MB shipped (INI cache_mb)");
  size_t stored = 0;
  for (size_t i = 0; i < shipment.fragment.layers.size(); ++i) {
    if (!shipment.weights_included[i]) continue;
    layer& l = shipment.fragment.layers[i];
    if (l.kind == layer_kind::input) continue;
    auto key = std::make_pair(shipment.model_hash, l.name);
    auto it = layers_.find(key);
    if (it != layers_.end()) bytes_ -= d3::weight_bytes(it->second.value);
    bytes_ += d3::weight_bytes(l);
    layers_[key] = entry{std::move(l), ++clock_};
    ++stored;
  }
  return stored;
}

bool layer_cache::make_room(size_t incoming) {
  if (budget_ == 0) return true;
  while (bytes_ + incoming > budget_) {
    auto victim = layers_.end();
    for (auto it = layers_.begin(); it != layers_.end(); ++it) {
      const layer& l = it->second.value;
      const bool in_use = l.weights.use_count() > 1 || l.bias.use_count() > 1;
      if (!in_use && (victim == layers_.end() || it->second.last_used < victim->second.last_used)) victim = it;
    }
    if (victim == layers_.end()) return false;
    bytes_ -= d3::weight_bytes(victim->second.value);
    layers_.erase(victim);
    ++evicted_;
  }
  return true;
}

void layer_cache::set_budget(size_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  budget_ = bytes;
}

size_t layer_cache::budget() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return budget_;
}

size_t layer_cache::evicted() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return evicted_;
}

std::optional<layer> layer_cache::find(uint64_t model_hash, const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = layers_.find({model_hash, name});
  if (it == layers_.end()) return std::nullopt;
  it->second.last_used = ++clock_;
  return it->second.value;
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
