// What one answered request's virtual times say about the links and nodes it crossed (emulation,
// virtual clock): the planner's observations. Pure logic on a stage graph and the stages' reports;
// the runtime (actors/request_session) collects the reports, this turns them into observations.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "kernels/graph.hpp"
#include "plan/plan.hpp"

namespace d3 {

// One stage's virtual times for one request (virtual clock; emulation).
struct stage_report {
  int stage_id = -1;
  // Its last input arrived; its bundles left. Virtual ms, or wall ms (deployment maps them onto
  // the app's clock).
  double ready_ms = 0, finish_ms = 0;
  double cpu_ms = 0;                   // thread CPU time of its kernels (or region copies)
  uint64_t bytes_sent = 0;             // tensor payload bytes sent to other nodes
  double messages_ms = 0;              // ms (in the clock's terms) decoding its inputs, encoding its outputs
};

// One transfer seen in a request's virtual times (emulation): `bytes` left `from` and arrived at
// `to` `ms` later (the receiving stage's ready time minus the sending stage's finish, for stages
// whose remote inputs all come from one stage; the app's sends and answers included).
// Wall clock: `ms` compares two processes' clocks through estimated offsets, and may be off by up
// to clock_error_ms either way (0: one clock, or the virtual clock).
struct transfer_observation {
  std::string from, to;
  size_t bytes = 0;
  double ms = 0;
  double clock_error_ms = 0;
};

// One stage's compute in a request's virtual times (emulation): node `node` computed `shares` of
// `layers` (graph layer indices; layer_shares: 1 for a segment, a tile's area) in `ms` (finish
// minus ready minus message handling: with one request in flight the node is free when the
// inputs are there, so this is its compute time).
struct compute_observation {
  std::string node;
  std::vector<int> layers;
  std::vector<double> shares;
  double ms = 0;
  // A light probe of an idle node (deployment::probe_idle_nodes), not a stage: a fragment run
  // alone, whose time relative to the profile differs from a stage's (what dominates it differs).
  bool probe = false;
};

// The per-version constants the observations need, computed once when a version is installed.
// Invariant: remote_inputs and shares have one entry per stage of `stages`.
class request_accounting {
 public:
  request_accounting() = default;
  // `app_node`: the node the app sits on (requests start and answers end there).
  request_accounting(const graph& g, const stage_graph& stages, std::string app_node);

  // Transfers whose times the reports pin down: a stage with exactly one remote producer (the
  // app counts, from `virtual_start_ms`), and the answer when one stage sends it (arriving at
  // `virtual_end_ms`), each only when the producers on the receiving node had finished before
  // it arrived (else the receiver waited for them, and the arrival is not known). Reports of
  // unknown stages are skipped. A crossing whose tensors the plan encodes (codecs) has no fixed
  // size: its bytes are what the sender reported sending (`app_bytes_sent` for the app) when
  // that sender sends to no other remote stage; otherwise the transfer is not observed.
  // `clock_error`: how far a node's mapped times may be off (wall clock); the app's own times
  // (its sends, the answer's arrival) are exact. Unset: every time is exact.
  std::vector<transfer_observation> transfers(const std::vector<stage_report>& reports, double virtual_start_ms,
                                              double virtual_end_ms, uint64_t app_bytes_sent = 0,
                                              const std::function<double(const std::string&)>& clock_error = {}) const;
  // One observation per reported segment or tile stage.
  std::vector<compute_observation> computes(const std::vector<stage_report>& reports) const;

 private:
  std::vector<stage> stages_;  // a copy: the accounting outlives moves of the version holding it
  std::string app_node_;
  // Per stage: bytes of its inputs by producing stage on another node (-1: the app).
  std::vector<std::map<int, size_t>> remote_inputs_;
  std::vector<std::set<int>> local_inputs_;  // per stage: producers on its own node (-1: the app)
  std::set<int> local_answers_;              // stages on the app's node that send it graph outputs
  std::map<int, size_t> answer_bytes_;      // producing stage -> graph-output bytes it sends the app
  // Per stage: producing stages (-1: the app) whose tensors to it are encoded; the answer's.
  std::vector<std::set<int>> encoded_inputs_;
  std::set<int> encoded_answers_;
  std::map<int, int> remote_destinations_;  // sender stage (-1: the app) -> remote receivers (app too)
  std::vector<std::vector<double>> shares_;  // per stage: layer_shares
};

}  // namespace d3
