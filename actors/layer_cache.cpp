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
                         " MB incoming (INI cache_mb)");
  // What each layer reads, named before any layer moves into the cache.
  std::vector<std::vector<std::pair<std::string, tensor_shape>>> reads(shipment.fragment.layers.size());
  for (size_t i = 0; i < shipment.fragment.layers.size(); ++i)
    for (int in : shipment.fragment.layers[i].inputs)
      reads[i].emplace_back(shipment.fragment.layers[size_t(in)].name, shipment.fragment.layers[size_t(in)].output_shape);
  size_t stored = 0;
  for (size_t i = 0; i < shipment.fragment.layers.size(); ++i) {
    if (!shipment.weights_included[i]) continue;
    layer& l = shipment.fragment.layers[i];
    if (l.kind == layer_kind::input) continue;
    auto key = std::make_pair(shipment.model_hash, l.name);
    auto it = layers_.find(key);
    if (it != layers_.end()) bytes_ -= d3::weight_bytes(it->second.value);
    bytes_ += d3::weight_bytes(l);
    layers_[key] = entry{std::move(l), std::move(reads[i]), ++clock_};
    ++stored;
  }
  return stored;
}

result<size_t> layer_cache::provision(const graph& g) {
  auto order = topological_order(g);
  if (!order) return order.error();
  std::vector<int> computed, weighted;
  size_t bytes = 0;
  for (int l : *order) {
    if (g.layers[size_t(l)].kind == layer_kind::input) continue;
    computed.push_back(l);
    const size_t b = d3::weight_bytes(g.layers[size_t(l)]);
    if (b > 0) weighted.push_back(l), bytes += b;
  }
  if (weighted.empty()) return size_t(0);
  auto stored = store(make_fragment(g, computed, model_hash(g), weighted));
  if (!stored) return stored.error();
  return bytes;
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

result<layer_shipment> layer_cache::extract(uint64_t model_hash, const std::vector<std::string>& names) const {
  std::lock_guard<std::mutex> lock(mutex_);
  layer_shipment s;
  s.model_hash = model_hash;
  std::vector<const entry*> found;
  std::map<std::string, int> position;  // name -> index among `names`
  for (const std::string& name : names) {
    auto it = layers_.find({model_hash, name});
    if (it == layers_.end()) return status::error("layer '" + name + "' of model " + std::to_string(model_hash) + " is not cached here");
    if (!position.emplace(name, int(found.size())).second) return status::error("layer '" + name + "' listed twice");
    it->second.last_used = ++clock_;
    found.push_back(&it->second);
  }
  // Input layers first (the shipment's layout), one per tensor read from outside the selection.
  std::map<std::string, int> index;  // tensor name -> fragment layer
  for (size_t k = 0; k < found.size(); ++k)
    for (const auto& [producer, shape] : found[k]->reads) {
      auto p = position.find(producer);
      if (p != position.end()) {
        if (size_t(p->second) >= k)
          return status::error("layer '" + names[k] + "' reads '" + producer + "', listed after it (not in execution order)");
        continue;
      }
      if (index.count(producer)) continue;
      layer stand_in;
      stand_in.name = producer;
      stand_in.kind = layer_kind::input;
      stand_in.input_shape = shape;
      stand_in.output_shape = shape;
      index[producer] = int(s.fragment.layers.size());
      s.fragment.layers.push_back(std::move(stand_in));
      s.weights_included.push_back(false);
    }
  const int first = int(s.fragment.layers.size());
  std::vector<bool> consumed(found.size(), false);
  for (size_t k = 0; k < found.size(); ++k) {
    layer copy = found[k]->value;
    copy.inputs.clear();
    for (const auto& [producer, shape] : found[k]->reads) {
      auto p = position.find(producer);
      if (p != position.end()) {
        consumed[size_t(p->second)] = true;
        copy.inputs.push_back(first + p->second);
      } else {
        copy.inputs.push_back(index.at(producer));
      }
    }
    s.fragment.layers.push_back(std::move(copy));
    s.weights_included.push_back(true);
  }
  for (size_t k = 0; k < found.size(); ++k)
    if (!consumed[k]) s.fragment.outputs.push_back(first + int(k));
  s.fragment.name = "cached layers";
  return s;
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
