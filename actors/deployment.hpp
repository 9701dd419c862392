// The app side of the distributed runtime (d3-infer and the tests share it): connects to the
// node processes, ships the layers each node lacks, spawns the stage graph's actors on their
// nodes with remote_spawn, wires their routes (node to node), runs requests with ids and collects
// the answers, and exits the stages at the end. Every step has a finite timeout and reports errors
// naming the node, its address or the stage. Protocol: actors/protocol.hpp.
#pragma once

#include <caf/all.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "base/clock_offset.hpp"
#include "base/send_backlog.hpp"
#include "emulation/emulation.hpp"
#include "emulation/emulation_trace.hpp"
#include "plan/plan.hpp"
#include "plan/request_accounting.hpp"
#include "actors/bundle_sender.hpp"
#include "actors/protocol.hpp"
#include "actors/shipment.hpp"
#include "topology/topology_log.hpp"
#include "kernels/graph.hpp"
#include "base/status.hpp"
#include "kernels/tensor.hpp"
#include "planner/profile.hpp"

namespace d3 {

struct node_endpoint {
  std::string name;
  std::string host;
  uint16_t port = 0;
  std::string address() const { return host + ":" + std::to_string(port); }
};

// Whether `host` names this machine's loopback interface (127.0.0.0/8, ::1, localhost).
bool is_loopback_host(const std::string& host);
// The heartbeats' backlog floor when every node is on a loopback address (deployment_options::
// heartbeat_floor_mbit left at its default): loopback moves GB/s.
constexpr double loopback_floor_mbit_per_s = 1000.0;

// "device=127.0.0.1:4301,edge1=127.0.0.1:4302" (a missing host means 127.0.0.1).
result<std::vector<node_endpoint>> parse_node_list(const std::string& text);

// The emulated testbed (emulation, not real links or devices; emulation/emulation.hpp). At every
// deploy the app sends each node its link table (a profile per destination node, from the roles)
// and the clock; nodes never read the app's files.
//   wall:    real time; a stage's send to another node is delivered at link_clock arrival
//            (delayed_send); compute is real (speed not applied).
//   virtual: bundles carry virtual times; a stage's work finishes at node_clock.compute(ready,
//            thread CPU ms) with the node's speed; links add latency + bytes / bandwidth. Requests
//            start at the virtual time of the latest answer received when they are sent (with one
//            request in flight: the previous answer's arrival, so node clocks never run ahead;
//            with more in flight they share start times and queue on the node and link clocks, so
//            their latencies include that queueing).
struct emulation_settings {
  clock_mode clock = clock_mode::wall;
  bool shaped = false;              // false: unshaped links (d3-infer --uplink none)
  testbed links;                    // link profiles by role pair, when shaped
  std::string app_node = "device";  // the node the app sits on: requests start and answers return
                                    // there (to a stage on it at no cost, else over its links)
  // This machine's transport work per MB received, at speed 1 (message_costs::receive_ms_per_mb,
  // from probe_receive_cost): with shaped links each node pays it at its speed while a message
  // arrives, the app's inputs to a stage on app_node included (link_clock). 0: not modelled.
  double receive_ms_per_mb = 0;
};

struct deployment_options {
  emulation_settings emulation;
  std::chrono::milliseconds timeout{10000};  // every connect, request and answer wait
  topology_log* log = nullptr;               // optional
  // The app's own name in deploy_report::bytes_per_request (bytes_between_nodes counts the app as
  // a node of this name). Where the app sits in the emulation is emulation.app_node.
  std::string app_name = "app";
  size_t shipment_bytes = size_t(32) << 20;  // layers are shipped in messages of at most this size
  // A wall-clock migration's background shipments go in parts of at most this size, each
  // acknowledged before the next: the app's pings to the node share the connection and wait
  // behind at most one part (a 32 MB message held them 2.6 s on a 100 Mbit/s link, and the app
  // took the receiving edge for frozen).
  size_t background_part_bytes = size_t(1) << 20;
  // Light probes of idle links (for the planner's estimates): after an answer, every role pair
  // (device-edge, device-cloud, edge-edge, edge-cloud, between the app node, the first edge node
  // and the cloud) whose link carried no transfer for this many answers is probed with two small
  // messages (1 and 16 KB) through the nodes, and under the wall clock with a third where a token
  // bucket may hide the rate (long_probe_bytes); the probes join the answer's transfers. Likewise
  // every node that computed nothing in this many answers runs a small fragment of the model
  // once (probe_idle_nodes); its time joins the answer's computes. 0: never.
  int idle_probe_every = 0;
  // A node whose kernels' fingerprint differs from the app's (kernels/arithmetic_fingerprint.hpp:
  // another CPU family or ISA may sum in another order) makes outputs that are not bit-identical to
  // the app's single-process run. connect() logs it ("arithmetic_differs") and lists it in
  // arithmetic_mismatches(); with this set, connect() refuses the node instead.
  bool require_same_arithmetic = false;
  // Fault detection while requests run (run()): every node is pinged each `heartbeat`; a node whose
  // connection is lost is down at once (CAF's down message), one that answers no ping for
  // `silence` is down too (a frozen process keeps its connection open).
  std::chrono::milliseconds heartbeat{250};
  std::chrono::milliseconds silence{1250};
  // The nodes watch the peers they exchange tensors with (a link between two nodes can fail while
  // both answer the app): a peer silent this long is reported to the app (sent with the peer
  // command). Kept apart from `silence` so that a link is judged on its own time scale.
  std::chrono::milliseconds peer_silence{1250};
  // Heartbeats share the connections with the data: silence counts from when what was sent to a
  // node would have crossed at this rate (base/send_backlog.hpp; the nodes get it too). Set it to
  // the slowest real link (e.g. 0.13 for a CAT1 backbone), or a node behind it is taken for frozen.
  // Left at the default with every node on loopback, connect() raises it to
  // loopback_floor_mbit_per_s.
  double heartbeat_floor_mbit = send_backlog::default_floor_mbit_per_s;
  // Failover: when a node is lost, re-plan on the nodes left (set_replanner, else repair_plan of
  // the deployed plan), migrate, and re-send every request not yet answered. false: the requests
  // of a version that lost a node fail.
  bool failover = true;
  // Rejoin: nodes that are down are reconnected (same address) this often while requests run;
  // one that answers again is used again (the plan is recomputed with it). 0: never.
  std::chrono::milliseconds reconnect_every{1000};
};

struct deploy_report {
  int plan_version = 0;
  uint64_t model_hash = 0;
  size_t weight_bytes_shipped = 0;   // weights + biases of the layers shipped
  size_t message_bytes_shipped = 0;  // the shipments as sent
  size_t layers_shipped = 0;
  size_t layers_cached = 0;          // layers a node already had
  std::map<std::string, size_t> weight_bytes_per_node;
  std::map<std::string, std::vector<int>> layers_per_node;  // the layers shipped, by node
  // Standby copies: weight bytes by the link class they crossed ("device-edge", "edge-edge",
  // "edge-cloud", "device-cloud"; nothing for copies to the app's own node).
  std::map<std::string, size_t> weight_bytes_per_link;
  std::vector<link_bytes> bytes_per_request;  // bytes_between_nodes
  double deploy_ms = 0;
};

struct request_outcome {
  uint64_t id = 0;
  int plan_version = 0;
  int trace_step = -1;  // the emulation trace's step in force when it started (-1: none)
  bool ok = false;
  std::string error;
  std::map<std::string, tensor> outputs;  // graph outputs by name
  double latency_ms = 0;
  double wall_start_ms = 0;  // when it was first sent, wall ms since the last deploy()
  // Virtual clock (emulation): start stamp, the answer's virtual arrival at the app node, their
  // difference.
  double virtual_start_ms = 0, virtual_end_ms = 0, virtual_latency_ms = 0;
  // The stages' reports (in order of arrival): virtual times, or under the wall clock wall ms
  // since the deploy on the app's clock (each node's clock mapped through its estimated offset).
  std::vector<stage_report> stage_reports;
  uint64_t app_bytes_sent = 0;  // the request's input bytes the app sent to other nodes (as encoded)
  // What the planner learns from (both clocks; none from a re-sent request): the transfers between
  // stages and the computes of segment and tile stages.
  std::vector<transfer_observation> transfers;
  std::vector<compute_observation> computes;
  // Standby copies that arrived since the previous answer (deployment::take_arrived_standby;
  // filled only when an adaptation hook is set): node -> layer indices.
  std::map<std::string, std::vector<int32_t>> standby_arrived;
  // A migration's weights were still on their way when it was answered (wall clock: the plan
  // the planner chose is not serving yet): the planner learns from it but decides nothing.
  bool migrating = false;
};

// A live migration (deployment::migrate): what moved between plan versions.
struct migration_report {
  int from_version = 0, to_version = 0;
  std::vector<std::string> layers_moved;  // layers whose set of nodes changed
  // Virtual clock, shaped links: when the migration started and when its weights had crossed the
  // emulated links (the new version serves requests starting from then on); equal otherwise.
  // migrate() returns the crossing as estimated then (requests sharing the links may slow it);
  // deployment::migrations() holds the time the links delivered once a request has found it.
  double virtual_start_ms = 0, ready_virtual_ms = 0;
  // Wall clock (ms since the last deploy()): when its shipments started and when the new version
  // took requests. Under the wall clock a migration that ships weights ships them in the
  // background while the running version keeps serving (deployment::ship_in_background).
  double wall_start_ms = 0, wall_ready_ms = 0;
  bool shipped_in_background = false;  // the running version served while its weights crossed
  size_t layers_unchanged = 0;
  deploy_report deploy;                   // shipping of the new version (moved layers only)
};

using clock_type_epoch = std::chrono::steady_clock::time_point;

class deployment {
 public:
  explicit deployment(caf::actor_system& system, deployment_options options = {});
  ~deployment();  // tears down the stages still running
  deployment(const deployment&) = delete;
  deployment& operator=(const deployment&) = delete;

  // Connects to every node and checks it is the node it is named as. Errors name the node and
  // its address (nothing listening, not a d3-node, wrong name, no answer within the timeout).
  status connect(const std::vector<node_endpoint>& nodes);
  // The connected nodes whose arithmetic fingerprint differs from this process's: node -> its
  // fingerprint (see deployment_options::require_same_arithmetic).
  const std::map<std::string, std::string>& arithmetic_mismatches() const { return arithmetic_mismatches_; }

  // Deploys `plan` of `g` (prepared): stage graph, peer connections for node-to-node traffic,
  // layer shipping (only what each node lacks), remote_spawn of every stage, setup, routes.
  // A previous deployment is torn down first. `g` must outlive the deployment (failover re-plans
  // on it). With options.failover, a node of the plan lost before or during it (killed: its
  // connection gone; frozen: silent to a ping after a step waited out the timeout) is planned
  // around like a loss while requests run: the plan on the nodes left (set_replanner, else
  // repair_plan) is deployed instead, at most twice, its version above `plan`'s (the report's
  // plan_version, running_plan()); the loss is a fault_event with that version. The node may
  // rejoin later (reconnect_every). Losing the app's node under the emulation fails it.
  result<deploy_report> deploy(const graph& g, const deployment_plan& plan);

  // Deploys `plan` (a higher version than the running one) next to the running version, without
  // stopping it: ships only the layers a node lacks (the moved ones), spawns and wires the new
  // stages, then sends every new request to them. Requests in flight finish on their version;
  // a version is retired (its actors exited) when its last request is answered. The emulation's
  // clocks keep running; under the virtual clock with shaped links the shipped weights cross the
  // links from the app's node as shared bulk (link_clock::send_shared: the requests' messages
  // take half of a link while bulk is left on it) and the new version takes the requests that
  // start once they have arrived (a lower bound in migration_report::ready_virtual_ms). Logs
  // "layers_migrated" with the layers moved and the bytes shipped. This call ships synchronously
  // (failover, the virtual clock); the request loop ships a wall-clock migration's weights in
  // the background first (ship_in_background), so requests keep flowing meanwhile.
  // With `ship_everything` (the full re-partition a partial adjustment is compared with) every
  // layer of the new plan is shipped to its node again, cached or not: a redeploy from scratch,
  // still without stopping the requests.
  result<migration_report> migrate(const graph& g, const deployment_plan& plan, bool ship_everything = false);
  // Whether a migration's weights are on their way (ship_in_background): the next one waits.
  bool shipping() const { return shipping_ != nullptr; }

  // Standby copies: ships each node of `layers` the weights it lacks into its layer cache, and
  // spawns nothing, so that a later migration can move work there without shipping (planner/
  // standby.hpp chooses them). Under the virtual clock with shaped links the copies travel as
  // background traffic: they fill the links' idle time and delay no request (link_clock::
  // send_background); a version with a stage on such a node serves once the node's copies have
  // arrived. Each copy comes over the fastest link to its node: from the app's node, or from a
  // node that runs the layer (an edge's weights to another edge over the edge-edge link, 10x the
  // LAN in D3's setting), which sends them itself ("standby_relayed"; if that fails, the app
  // ships them). Nodes that are down are skipped. Logs "standby_shipped".
  result<deploy_report> prestage(const graph& g, const std::map<std::string, std::set<int>>& layers);

  // Standby copies kept up by the deployment: `policy` (e.g. planner/standby.hpp's standby_copies
  // on the cluster) names the copies a plan wants; they are sent with prestage() at once if a plan
  // runs, and after every deploy() and migration (failovers included). A copy that cannot be sent
  // is logged ("standby_failed") and counted in standby_errors(): the requests go on, and a later
  // move there ships what is missing. An empty policy turns it off.
  using standby_policy = std::function<std::map<std::string, std::set<int>>(const deployment_plan&)>;
  void set_standby(standby_policy policy);
  // The standby copies that have arrived since the last call (virtual clock with shaped links:
  // once their background traffic has crossed; otherwise once sent), by node. The app's request
  // loop hands them to the adaptation hook (request_outcome::standby_arrived).
  std::map<std::string, std::vector<int32_t>> take_arrived_standby();
  // Every standby copy sent so far (bytes per node accumulate over calls).
  const deploy_report& standby_sent() const { return standby_sent_; }
  const std::vector<std::string>& standby_errors() const { return standby_errors_; }

  // Changes the emulated links (and optionally node speeds) while requests flow: a trace step.
  // Clocks keep running. Errors name the node that refused.
  status update_emulation(const testbed& links, const std::map<std::string, double>& speeds = {});

  // Makes run() follow `trace` (emulation/emulation_trace.hpp): before a request starts, every step
  // whose time has come is applied with update_emulation (a step's time counts from the last
  // deploy(): virtual ms under the virtual clock, wall ms otherwise) and logged as "trace_step".
  // The links and speeds the steps leave out stay as they are.
  void set_trace(emulation_trace trace) {
    trace_ = std::move(trace);
    trace_applied_ = -1;
  }

  // Called with each answered request during run(); a plan returned is migrated to (migrate())
  // before the next request starts, while the requests in flight continue.
  using adaptation_hook = std::function<std::optional<deployment_plan>(const request_outcome&)>;
  // With `redeploy_everything`, each plan is migrated to with migrate(g, plan, true).
  void set_adaptation(adaptation_hook hook, const graph* g, bool redeploy_everything = false) {
    adaptation_ = std::move(hook);
    adaptation_graph_ = g;
    adaptation_redeploys_everything_ = redeploy_everything;
  }
  const std::vector<migration_report>& migrations() const { return migrations_; }

  // The plan to run on `available` nodes (name -> role) after a node was lost or came back;
  // `deployed`: the plan given to deploy(). Default: repair_plan(g, deployed, available).
  using replan_hook = std::function<result<deployment_plan>(const std::map<std::string, std::string>& available,
                                                            const deployment_plan& deployed)>;
  void set_replanner(replan_hook hook) { replanner_ = std::move(hook); }

  // One node loss or rejoin as the deployment handled it.
  struct fault_event {
    std::string node, what;   // what: "down" or "rejoined"
    std::string cause;        // down: "connection lost: ..." or "no heartbeat for N ms"
    double detected_after_ms = 0;  // down: since the node's last heartbeat answer
    double recovered_ms = 0;       // wall ms the failover (re-plan, migration, re-sends) took
    int new_version = 0;           // the version it moved to (0: none)
    size_t requests_resent = 0;
    std::string error;             // why no failover happened
  };
  const std::vector<fault_event>& faults() const { return faults_; }
  // Answers that came for a request already answered (after a re-send), dropped.
  size_t duplicates_dropped() const { return duplicates_dropped_; }

  // Runs one request per input map (graph input name -> tensor), at most `in_flight` at once.
  // Every request gets an outcome; an answer missing for `timeout` fails the requests waiting.
  // When a stage actor or its node goes away (CAF down message: process killed, connection
  // lost), every waiting and later request fails at once naming the stage and node.
  std::vector<request_outcome> run(const std::vector<std::map<std::string, tensor>>& inputs, int in_flight);

  // The per-layer compute times of `g` on each node of `names`, measured there (a probe run of
  // every layer, sent without weights; protocol::profile_atom): what that node's clock charges
  // per layer, the median of `repeats` (1..max_probe_repeats) rounds, each a run on every node in
  // turn. The model is hashed and encoded once for all of them; each node caches its answers per
  // model. Errors name the node.
  result<std::map<std::string, layer_profile>> probe_profiles(const graph& g, const std::vector<std::string>& names,
                                                              int repeats = 3);
  result<layer_profile> probe_profile(const graph& g, const std::string& name, int repeats = 3);

  // The transport's work per MB node `name` spends receiving a message (socket reads, TLS
  // decryption, framing; message_costs::receive_ms_per_mb), in ms of CPU time per MB: `rounds`
  // pairs of a 64-byte and a `large`-byte message (protocol::recv_cost_atom), each sent once the
  // previous one is answered. The node's process CPU time from handling a small message to
  // handling the next large one, less that from the large one to the next small one, is what the
  // large payload cost more to receive: the least of each over the rounds (the node's heartbeats
  // and timers only add to them; measured on a 9%-quota node, medians read 1.4 and 4.3 ms per MB
  // in two runs of one cluster).
  // The least interval from one small message to the next is the node's work per message: a
  // small message received, handled and answered.
  // CPU time: a node under a cpu quota measures what a core of its machine spends (its speed
  // divides it in the models). Precondition: nothing else is sent to the node meanwhile. Errors
  // name the node.
  struct receive_cost {
    double ms_per_mb = 0;       // the payload's receiving, per MB (message_costs::receive_ms_per_mb)
    double ms_per_message = 0;  // one small message in and one small answer out
  };
  result<receive_cost> probe_receive_cost(const std::string& name, size_t large = size_t(2) << 20, int rounds = 15);

  // A light probe: `size` bytes from node `from` to node `to` over their emulated link (both
  // connected), sent `after_ms` after the latest answer (virtual clock; a probe sent while an
  // earlier one is still on the link would queue behind it and time the queue too). Errors name
  // the nodes.
  result<transfer_observation> probe_link(const std::string& from, const std::string& to, size_t size,
                                          double after_ms = 0);

  // Sends `payload` as a data message to stage `stage_id` and waits for the error it reports
  // (tests: a corrupt payload must produce an error reply and leave the stage serving).
  result<std::string> send_raw(int stage_id, const std::vector<uint8_t>& payload);

  // Exits every stage actor (anon_send_exit) and waits until each node has received the exits.
  void teardown();

  // The running version's stage graph (empty when nothing is deployed) and plan.
  const stage_graph& stages() const;
  const deployment_plan* running_plan() const { return current_ ? &current()->plan : nullptr; }
  // Errors stages reported for requests this deployment did not know (e.g. corrupt payloads).
  const std::vector<std::string>& stray_errors() const { return stray_errors_; }
  // Non-empty once a stage or node of the current deployment is gone.
  const std::string& broken() const { return broken_; }
  bool deployed() const { return current_.has_value(); }

 private:
  friend class request_session;
  // One installed plan version: its stage graph, the actors running it (by stage id), where a
  // request's inputs go, and what its requests' reports say about links and nodes.
  struct deployed_version {
    int version = 0;
    stage_graph stages;
    std::vector<protocol::stage_handle> actors;
    bundle_routes inputs;  // graph input -> the stages reading it, with their nodes
    request_accounting accounting;
    std::set<size_t> gone;  // stages known to have exited
    std::string broken;     // why this version cannot answer any more (a stage is gone)
    size_t in_flight = 0;   // requests sent under it and not answered yet (run())
    // Virtual clock: when its layers have crossed the emulated links (requests that start
    // earlier go to the newest older version that is ready). 0: ready at once.
    double ready_ms = 0;
    // Virtual clock: the nodes whose shipments (shared bulk on the links from the app's node,
    // link_clock::send_shared) it waits for. Requests sharing those links slow the shipments, so
    // ready_ms is a lower bound until serving() has checked it against the links; then empty.
    std::set<std::string> shipped_to;
    deployment_plan plan;
  };

  // A migration whose weights a worker thread ships while the running version keeps serving
  // (wall clock): once they have arrived, migrate() installs the plan, shipping nothing more.
  struct background_migration {
    deployment_plan plan;
    deploy_report report;  // what is being shipped (message bytes once joined)
    double wall_start_ms = 0;
    std::unique_ptr<background_shipper> shipper;
  };
  // Starts shipping what `plan` needs on the nodes that lack it (everything with
  // `ship_everything`) in the background: true when it started ("migration_shipping" in the log),
  // false when nothing needs shipping (migrate at once). Precondition: !shipping().
  result<bool> ship_in_background(const graph& g, const deployment_plan& plan, bool ship_everything);
  // The background migration of `version` whose shipper has sent its notice: joined and handed
  // over (nullptr: none of that version, e.g. a notice left from one cancelled).
  std::unique_ptr<background_migration> end_background_shipment(int version);
  // migrate() after a background shipment: its bytes and start count as the migration's.
  result<migration_report> migrate(const graph& g, const deployment_plan& plan, bool ship_everything,
                                   const background_migration* shipped_ahead);

  void log(topology_event event);
  // Wall ms since the last deploy() (wall_epoch_).
  double wall_now_ms() const {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wall_epoch_).count();
  }
  // The running version (nullptr: nothing deployed).
  deployed_version* current();
  const deployed_version* current() const;
  // The version a request starting at virtual `now_ms` goes to: the newest one ready then.
  deployed_version* serving(double now_ms);
  // Retires the older versions no request needs any more (none in flight, a newer one ready).
  void retire_idle(double now_ms);
  // Virtual clock, shaped links: the layer shipments of a migration go as shared bulk over the
  // links from the app's node to each node that received weights (link_clock::send_shared); the
  // virtual time the last one would arrive if no request shared them.
  result<double> charge_shipments(const deploy_report& shipped);
  // `bytes` of shipments to `node` sent at virtual `send_ms` as shared bulk on the links from the
  // app's node (the app's link clock and the app node's; 0 bytes asks): when that bulk will have
  // arrived, as the links stand then.
  result<double> send_shared(const std::string& node, double send_ms, size_t bytes);

  // actors/installer.cpp: ships, spawns and wires `plan`'s stages next to whatever runs.
  result<deployed_version> install(const graph& g, const deployment_plan& plan, deploy_report& report,
                                   bool ship_everything = false);
  status connect_peers(const std::vector<link_bytes>& links);
  status ship_layers(const graph& g, const stage_graph& sg, deploy_report& report, bool ship_everything);
  // Ships each node the layers of `needed` (weighted ones) it lacks (all with ship_everything);
  // logs `event` per node.
  status ship_to_nodes(const graph& g, const std::map<std::string, std::set<int>>& needed, deploy_report& report,
                       bool ship_everything, const char* event);
  // Of `layers` (weighted ones), those `node` lacks; all of them with `ship_everything`.
  result<std::vector<int>> layers_to_ship(const graph& g, const std::string& node, const std::set<int>& layers,
                                          uint64_t model_hash, bool ship_everything);
  // Virtual clock, shaped links: when the standby copies sent to `node` will have arrived (the
  // later of the app's link clock and the app node's); now without any. With `needed_now` what
  // is left of them is sent at once like any message (link_clock::promote_background).
  result<double> standby_arrival(const std::string& node, bool needed_now = false);
  // Standby copies relayed node to node: `from` sends `to` the layers (graph order) of its cache
  // that `to` lacks, in messages of at most options_.shipment_bytes of weights, its link to `to`
  // charged from `send_ms` (virtual). Adds to report's counts; an error leaves the rest unsent.
  status relay_to_node(const graph& g, const std::string& from, const std::string& to, const std::vector<int>& layers,
                       double send_ms, deploy_report& report);
  // Of `layers` (weighted, in order), those `node` does not hold in its cache, in that order.
  result<std::vector<int>> lacking_layers(const graph& g, const std::string& node, const std::vector<int>& layers,
                                          uint64_t model_hash);
  // `node` has a connection of its own to `peer` (the peer command), made once. `watch`: the node
  // also pings the peer and reports its silence (pairs that exchange tensors); false for a pair
  // that is only probed, whose silence stops nothing (measured: a device under a 0.1-core quota,
  // watching two edges it only probed, reported both silent and caused two false failovers).
  status connect_pair(const std::string& node, const std::string& peer, bool watch = true);
  status spawn_stages(const graph& g, const stage_graph& sg, int version, uint64_t hash,
                      std::vector<protocol::stage_handle>& actors);
  status wire_routes(const stage_graph& sg, deployed_version& v, std::map<int, std::vector<int>>& sends_to);
  void log_version(const graph& g, const deployed_version& v, const deployment_plan& plan,
                   std::map<int, std::vector<int>>& sends_to);
  void exit_actors(const std::vector<protocol::stage_handle>& actors);

  // deploy()'s failover: after `failed` (a re-plan of `asked`, or `asked` itself) could not be
  // installed with `error`, the plan to try next when a node it uses was lost; else an error.
  result<deployment_plan> replan_at_deploy(const graph& g, const deployment_plan& asked,
                                           const deployment_plan& failed, const std::string& error, int tries);
  // Exits v's actors and logs why; v stays in versions_ until the caller erases it.
  void retire(deployed_version& v, const std::string& reason);
  // Sends every live node its link table from options_.emulation (and the speeds given); with
  // keep_clocks the nodes' virtual time lines continue (a change while requests flow).
  status send_emulation(bool keep_clocks, const std::map<std::string, double>& speeds);
  // The same to one node (its last speed sent, if any): a node that rejoins gets it, since a
  // restarted process starts with none (it would stamp no virtual times) and a frozen one missed
  // the changes sent while it was down.
  status send_emulation_to(const std::string& name, bool keep_clocks, std::chrono::milliseconds timeout);
  // Applies the trace steps due at `now_ms`; errors name the step.
  status follow_trace(double now_ms);
  // A node actor that went away: marks it down and logs it once. Returns its name ("" if none).
  std::string note_node_down(const caf::down_msg& down);
  void drain_down_messages();
  // Pings every live node and waits up to the silence: one that does not answer is marked down
  // (`why` says when). A frozen node keeps its connection: a request to it waits out its timeout.
  void mark_unresponsive_nodes_down(const std::string& why);
  // A new ping sequence number, its send time kept (the last 256: heartbeats and mark_sent's
  // markers) for round trips, rejoins and crossed sends.
  uint64_t next_ping_seq();
  // A ping right behind what the app just sent `node`: its pong proves those sends crossed
  // (send_backlog::crossed_before), so a frozen node's silence counts from at most the inputs
  // in flight at the heartbeat floor, not from everything sent since the last heartbeat round
  // (measured: a node frozen after 40 requests of 602 KB at a 2 Mbit/s floor, found after 10-25
  // s with heartbeats alone).
  void mark_sent(const std::string& node);
  // Whether this answer probes every idle link and node (burst_now_): it and the two after it
  // when its latency is more than 10% and four deviations off the median of the last eight (a
  // change under way: the planner is about to weigh the links and nodes it does not use).
  void watch_latency(const request_outcome& o);
  // Idle links: light probes (1 KiB, 16 KiB, and on real links one long enough to get past a
  // token bucket) of a link class no transfer of the last idle_probe_every answers crossed, or
  // of every idle link class in a burst (watch_latency). Without the burst, a backbone drop seen
  // by the requests was confirmed on the idle edge-cloud link only two regular probes (6 answers,
  // 10 s) later, and the planner's first move priced that link as before the drop (netns cluster).
  // A probe that finds its link changed starts a burst itself, this answer's idle nodes
  // included: links and node speeds that change at once while the plan runs on neither (a trace
  // step restoring both) are then seen together, and the planner's move takes both into account.
  void probe_idle_links(request_outcome& o);
  // Idle nodes' speeds: a small fragment of the model from its input on (speed_probe_layers)
  // runs on a node without a stage in the answer, its time joins the answer's computes as the
  // planner's sample of that node's speed. One idle node per answer, in turn, each at most
  // every node_probe_every x idle_probe_every answers, and every idle node in a burst
  // (watch_latency); a probe 1.5x off the node's last is followed by two more at once (the
  // planner's median). Without it a node that slowed while idle looks as fast as when last used:
  // measured, two edges slowing at once, resnet18 moved off the one it ran on onto the other, and
  // took 8 requests and two migrations to get within 10% of the optimum.
  void probe_idle_nodes(request_outcome& o);

  // actors/failover.cpp.
  struct node_health {
    std::chrono::steady_clock::time_point last_answer;  // connect or last pong
    // When the oldest ping not answered since last_answer was sent (unset: none is waiting).
    // Silence counts from it, not from last_answer: while the app sends no pings (a blocking
    // step of its own, a planner decision) the node cannot answer any, and that is not its
    // silence (measured under cpu quotas: a 1 s pause plus one slow pong marked three live
    // nodes down at once).
    std::optional<std::chrono::steady_clock::time_point> unanswered_since;
    std::chrono::steady_clock::time_point next_reconnect;
    // A pong to a ping sent after it was marked down, on its connection of then: it was frozen,
    // not gone. (Pongs that were under way when it went down say nothing.)
    bool answered_while_down = false;
    double down_at_ms = 0;  // monotonic_ms() when it was marked down
    // Its connection is gone (CAF's down message). Only then is it reconnected: connecting to a
    // frozen process (its socket still accepts) would stall the middleman on the handshake.
    bool connection_lost = false;
    // Reported unreachable by a peer node (a link between nodes failed): not taken back before.
    std::chrono::steady_clock::time_point hold_until;
    // That peer (empty: none): the node is taken back only once it reaches the node again (its
    // recheck), or a plan would be put across the same broken link (measured under ASan: a cut
    // between edge2 and the cloud that outlasted the hold failed edge2 over and back 4 times).
    std::string held_for;
    clock_offset_estimator clock;  // the node's clock against the app's, from the pongs
  };
  // Counts silence from now for every live node: called when the app starts listening again
  // after a blocking step (pongs were not read meanwhile, which is not the nodes' fault).
  void refresh_health();
  // Pings every live node when due; nodes silent for options_.silence are returned (not yet
  // marked down).
  std::vector<std::string> heartbeat();
  void on_pong(const caf::actor_addr& from, uint64_t seq, double node_ms);
  // A time `node_ms` on `node`'s monotonic clock as wall ms since wall_epoch_ (the app's clock),
  // through the node's clock offset (0 before any pong: one machine).
  double node_to_wall_ms(const std::string& node, double node_ms) const;
  // How far node_to_wall_ms(node, ...) may be off now (clock_offset_estimator::error_bound).
  double clock_error_ms(const std::string& node) const;
  // Marks `node` down (logged once with the cause and the delay since its last answer) and every
  // version with a stage on it broken. Returns false when it was down already.
  bool mark_node_down(const std::string& node, const std::string& cause);
  // The nodes usable now, name -> role.
  std::map<std::string, std::string> available_nodes() const;
  // Re-plans on the nodes left and installs that plan as the current version (a migration);
  // the new version, or why not.
  result<int> fail_over(const std::string& why);
  result<int> fail_over_once(const std::string& why);
  // Tries to reconnect the nodes that are down (when due); the ones that answer again.
  std::vector<std::string> try_rejoin();
  // Whether the peer that found the link to `name` failed (node_health::held_for) reaches it
  // again (its recheck, bounded by peer_silence); true also when that peer is down or unknown.
  bool link_restored(const std::string& name);
  // The link class between two nodes by their roles ("device-edge", ...; testbed::link_names()),
  // or "unknown" for a node without a role.
  std::string link_class(const std::string& from, const std::string& to) const;

  caf::actor_system& system_;
  deployment_options options_;
  std::unique_ptr<caf::scoped_actor> self_;
  caf::actor loss_watcher_;  // ends the app's requests to a node lost meanwhile (actors/ask.hpp)
  std::map<std::string, node_endpoint> endpoints_;
  std::map<std::string, protocol::node_handle> nodes_;
  std::map<std::string, std::string> roles_;
  std::map<std::string, double> configured_speeds_;  // each node's speed from its own config (node_info)
  std::map<std::string, std::string> arithmetic_mismatches_;
  std::set<std::pair<std::string, std::string>> probe_peered_;  // connected, not watched (probes)
  std::set<std::pair<std::string, std::string>> peered_;
  std::set<std::string> down_nodes_;  // nodes whose node actor went away (process gone)
  std::mt19937_64 upload_ids_{std::random_device{}()};  // of shipments sent in parts: unique per app
  std::map<std::string, node_health> health_;
  std::chrono::steady_clock::time_point next_ping_;
  uint64_t ping_seq_ = 0;
  std::map<uint64_t, double> ping_sent_ms_;  // seq -> monotonic_ms when sent (the last few)
  // A background shipment's parts (sent, then acknowledged): a node receiving one is judged
  // silent from the later of its last answer and the part's crossing at the heartbeat floor.
  send_backlog shipment_backlog_;
  send_backlog app_backlog_;                 // the app's sends to each node (both clocks: the
                                             // bytes cross the real network either way)
  replan_hook replanner_;
  const graph* graph_ = nullptr;  // of the last deploy(); the caller keeps it alive
  deployment_plan deployed_plan_;  // the plan given to the last deploy()
  std::vector<fault_event> faults_;
  size_t duplicates_dropped_ = 0;

  // Invariant: versions_ holds the current version (*current_; none: nothing deployed) and the
  // older ones with requests still in flight; every actor of every version in it is monitored.
  std::map<int, deployed_version> versions_;
  std::optional<int> current_;
  std::string broken_;  // why no version can answer (the app's own node is gone)

  adaptation_hook adaptation_;
  const graph* adaptation_graph_ = nullptr;
  bool adaptation_redeploys_everything_ = false;
  std::vector<migration_report> migrations_;
  std::unique_ptr<background_migration> shipping_;  // invariant: its plan is not installed yet
  std::optional<emulation_trace> trace_;
  int trace_applied_ = -1;  // steps [0, trace_applied_] are in force

  uint64_t next_request_id_ = 1;
  std::map<std::string, link_clock> app_links_;  // app node -> node (emulation)
  std::map<std::string, double> speeds_sent_;  // node -> the last emulated speed sent to it
  // Virtual clock, shaped links: the layers migrations shipped, by node, and when they will have
  // crossed the emulated links. A later version that runs them there serves from then on, also
  // when the version that shipped them never served (a decision that superseded it while they
  // crossed): the node holds them at once, the emulated link does not deliver them sooner.
  std::map<std::string, std::map<int, double>> weights_crossing_;
  std::map<std::string, std::set<int>> standby_pending_, standby_arrived_;  // copies on their way, arrived
  std::set<uint64_t> held_asked_;  // models whose held layers note_held_layers has asked every node for
  // Per node with copies on their way: the nodes sending them (the app's node and those relaying).
  std::map<std::string, std::set<std::string>> standby_sources_;
  // Speed probes of idle nodes (probe_idle_nodes): the answer each node last showed compute in
  // or was probed at; the probe's fragment of graph_ and its layers.
  std::map<std::string, size_t> node_last_seen_;
  std::map<std::string, int> speed_probes_;  // probes since the node last computed, by node
  // Per node, its last speed probe's time: one 1.5x off it is probed twice more at once and
  // starts a burst (probe_idle_nodes).
  std::map<std::string, double> node_probe_ms_;
  static constexpr size_t node_probe_every = 3;  // at least; one idle node per answer
  std::deque<double> recent_latency_;  // of the last answers (virtual or wall, as the clock)
  int probe_burst_ = 0;                // answers still to probe every idle link and node after
  bool burst_now_ = false;             // this answer probes every idle link and node
  const graph* speed_probe_graph_ = nullptr;
  std::vector<int> speed_probe_layers_;
  protocol::bytes speed_probe_;
  standby_policy standby_;
  deploy_report standby_sent_;
  std::vector<std::string> standby_errors_;
  void keep_standby();  // sends what standby_ wants for the running plan
  // After a deploy: the weighted layers of `g` each live node holds beyond those the deployed plan
  // runs there (provisioned with the node's INI `models`, or cached from an earlier deployment)
  // join standby_arrived_, so the adaptation hook tells the planner that moving them there ships
  // nothing. Logs "layers_held". Once per model, each node asked within 2 s.
  void note_held_layers(const graph& g);
  double virtual_now_ = 0;                       // latest answer's virtual arrival
  clock_type_epoch wall_epoch_;
  std::vector<std::string> stray_errors_;
  // Idle-link probing: answers counted, and per unordered role pair the answer that last saw it.
  size_t answers_seen_ = 0;
  std::map<std::pair<std::string, std::string>, size_t> link_last_seen_;
  // Per unordered role pair and probe size, the last probe's time: a probe 25% and 0.5 ms off it
  // starts a burst (probe_idle_links).
  std::map<std::pair<std::pair<std::string, std::string>, size_t>, double> link_probe_ms_;
  // Virtual clock: per unordered role pair, when its last probe arrived (the next leaves after).
  std::map<std::pair<std::string, std::string>, double> probe_done_ms_;
};

}  // namespace d3
