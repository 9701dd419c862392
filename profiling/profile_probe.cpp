#include "profiling/profile_probe.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "emulation/node_emulation.hpp"
#include "kernels/executor.hpp"
#include "kernels/model_zoo.hpp"
#include "profiling/message_costs.hpp"
#include "schema/bundle.hpp"

namespace d3 {

namespace {

constexpr int probe_pause_ms = 30;  // between a probe's timed runs

}  // namespace

// Per-layer compute times of a fragment on this node, as JSON {"layers": {name: ms, ...}} or
// {"error": text}: the fragment arrives without weights (fill_missing_weights makes stand-ins:
// time does not depend on weight values) and runs `repeats` timed times, spread out (below); each
// layer's time is its median. Under the virtual clock a layer costs what the node clock charges:
// its share of the run's thread CPU time divided by the node's speed; under the wall clock, its
// wall time. Results are cached per model and layer set: a node probes a model once.
std::string profile_fragment(const std::vector<uint8_t>& payload, int repeats) {
  static std::mutex cache_mutex;
  static std::map<std::string, std::string> cache;
  auto failed = [](const std::string& why) { return nlohmann::json{{"error", "profile probe: " + why}}.dump(); };
  auto shipment = decode_shipment(payload.data(), payload.size());
  if (!shipment) return failed(shipment.message());
  graph& f = shipment->fragment;
  // A node measures under the clock (and speed) it is configured with: one entry per setting.
  const bool virtual_clock = emulation().mode() == clock_mode::virtual_time;
  const double speed = emulation().speed();
  std::string key = std::to_string(shipment->model_hash) + ":" + std::to_string(repeats) + ":" +
                    (virtual_clock ? "virtual:" + std::to_string(speed) : std::string("wall"));
  for (const layer& l : f.layers) key += ":" + l.name;
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    auto hit = cache.find(key);
    if (hit != cache.end()) return hit->second;
  }
  if (status s = fill_missing_weights(f); !s) return failed(s.message());
  auto exec = executor::create(f);
  if (!exec) return failed(exec.message());
  std::vector<tensor> inputs;
  for (int i : f.input_layers()) inputs.push_back(random_tensor(f.layers[size_t(i)].output_shape, 7));
  std::vector<const tensor*> pointers;
  for (const tensor& t : inputs) pointers.push_back(&t);
  std::vector<std::vector<double>> samples(f.layers.size());
  std::vector<double> totals;  // per timed run, the sum of its layers' samples
  // The timed runs are spread out: each after a pause and an untimed run of its own, so that a
  // slow phase of this shared machine (other work, a neighbour) cannot set the whole profile,
  // and the median stands for the machine as the stages will find it (measured: with 3 runs back
  // to back, one probe of mobilenet_v2 came out 15% slower than every stage run later).
  for (int r = 0; r < 2 * std::max(1, repeats); ++r) {
    const bool warm_up = r % 2 == 0;
    if (warm_up && r > 0) std::this_thread::sleep_for(std::chrono::milliseconds(probe_pause_ms));
    std::vector<layer_timing> timings;
    machine_cpu_lock alone(virtual_clock);
    const double cpu_start = thread_cpu_ms();
    auto out = (*exec)->run(pointers, &timings);
    const double cpu_ms = thread_cpu_ms() - cpu_start;
    if (!out) return failed(out.message());
    if (warm_up) continue;
    double wall_ms = 0;
    for (const layer_timing& t : timings) wall_ms += t.milliseconds;
    // Virtual clock: the run's CPU time split over layers by their wall times, at this speed.
    const double scale = virtual_clock && wall_ms > 0 ? cpu_ms / wall_ms / speed : 1.0;
    for (const layer_timing& t : timings) samples[size_t(t.layer)].push_back(t.milliseconds * scale);
    totals.push_back(wall_ms * scale);
  }
  // Each layer's median, scaled so that the layers add up to the median run: on a node whose
  // speed is a cpu quota, the quota's waits fall on a few layers of each run, and the median of
  // every layer alone would drop them all (measured: 1.47 s for runs of 2.5 s at 2.25% of a core).
  std::vector<double> medians(f.layers.size(), 0.0);
  double median_sum = 0;
  for (size_t l = 0; l < f.layers.size(); ++l) {
    std::vector<double>& v = samples[l];
    if (v.empty() || f.layers[l].kind == layer_kind::input) continue;
    std::nth_element(v.begin(), v.begin() + long(v.size() / 2), v.end());
    medians[l] = v[v.size() / 2];
    median_sum += medians[l];
  }
  std::nth_element(totals.begin(), totals.begin() + long(totals.size() / 2), totals.end());
  const double to_total = median_sum > 0 && !totals.empty() ? totals[totals.size() / 2] / median_sum : 1.0;
  nlohmann::json layers = nlohmann::json::object();
  for (size_t l = 0; l < f.layers.size(); ++l)
    if (!samples[l].empty() && f.layers[l].kind != layer_kind::input) layers[f.layers[l].name] = medians[l] * to_total;
  // What moving tensors costs this node, under the same clock as its layers.
  message_costs messages;
  {
    machine_cpu_lock alone(virtual_clock);
    auto measured = measure_message_costs(std::max(3, repeats));
    if (!measured) return failed(measured.message());
    messages = virtual_clock ? at_speed(measured.value(), speed) : measured.value();
  }
  const nlohmann::json costs = {{"encode_ms", messages.encode_ms},     {"encode_ms_per_mb", messages.encode_ms_per_mb},
                                {"decode_ms", messages.decode_ms},     {"decode_ms_per_mb", messages.decode_ms_per_mb},
                                {"copy_ms_per_mb", messages.copy_ms_per_mb},
                                {"codec_encode_ms_per_mb", messages.codec_encode_ms_per_mb},
                                {"codec_decode_ms_per_mb", messages.codec_decode_ms_per_mb}};
  std::string result = nlohmann::json{{"layers", layers}, {"messages", costs}, {"clock", virtual_clock ? "virtual" : "wall"},
                                      {"speed", speed}}.dump();
  std::lock_guard<std::mutex> lock(cache_mutex);
  cache[key] = result;
  return result;
}

}  // namespace d3
