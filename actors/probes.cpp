// The deployment's measurements of its nodes and links: per-layer profiles probed on each node,
// light probes of one emulated link, the periodic probes of links no request crossed lately, and
// of the speed of nodes no stage ran on lately.
#include <algorithm>
#include <cmath>
#include <optional>

#include <nlohmann/json.hpp>

#include "actors/ask.hpp"
#include "actors/deployment.hpp"
#include "planner/link_estimator.hpp"
#include "profiling/message_costs.hpp"
#include "profiling/profile_probe.hpp"
#include "schema/bundle.hpp"

namespace d3 {

namespace {

// One round's answer of a node's profile probe (protocol::profile_atom) as a profile of `g`:
// a time for every layer of `computed`, the message costs. `what` names the probe in errors.
result<layer_profile> parse_probe_answer(const std::string& answer, const graph& g, const std::vector<int>& computed,
                                         const std::string& what) {
  const nlohmann::json j = nlohmann::json::parse(answer, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return status::error(what + "malformed answer");
  if (j.contains("error")) return status::error(what + j.at("error").get<std::string>());
  layer_profile profile;
  profile.milliseconds.assign(g.layers.size(), 0.0);
  const nlohmann::json& layers = j.at("layers");
  for (int l : computed) {
    auto it = layers.find(g.layers[size_t(l)].name);
    if (it == layers.end() || !it->is_number() || it->get<double>() < 0)
      return status::error(what + "no time for layer '" + g.layers[size_t(l)].name + "'");
    profile.milliseconds[size_t(l)] = it->get<double>();
  }
  const nlohmann::json costs = j.value("messages", nlohmann::json::object());
  for (auto [key, field] : {std::pair<const char*, double*>{"encode_ms", &profile.messages.encode_ms},
                            {"encode_ms_per_mb", &profile.messages.encode_ms_per_mb},
                            {"decode_ms", &profile.messages.decode_ms},
                            {"decode_ms_per_mb", &profile.messages.decode_ms_per_mb},
                            {"copy_ms_per_mb", &profile.messages.copy_ms_per_mb}}) {
    auto it = costs.find(key);
    if (it == costs.end() || !it->is_number() || it->get<double>() < 0)
      return status::error(what + "no message cost '" + key + "'");
    *field = it->get<double>();
  }
  // Codec costs (optional: a node that measured none makes every codec look free to decode,
  // so their absence leaves both zero and the planner then picks codecs by size alone).
  for (auto [key, field] : {std::pair<const char*, std::array<double, tensor_codec_count>*>{
                                "codec_encode_ms_per_mb", &profile.messages.codec_encode_ms_per_mb},
                            {"codec_decode_ms_per_mb", &profile.messages.codec_decode_ms_per_mb}}) {
    auto it = costs.find(key);
    if (it == costs.end()) continue;
    if (!it->is_array() || it->size() != size_t(tensor_codec_count))
      return status::error(what + "message cost '" + key + "' is not " + std::to_string(tensor_codec_count) + " numbers");
    for (int k = 0; k < tensor_codec_count; ++k) {
      const nlohmann::json& v = (*it)[size_t(k)];
      if (!v.is_number() || v.get<double>() < 0) return status::error(what + "message cost '" + key + "' is malformed");
      (*field)[size_t(k)] = v.get<double>();
    }
  }
  return profile;
}

}  // namespace

result<std::map<std::string, layer_profile>> deployment::probe_profiles(const graph& g,
                                                                        const std::vector<std::string>& names,
                                                                        int repeats) {
  for (const std::string& name : names)
    if (!nodes_.count(name) || down_nodes_.count(name))
      return status::error("profile probe: node '" + name + "' is not connected");
  if (repeats < 1 || repeats > max_probe_repeats)
    return status::error("profile probe: repeats " + std::to_string(repeats) + " outside 1.." +
                         std::to_string(max_probe_repeats));
  // The node measures under the clock it will run with: before a deploy, configure it now (a
  // deploy resets the clocks anyway).
  if (!current_) D3_RETURN_IF_ERROR(send_emulation(false, {}));
  auto order = topological_order(g);
  if (!order) return order.error();
  std::vector<int> computed;
  for (int l : *order)
    if (g.layers[size_t(l)].kind != layer_kind::input) computed.push_back(l);
  const protocol::bytes payload = encode_layers(g, computed, model_hash(g), {});
  if (payload.empty()) return status::error("profile probe: cannot encode the model");
  // Round r asks every node for one timed run, starting at node r (rotating), and each node's
  // profile is the median over the rounds. Measured on this shared machine: probing the nodes
  // one after another (five runs each), a slow phase of a few seconds fell on all the runs of
  // one node, and four edge nodes of one speed came out at 193..366 ms for convnext_tiny; the
  // planner took that noise for differences between the nodes, picked the ones that happened to
  // be probed in a fast phase and measured 1.3-2x its prediction. Interleaved, a slow phase
  // falls on one round of several nodes, and the median drops it.
  std::map<std::string, std::vector<std::vector<double>>> runs;  // node -> per round, per layer: ms
  std::map<std::string, std::vector<message_costs>> messages;
  for (int round = 0; round < repeats; ++round)
    for (size_t turn = 0; turn < names.size(); ++turn) {
      const std::string& name = names[(turn + size_t(round)) % names.size()];
      const std::string what = "profile probe of node '" + name + "': ";
      auto answer = ask<std::string>(*self_, nodes_.at(name), options_.timeout, what.substr(0, what.size() - 2),
                                     protocol::profile_atom::value, payload, int32_t(1), int32_t(round),
                                     int32_t(repeats));
      if (!answer) return answer.error();
      auto profile = parse_probe_answer(*answer, g, computed, what);
      if (!profile) return profile.error();
      runs[name].push_back(std::move(profile->milliseconds));
      messages[name].push_back(profile->messages);
    }
  std::map<std::string, layer_profile> profiles;
  for (const std::string& name : names) {
    layer_profile& profile = profiles[name];
    profile.milliseconds = median_layer_times(runs[name]);
    profile.messages = median_of(messages[name]);
    log({{"event", "profile_probed"}, {"node", name}, {"total_ms", profile.total()}, {"rounds", repeats}});
  }
  return profiles;
}

result<layer_profile> deployment::probe_profile(const graph& g, const std::string& name, int repeats) {
  auto profiles = probe_profiles(g, {name}, repeats);
  if (!profiles) return profiles.error();
  return std::move(profiles->at(name));
}

result<transfer_observation> deployment::probe_link(const std::string& from, const std::string& to, size_t size,
                                                    double after_ms) {
  if (!nodes_.count(from) || !nodes_.count(to) || down_nodes_.count(from) || down_nodes_.count(to))
    return status::error("probe " + from + " -> " + to + ": a node is not connected");
  // The probe must cross the link it measures: connected directly, `from` reaches `to` over their
  // own link. Unconnected, CAF relays through the app (another path), and once an earlier app
  // has gone, through a route that no longer exists: every probe of a second session on the same
  // nodes failed at once with request_receiver_down.
  D3_RETURN_IF_ERROR(connect_pair(from, to, /*watch=*/false));
  const double send_ms = options_.emulation.clock == clock_mode::virtual_time ? virtual_now_ + after_ms : 0.0;
  auto ms = ask<double>(*self_, nodes_.at(from), options_.timeout, "probe " + from + " -> " + to,
                        protocol::probe_atom::value, caf::actor_cast<protocol::echo_handle>(nodes_.at(to)), to,
                        uint64_t(size), send_ms);
  if (!ms) return ms.error();
  // Wall clock: the arrival on `to`'s clock minus the send on `from`'s, onto one clock.
  const bool wall = options_.emulation.clock != clock_mode::virtual_time;
  const double clocks_ms = wall ? node_to_wall_ms(to, 0.0) - node_to_wall_ms(from, 0.0) : 0.0;
  return transfer_observation{from, to, size, *ms + clocks_ms, wall ? clock_error_ms(from) + clock_error_ms(to) : 0.0};
}

void deployment::probe_idle_links(request_outcome& o) {
  ++answers_seen_;
  auto role_of = [&](const std::string& node) {
    auto it = roles_.find(node);
    return it == roles_.end() ? node : it->second;
  };
  auto key = [](std::string a, std::string b) { return a < b ? std::make_pair(a, b) : std::make_pair(b, a); };
  // Per link class, the least and largest transfer of this answer.
  std::map<std::pair<std::string, std::string>, std::pair<size_t, size_t>> carried;
  for (const transfer_observation& t : o.transfers) {
    const auto k = key(role_of(t.from), role_of(t.to));
    link_last_seen_[k] = answers_seen_;
    auto [it, first] = carried.try_emplace(k, t.bytes, t.bytes);
    if (!first) it->second = {std::min(it->second.first, t.bytes), std::max(it->second.second, t.bytes)};
  }
  // One node per role stands for its links: the app's node, the first edge node (by name), the
  // cloud; edge-edge between the first two edge nodes.
  std::vector<std::string> edges;
  std::string cloud;
  for (const auto& [name, role] : roles_) {
    if (down_nodes_.count(name)) continue;
    if (role == "edge") edges.push_back(name);
    if (role == "cloud" && cloud.empty()) cloud = name;
  }
  std::sort(edges.begin(), edges.end(), node_name_less);
  const std::string& app = options_.emulation.app_node;
  std::vector<std::pair<std::string, std::string>> pairs;
  if (!edges.empty()) pairs.push_back({app, edges[0]});
  if (!cloud.empty()) pairs.push_back({app, cloud});
  if (!edges.empty() && !cloud.empty()) pairs.push_back({edges[0], cloud});
  if (edges.size() >= 2) pairs.push_back({edges[0], edges[1]});
  const bool virtual_clock = options_.emulation.clock == clock_mode::virtual_time;
  // A probe 25% and 0.5 ms off the link's last probe of its size says the link changed: this
  // answer and the next two probe every idle link and node (loopback's jitter on 16 KiB is well
  // under 0.5 ms; a shaped link's time is mostly its bandwidth's and latency's).
  auto burst_if_changed = [&](const std::pair<std::string, std::string>& k, const std::string& from,
                              const std::string& to, size_t size, double ms) {
    auto [last, first] = link_probe_ms_.try_emplace({k, size}, ms);
    if (!first && std::abs(ms - last->second) > 0.5 && (ms > 1.25 * last->second || ms < 0.8 * last->second) &&
        !burst_now_) {
      burst_now_ = true;
      probe_burst_ = std::max(probe_burst_, 2);
      log({{"event", "probe_burst"}, {"because", "link " + from + " -> " + to + " changed"}});
    }
    last->second = ms;
  };
  for (const auto& [from, to] : pairs) {
    if (from == to || !nodes_.count(from) || !nodes_.count(to)) continue;
    auto k = key(role_of(from), role_of(to));
    // Virtual clock: no probe leaves before the link's last probe has arrived. Probes leave from
    // the latest answer on; where a link's latency makes a pair of probes outlast the time between
    // answers, the next pair queued behind the last, each pair's times grew by the overlap (a
    // backbone at 60 ms under answers 40 ms apart: the 1 KiB probe read 60, 92, 125, 158 ... ms,
    // above the 16 KiB one's 67), and the planner's fit of the link failed.
    if (virtual_clock && virtual_now_ < probe_done_ms_[k]) continue;
    // A link that carries one size of tensor (within 4x) tells the planner a time per size, not a
    // latency and a bandwidth apart: a 1 KiB probe beside it gives the fit a second size. Without
    // it a backbone whose latency tripled (20 -> 60 ms at 18.88 Mbit/s) was estimated at 2.8
    // Mbit/s and 20 ms, and plans sending other sizes over it were priced wrong (mobilenet_v2).
    const auto busy = carried.find(k);
    const bool one_size = busy != carried.end() && busy->second.second < 4 * busy->second.first &&
                          busy->second.first > 4 * 1024 && !burst_now_;
    if (!one_size && !burst_now_ && answers_seen_ - link_last_seen_[k] < size_t(options_.idle_probe_every)) continue;
    link_last_seen_[k] = answers_seen_;
    double after_ms = 0;  // each probe leaves when the previous one has arrived
    std::vector<transfer_observation> probes;
    auto probe = [&](size_t size) {
      auto probed = probe_link(from, to, size, after_ms);
      if (!probed) {
        stray_errors_.push_back(probed.message());
        return false;
      }
      after_ms += probed->ms;
      probes.push_back(probed.value());
      o.transfers.push_back(probed.value());
      return true;
    };
    // A third probe only on real links, which can hide behind a token bucket: the virtual clock's
    // links are exact lines, where it would only occupy the link.
    if (one_size) {
      if (probe(1024)) burst_if_changed(k, from, to, 1024, probes[0].ms);
    } else if (probe(1024) && probe(16384)) {
      burst_if_changed(k, from, to, 1024, probes[0].ms);
      burst_if_changed(k, from, to, 16384, probes[1].ms);
      if (!virtual_clock)
        if (const size_t size = long_probe_bytes(probes[0].bytes, probes[0].ms, probes[1].bytes, probes[1].ms);
            size > 0)
          probe(size);
    }
    probe_done_ms_[k] = virtual_now_ + after_ms;
    nlohmann::json bytes = nlohmann::json::array(), ms = nlohmann::json::array();
    for (const transfer_observation& p : probes) bytes.push_back(p.bytes), ms.push_back(p.ms);
    log({{"event", "link_probed"}, {"from", from}, {"to", to}, {"bytes", bytes}, {"ms", ms}});
  }
}

// The fragment of g a speed probe runs: the computed layers from the input on, in execution
// order, until they hold about 200 MFLOP (a few ms at speed 1 here, ten times that on a device
// at 0.1): enough to time steadily (with 50 MFLOP, resnet18's stem alone, the probes read 15%
// slower than the profile), little next to a request.
std::vector<int> speed_probe_layers(const graph& g) {
  std::vector<int> layers;
  auto order = topological_order(g);
  if (!order) return layers;
  double flops = 0;
  for (int l : *order) {
    if (g.layers[size_t(l)].kind == layer_kind::input) continue;
    layers.push_back(l);
    flops += cost_of(g, l).flops;
    if (flops >= 200e6) break;
  }
  return layers;
}

void deployment::watch_latency(const request_outcome& o) {
  // A move is more than 10% off the recent median and more than four times the recent median
  // absolute deviation: on a machine whose speed swings by 30% from one request to the next (seen
  // on a shared AVX2 machine, where thread CPU times follow the other tenants), 10% alone burst
  // after nearly every answer.
  const double latency = options_.emulation.clock == clock_mode::virtual_time ? o.virtual_latency_ms : o.latency_ms;
  if (recent_latency_.size() >= 3) {
    std::vector<double> sorted(recent_latency_.begin(), recent_latency_.end());
    const auto middle = sorted.begin() + long(sorted.size() / 2);
    std::nth_element(sorted.begin(), middle, sorted.end());
    const double median = *middle;
    for (double& v : sorted) v = std::abs(v - median);
    std::nth_element(sorted.begin(), middle, sorted.end());
    const double spread = *middle;
    if (std::abs(latency - median) > std::max(0.1 * median, 4 * spread)) probe_burst_ = 3;
  }
  recent_latency_.push_back(latency);
  if (recent_latency_.size() > 8) recent_latency_.pop_front();
  burst_now_ = probe_burst_ > 0;
  if (burst_now_) --probe_burst_;
}

void deployment::probe_idle_nodes(request_outcome& o) {
  if (graph_ == nullptr) return;
  if (speed_probe_graph_ != graph_) {
    speed_probe_layers_ = speed_probe_layers(*graph_);
    speed_probe_ = encode_layers(*graph_, speed_probe_layers_, model_hash(*graph_), {});
    speed_probe_graph_ = graph_;
  }
  if (speed_probe_.empty()) return;
  // In a burst (watch_latency) every idle node, else at most one regular probe per answer: the
  // idle node probed longest ago, once node_probe_every x idle_probe_every answers have passed.
  // Each probe runs a few ms of compute, and on one machine it also costs its neighbours' caches
  // (measured: probing every idle node after every answer made the device-only plan's answers at
  // speed 0.1 swing up to 280 ms instead of 180). One per answer in turn sees a change of any idle
  // node within as many answers as there are idle nodes; every node at once every 8 answers, as
  // before, cost 5 probes per 8 answers and saw resnet18's device, four times faster while idle,
  // 8 answers after the change.
  const bool burst = burst_now_;
  const size_t every = size_t(std::max(1, options_.idle_probe_every)) * node_probe_every;
  // A node that computed is no longer idle: once it is again, its first three probes come at
  // once, the planner's reference for it. Counted since the deployment instead, a node that went
  // idle a second time formed its reference over three regular probes, 24 answers, and a change
  // within them joined the reference unseen (vgg16: two edges recovering while idle, never seen).
  for (const compute_observation& c : o.computes) {
    node_last_seen_[c.node] = answers_seen_;
    if (!c.probe) speed_probes_[c.node] = 0;
  }
  std::string regular;  // the idle node whose turn it is, if any (early ones are probed anyway)
  size_t regular_seen = 0;
  for (const auto& [name, handle] : nodes_) {
    const size_t at = node_last_seen_.count(name) ? node_last_seen_[name] : 0;
    if (down_nodes_.count(name) || speed_probes_[name] < 3 || answers_seen_ - at < every) continue;
    if (regular.empty() || at < regular_seen) regular = name, regular_seen = at;
  }
  for (const auto& [name, handle] : nodes_) {
    if (down_nodes_.count(name)) continue;
    auto seen = node_last_seen_.find(name);
    if (seen == node_last_seen_.end()) seen = node_last_seen_.emplace(name, 0).first;
    if (seen->second == answers_seen_) continue;  // computed in this answer
    // A node's first three probes since it computed come at once: the planner's reference for it.
    const bool early = speed_probes_[name] < 3;
    if (!early && !burst && name != regular) continue;
    seen->second = answers_seen_;
    auto timed = [&]() -> std::optional<double> {
      auto ms = ask<double>(*self_, handle, options_.timeout, "speed probe of node '" + name + "'",
                            protocol::speed_atom::value, speed_probe_);
      if (!ms) {
        stray_errors_.push_back(ms.message());
        return std::nullopt;
      }
      ++speed_probes_[name];
      log({{"event", "node_probed"}, {"node", name}, {"ms", *ms}});
      o.computes.push_back({name, speed_probe_layers_, std::vector<double>(speed_probe_layers_.size(), 1.0), *ms, true});
      return *ms;
    };
    const std::optional<double> ms = timed();
    if (!ms) continue;
    // A probe 1.5x off the node's last says it changed while idle: two more probes of it now make
    // the planner's median of three (a change it sees in this answer, not two answers on: resnet18,
    // a device four times faster while idle, served faster 11 answers after the change, of which
    // 3 waited for the median), and the next two answers probe every idle node and link.
    auto [last, first] = node_probe_ms_.try_emplace(name, *ms);
    if (!first && *ms > 0 && last->second > 0 && (*ms > 1.5 * last->second || 1.5 * *ms < last->second)) {
      if (probe_burst_ == 0) {
        probe_burst_ = 2;
        log({{"event", "probe_burst"}, {"because", "node " + name + " changed"}});
      }
      double latest = *ms;
      for (int k = 0; k < 2; ++k)
        if (const std::optional<double> again = timed()) latest = *again;
      last->second = latest;
    } else {
      last->second = *ms;
    }
  }
}

result<deployment::receive_cost> deployment::probe_receive_cost(const std::string& name, size_t large, int rounds) {
  auto node = nodes_.find(name);
  if (node == nodes_.end() || down_nodes_.count(name))
    return status::error("receive cost probe: node '" + name + "' is not connected");
  const size_t small = 64;
  if (large < (size_t(1) << 16) || rounds < 2)
    return status::error("receive cost probe: needs a large message of at least 64 KiB and two rounds");
  const protocol::bytes small_payload(small, 0x5a), large_payload(large, 0xa5);
  const std::string what = "node '" + name + "': receive cost probe";
  // cpu[2k]: a small message handled, cpu[2k + 1]: the large one after it; one pair of warm-up
  // first (the first large message grows the node's buffers), and a small message last, which
  // closes the last round.
  std::vector<const protocol::bytes*> order;
  for (int k = 0; k <= rounds; ++k) order.insert(order.end(), {&small_payload, &large_payload});
  order.push_back(&small_payload);
  std::vector<double> cpu;
  for (const protocol::bytes* payload : order) {
    auto at = ask<double>(*self_, node->second, options_.timeout, what, protocol::recv_cost_atom::value, *payload);
    if (!at) return at.error();
    cpu.push_back(*at);
  }
  // Whatever else the node does meanwhile (heartbeats, timers) only adds CPU time, and more of
  // it to the longer intervals: the least of each kind of interval is its estimate.
  double with_large = 1e300, with_small = 1e300;
  for (size_t k = 2; k + 2 < cpu.size(); k += 2) {
    with_large = std::min(with_large, cpu[k + 1] - cpu[k]);  // a small answer sent, the large message received
    with_small = std::min(with_small, cpu[k + 2] - cpu[k + 1]);  // a small answer sent, a small message received
  }
  return receive_cost{std::max(0.0, with_large - with_small) / (double(large - small) * 1e-6), with_small};
}

}  // namespace d3
