#include "planner/profile.hpp"

#include <algorithm>
#include <numeric>

#include "kernels/executor.hpp"
#include "kernels/model_zoo.hpp"

namespace d3 {

double layer_profile::total() const { return std::accumulate(milliseconds.begin(), milliseconds.end(), 0.0); }

double layer_profile::fraction(int layer, tensor_codec codec) const {
  if (codec == tensor_codec::raw) return 1.0;
  if (layer < 0 || size_t(layer) >= encoded_fraction.size()) return 0.0;
  return encoded_fraction[size_t(layer)][size_t(codec)];
}

double layer_profile::tile_cost(int layer, double share) const {
  if (share >= 1.0 || layer < 0 || size_t(layer) >= tile_overhead.size()) return share;
  const double cost = share + tile_overhead[size_t(layer)] * (1.0 - share);
  return std::min(1.0, std::max(0.5 * share, cost));
}

result<layer_profile> measure_profile(const graph& g, int repeats) {
  auto exec = executor::create(g);
  if (!exec) return exec.error();
  std::vector<int> inputs_index = g.input_layers();
  std::vector<tensor> inputs;
  for (int i : inputs_index) inputs.push_back(sample_input(g, i, 1));
  std::vector<const tensor*> pointers;
  for (const tensor& t : inputs) pointers.push_back(&t);
  auto warm = (*exec)->run(pointers);
  if (!warm) return warm.error();
  std::vector<std::vector<double>> samples(g.layers.size());
  for (int r = 0; r < std::max(1, repeats); ++r) {
    std::vector<layer_timing> timings;
    auto out = (*exec)->run(pointers, &timings);
    if (!out) return out.error();
    for (const layer_timing& t : timings) samples[size_t(t.layer)].push_back(t.milliseconds);
  }
  layer_profile profile;
  profile.milliseconds.assign(g.layers.size(), 0.0);
  for (size_t l = 0; l < samples.size(); ++l) {
    std::vector<double>& s = samples[l];
    if (s.empty()) continue;
    std::nth_element(s.begin(), s.begin() + long(s.size() / 2), s.end());
    profile.milliseconds[l] = s[s.size() / 2];
  }
  return profile;
}

layer_profile profile_from_flops(const graph& g, double gflop_per_s) {
  layer_profile profile;
  profile.milliseconds.assign(g.layers.size(), 0.0);
  for (size_t l = 0; l < g.layers.size(); ++l) profile.milliseconds[l] = cost_of(g, int(l)).flops / (gflop_per_s * 1e6);
  return profile;
}

}  // namespace d3
