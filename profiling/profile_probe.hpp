// A node's profile probe (protocol::profile_atom): per-layer compute times of a model fragment
// sent without weights, and what moving tensors costs, measured on this process under its
// emulated clock (emulation/node_emulation.hpp). No actors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.hpp"
#include "planner/profile.hpp"

namespace d3 {

// The most timed runs per probe call, and the most rounds of one probe (bytes from a peer).
constexpr int max_probe_repeats = 100;

// JSON {"layers": {name: ms, ...}, "messages": {...}, "clock": ..., "speed": ...} or
// {"error": text}; see the .cpp for how it measures. Round `round` of `rounds` (0 <= round <
// rounds): one part of a probe whose rounds the app interleaves over its nodes (the executor is
// kept until the last round).
std::string profile_fragment(const std::vector<uint8_t>& payload, int repeats, int round = 0, int rounds = 1);

// A light probe of this node's speed (protocol::speed_atom): the fragment (sent without weights)
// runs once, timed under the node's clock as a stage runs it (virtual: the run's thread CPU time
// divided by the node's speed; wall: its wall time), after an untimed run. The executor is kept
// for the next probe of the same fragment (weights packed once). The timed run's ms, or an error
// naming what is wrong with the fragment. `max_layers`: as for shipments.
result<double> time_fragment(const std::vector<uint8_t>& payload, size_t max_layers);

// Per-layer times from repeated runs (runs[r][l]: ms of layer l in run r; all runs of one size):
// each layer's median, scaled so that the layers add up to the median run. On a node whose speed
// is a cpu quota the quota's waits fall on a few layers of each run, and the median of every
// layer alone would drop them all (measured: 1.47 s for runs of 2.5 s at 2.25% of a core).
std::vector<double> median_layer_times(const std::vector<std::vector<double>>& runs);

// One profile for several nodes known to be alike (the same hardware at the same speed): each
// layer's median over their profiles, and each message cost's (median_of). Codec ratios are
// taken from the first (they depend on the model, not the node). Precondition: profiles of one
// model (milliseconds of one size); empty -> empty profile.
layer_profile pooled_profile(const std::vector<layer_profile>& profiles);

}  // namespace d3
