// One deployment::run: requests with ids sent to the running plan version, at most K in flight,
// their answers, failures and virtual-clock reports collected, each request finished exactly
// once (answered, refused by a stage, timed out, or failed because its version broke and no
// failover was possible). Between requests it follows the emulation trace and migrates to the
// plans the adaptation hook picks; requests in flight finish on their version. It watches the
// nodes (heartbeats, lost connections): on a loss the deployment fails over to a plan on the
// nodes left and the session re-sends every request not yet answered, from its own copy of the
// inputs, under the same id; the first answer per id counts, later ones are dropped. The app side
// of a request's path: app -> request_session -> stage actors -> request_session -> app.
#pragma once

#include <caf/all.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "actors/deployment.hpp"

namespace d3 {

class request_session {
 public:
  // Precondition: `dep` has a version deployed; `inputs` outlives the session.
  request_session(deployment& dep, const std::vector<std::map<std::string, tensor>>& inputs, int in_flight);
  // Runs every request; returns one outcome per input, in input order.
  std::vector<request_outcome> run();

 private:
  using clock_type = std::chrono::steady_clock;

  void start(size_t i);
  // Encodes request i's inputs for version v and sends them (over the app node's emulated links,
  // leaving at send_ms).
  status send_to(size_t i, deployment::deployed_version& v, double send_ms);
  // Sends an unanswered request again, to the current version (after a failover).
  void resend(size_t i);
  // A node or stage was lost (`why`): fail over and re-send, or fail the requests it broke.
  void handle_loss(const std::string& why);
  // The requests under way on versions that broke (a node of theirs is down) or are gone.
  std::vector<size_t> stranded() const;
  // After a failover (`moved`: its new version, or why there is none): the down events from
  // faults_[first_fault] on get its outcome, and the `stranded` requests are re-sent on the new
  // version (or fail with `why`).
  void after_failover(size_t first_fault, const result<int>& moved, const std::string& why,
                      const std::vector<size_t>& stranded, clock_type::time_point began);
  // Heartbeats and rejoins, between messages.
  void watch_nodes();
  double now_ms() const;
  void finish(uint64_t id, const std::string& error);
  // Adds the answered request's observations (none when it was re-sent) and releases its
  // version (retiring an old one whose last request this was).
  void settle_version(request_outcome& o, bool resent);
  void fail_waiting(const std::string& why, std::optional<int> version);
  // Fails the requests older than the timeout; true when some were.
  bool expire_late();
  // Handles one message (or none within `wait`); false when nothing came.
  bool receive(std::chrono::milliseconds wait);
  void on_data(const protocol::bytes& payload);
  void on_fail(uint64_t id, bool known, const std::string& what);
  void on_report(uint64_t id, const stage_report& report);
  void on_down(const caf::down_msg& down);
  // A node reports that a peer it sends to is gone for it (the node, or the link between them).
  void on_peer_down(const std::string& reporter, const std::string& peer, const std::string& cause);
  // Migrates to the plan the adaptation hook chose, if any and if no other one is shipping; under
  // the wall clock a plan that needs weights shipped is installed once they have arrived.
  void migrate_to_pending();
  // A background shipment's notice (deployment::ship_in_background): installs its plan.
  void on_shipped(int version, const std::string& error);
  // `plan` as it can be migrated to now (renumbered after a failover), or nothing if it places a
  // stage on a node that is down (logged).
  std::optional<deployment_plan> admissible(deployment_plan plan);
  void migration_failed(int version, const std::string& error);
  // The outcome of a request active or finished in this session (nullptr: unknown id).
  request_outcome* outcome_of(uint64_t id);

  deployment& dep_;
  const std::vector<std::map<std::string, tensor>>& inputs_;
  const size_t in_flight_;
  const bool virtual_clock_;
  std::vector<request_outcome> outcomes_;
  std::vector<clock_type::time_point> started_, deadline_;
  std::vector<std::set<int>> sent_versions_;  // per request: the versions it was sent to
  std::vector<bool> resent_;
  std::map<uint64_t, size_t> active_, finished_;  // request id -> input index
  size_t next_ = 0, done_ = 0;
  std::optional<deployment_plan> pending_plan_;  // chosen by the adaptation hook
};

}  // namespace d3
