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
#include "profiling/cpu_limit.hpp"
#include "profiling/message_costs.hpp"
#include "schema/bundle.hpp"

namespace d3 {

namespace {

constexpr int probe_pause_ms = 30;  // between a probe's timed runs

// The median of `v` (not empty; reordered): the mean of the two middle values of an even count.
double median_of_values(std::vector<double>& v) {
  const size_t half = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + long(half), v.end());
  if (v.size() % 2) return v[half];
  return 0.5 * (v[half] + *std::max_element(v.begin(), v.begin() + long(half)));
}

// A probe's executor, kept between the rounds of one probe (the app interleaves the rounds over
// its nodes; creating the executor again per round would pack the weights again each time). The
// executor keeps no reference to the fragment, whose stand-in weights are freed at once.
struct probe_session {
  std::string key;  // the probe's cache key without the round
  std::unique_ptr<executor> exec;
  std::vector<tensor> inputs;
  std::vector<std::string> names;  // per layer index of the fragment; "" for input layers

  std::vector<const tensor*> input_pointers() const {
    std::vector<const tensor*> pointers;
    for (const tensor& t : inputs) pointers.push_back(&t);
    return pointers;
  }
};

// A session for fragment `f` (sent without weights): stand-in weights, the executor (which packs
// its own copy of them), random inputs.
result<std::unique_ptr<probe_session>> open_probe_session(graph& f, std::string key) {
  if (status s = fill_missing_weights(f); !s) return s;
  auto exec = executor::create(f);
  if (!exec) return exec.error();
  auto session = std::make_unique<probe_session>();
  session->key = std::move(key);
  session->exec = std::move(exec.value());
  for (int i : f.input_layers()) session->inputs.push_back(random_tensor(f.layers[size_t(i)].output_shape, 7));
  for (const layer& l : f.layers) session->names.push_back(l.kind == layer_kind::input ? "" : l.name);
  return session;
}

}  // namespace

std::vector<double> median_layer_times(const std::vector<std::vector<double>>& runs) {
  if (runs.empty()) return {};
  const size_t layers = runs.front().size();
  std::vector<double> medians(layers, 0.0), totals;
  for (const std::vector<double>& run : runs) {
    double total = 0;
    for (double ms : run) total += ms;
    totals.push_back(total);
  }
  double median_sum = 0;
  std::vector<double> v;
  for (size_t l = 0; l < layers; ++l) {
    v.clear();
    for (const std::vector<double>& run : runs) v.push_back(l < run.size() ? run[l] : 0.0);
    medians[l] = median_of_values(v);
    median_sum += medians[l];
  }
  const double to_total = median_sum > 0 ? median_of_values(totals) / median_sum : 1.0;
  for (double& ms : medians) ms *= to_total;
  return medians;
}

layer_profile pooled_profile(const std::vector<layer_profile>& profiles) {
  layer_profile out;
  if (profiles.empty()) return out;
  const size_t layers = profiles.front().milliseconds.size();
  out.milliseconds.assign(layers, 0.0);
  std::vector<double> v;
  for (size_t l = 0; l < layers; ++l) {
    v.clear();
    for (const layer_profile& p : profiles) v.push_back(l < p.milliseconds.size() ? p.milliseconds[l] : 0.0);
    out.milliseconds[l] = median_of_values(v);
  }
  std::vector<message_costs> messages;
  for (const layer_profile& p : profiles) messages.push_back(p.messages);
  out.messages = median_of(messages);
  out.encoded_fraction = profiles.front().encoded_fraction;
  out.tile_overhead = profiles.front().tile_overhead;
  return out;
}

// Per-layer compute times of a fragment on this node, as JSON {"layers": {name: ms, ...}} or
// {"error": text}: the fragment arrives without weights (fill_missing_weights makes stand-ins:
// time does not depend on weight values) and runs `repeats` timed times, spread out (below); each
// layer's time is its median (median_layer_times). Under the virtual clock a layer costs what the
// node clock charges: its share of the run's thread CPU time divided by the node's speed; under
// the wall clock, its wall time. Answers are cached per model, layer set and round: a node probes
// a model once. Round `round` of `rounds`: the app asks every node for round 0, then round 1, ...
// so that a slow phase of the machine falls on one round of every node, not on all the runs of
// one node (deployment::probe_profiles); the executor lives until the last round.
std::string profile_fragment(const std::vector<uint8_t>& payload, int repeats, int round, int rounds) {
  static std::mutex cache_mutex;
  static std::map<std::string, std::string> cache;
  static std::unique_ptr<probe_session> session;  // guarded by cache_mutex
  auto failed = [](const std::string& why) { return nlohmann::json{{"error", "profile probe: " + why}}.dump(); };
  if (repeats < 1 || repeats > max_probe_repeats)
    return failed("repeats " + std::to_string(repeats) + " outside 1.." + std::to_string(max_probe_repeats));
  if (rounds < 1 || rounds > max_probe_repeats || round < 0 || round >= rounds)
    return failed("round " + std::to_string(round) + " of " + std::to_string(rounds) + " is not a round (at most " +
                  std::to_string(max_probe_repeats) + ")");
  auto shipment = decode_shipment(payload.data(), payload.size());
  if (!shipment) return failed(shipment.message());
  graph& f = shipment->fragment;
  // A node measures under the clock (and speed) it is configured with: one entry per setting.
  const bool virtual_clock = emulation().mode() == clock_mode::virtual_time;
  const double speed = emulation().speed();
  std::string session_key = std::to_string(shipment->model_hash) + ":" + std::to_string(repeats) + ":" +
                            std::to_string(rounds) + ":" +
                            (virtual_clock ? "virtual:" + std::to_string(speed) : std::string("wall"));
  for (const layer& l : f.layers) session_key += ":" + l.name;
  const std::string key = session_key + ":round" + std::to_string(round);
  std::lock_guard<std::mutex> lock(cache_mutex);  // one probe at a time: they would slow each other
  if (auto hit = cache.find(key); hit != cache.end()) return hit->second;
  if (!session || session->key != session_key) {
    session.reset();  // the last probe's executor first: never two at once
    auto fresh = open_probe_session(f, session_key);
    if (!fresh) return failed(fresh.message());
    session = std::move(fresh.value());
  }
  shipment->fragment = graph{};  // the stand-in weights: the executor packed its own copy
  const std::optional<double> limit = virtual_clock ? std::nullopt : cpu_limit_cores();
  const std::vector<const tensor*> pointers = session->input_pointers();
  std::vector<std::vector<double>> runs;  // per timed run, per layer index: ms
  std::vector<bool> timed(session->names.size(), false);
  // The timed runs are spread out: each after a pause and an untimed run of its own, so that a
  // slow phase of this shared machine (other work, a neighbour) cannot set the whole profile,
  // and the median stands for the machine as the stages will find it (measured: with 3 runs back
  // to back, one probe of mobilenet_v2 came out 15% slower than every stage run later).
  for (int r = 0; r < 2 * repeats; ++r) {
    const bool warm_up = r % 2 == 0;
    if (warm_up && r > 0) std::this_thread::sleep_for(std::chrono::milliseconds(probe_pause_ms));
    std::vector<layer_timing> timings;
    machine_cpu_lock alone(virtual_clock);
    const double cpu_start = thread_cpu_ms();
    auto out = session->exec->run(pointers, &timings);
    const double cpu_ms = thread_cpu_ms() - cpu_start;
    if (!out) {
      session.reset();
      return failed(out.message());
    }
    if (warm_up) continue;
    double wall_ms = 0;
    for (const layer_timing& t : timings) wall_ms += t.milliseconds;
    // Virtual clock: the run's CPU time split over layers by their wall times, at this speed.
    // Wall clock: the run at the rate a cpu quota sustains (its first ms can run on the quota's
    // burst after the pause), split the same way.
    const double scale = wall_ms <= 0    ? 1.0
                         : virtual_clock ? cpu_ms / wall_ms / speed
                                         : sustained_ms(wall_ms, cpu_ms, limit) / wall_ms;
    std::vector<double>& run = runs.emplace_back(session->names.size(), 0.0);
    for (const layer_timing& t : timings)
      if (t.layer >= 0 && size_t(t.layer) < run.size() && !session->names[size_t(t.layer)].empty()) {
        run[size_t(t.layer)] = t.milliseconds * scale;
        timed[size_t(t.layer)] = true;
      }
  }
  const std::vector<double> medians = median_layer_times(runs);
  nlohmann::json layers = nlohmann::json::object();
  for (size_t l = 0; l < medians.size(); ++l)
    if (timed[l]) layers[session->names[l]] = medians[l];
  if (round + 1 == rounds) session.reset();
  // What moving tensors costs this node, under the same clock as its layers.
  message_costs messages;
  {
    machine_cpu_lock alone(virtual_clock);
    // A probe in rounds takes the median over its rounds (deployment::probe_profiles): each
    // round measures as many times as it runs the fragment.
    auto measured = measure_message_costs(rounds > 1 ? repeats : std::max(3, repeats));
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
  cache[key] = result;
  return result;
}

result<double> time_fragment(const std::vector<uint8_t>& payload, size_t max_layers) {
  static std::mutex mutex;  // one probe at a time; guards the session
  static std::unique_ptr<probe_session> session;
  auto shipment = decode_shipment(payload.data(), payload.size(), max_layers);
  if (!shipment) return status::error("speed probe: " + shipment.message());
  graph& f = shipment->fragment;
  std::string key = std::to_string(shipment->model_hash);
  for (const layer& l : f.layers) key += ":" + l.name;
  const bool virtual_clock = emulation().mode() == clock_mode::virtual_time;
  std::lock_guard<std::mutex> lock(mutex);
  // Read at every probe: a node's quota can change while it runs (a speed step of a trace).
  const std::optional<double> limit = virtual_clock ? std::nullopt : cpu_limit_cores();
  auto run = [&]() -> result<double> {
    const std::vector<const tensor*> pointers = session->input_pointers();
    machine_cpu_lock alone(virtual_clock);
    const double cpu_start = thread_cpu_ms();
    const auto wall_start = std::chrono::steady_clock::now();
    auto out = session->exec->run(pointers);
    if (!out) return status::error("speed probe: " + out.message());
    const double cpu_ms = thread_cpu_ms() - cpu_start;
    if (virtual_clock) return cpu_ms / emulation().speed();
    // Wall: at the rate a cpu quota sustains (a probe this short can run on the quota's burst).
    return sustained_ms(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wall_start).count(),
                        cpu_ms, limit);
  };
  if (!session || session->key != key) {
    session.reset();
    auto fresh = open_probe_session(f, key);
    if (!fresh) return status::error("speed probe: " + fresh.message());
    session = std::move(fresh.value());
  }
  // Untimed first, as the profile's runs are warm: a run alone, its weights and buffers out of
  // the caches since the last probe, measured 15% slower than the same layers in a profile run.
  auto warm = run();
  if (!warm) {
    session.reset();
    return warm.error();
  }
  auto timed = run();
  if (!timed) session.reset();
  return timed;
}

}  // namespace d3
