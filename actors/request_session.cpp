#include "actors/request_session.hpp"

#include <algorithm>
#include <set>

#include "actors/ask.hpp"
#include "actors/bundle_sender.hpp"
#include "schema/bundle.hpp"

namespace d3 {

namespace {

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

request_session::request_session(deployment& dep, const std::vector<std::map<std::string, tensor>>& inputs,
                                 int in_flight)
    : dep_(dep),
      inputs_(inputs),
      in_flight_(size_t(std::max(1, in_flight))),
      virtual_clock_(dep.options_.emulation.clock == clock_mode::virtual_time),
      outcomes_(inputs.size()),
      started_(inputs.size()),
      deadline_(inputs.size()),
      sent_versions_(inputs.size()),
      resent_(inputs.size(), false) {}

double request_session::now_ms() const {
  return virtual_clock_ ? dep_.virtual_now_ : ms_since(dep_.wall_epoch_);
}

std::vector<request_outcome> request_session::run() {
  dep_.refresh_health();
  while (done_ < inputs_.size()) {
    migrate_to_pending();
    while (active_.size() < in_flight_ && next_ < inputs_.size()) start(next_++);
    watch_nodes();
    if (active_.empty() || expire_late()) continue;
    // The earliest deadline of a waiting request, or the next heartbeat, sets the wait.
    clock_type::time_point earliest = clock_type::time_point::max();
    for (const auto& [id, i] : active_) earliest = std::min(earliest, deadline_[i]);
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(earliest - clock_type::now());
    wait = std::min(wait, dep_.options_.heartbeat);
    receive(wait + std::chrono::milliseconds(1));
  }
  // Answers already queued (duplicates would be here) are accounted before returning.
  while (receive(std::chrono::milliseconds(0))) {
  }
  // A plan chosen on the last answer is migrated to before returning (its shipments awaited):
  // the next run starts on it. Every shipment part has a timeout, so the shipper's notice comes.
  for (migrate_to_pending(); dep_.shipping(); migrate_to_pending()) receive(dep_.options_.heartbeat);
  return std::move(outcomes_);
}

void request_session::start(size_t i) {
  // Emulation: the app sits on the app node; inputs for stages elsewhere cross its links.
  const double send_ms = now_ms();
  deployment::deployed_version& v = *dep_.serving(send_ms);
  dep_.retire_idle(send_ms);
  const uint64_t id = dep_.next_request_id_++;
  request_outcome& o = outcomes_[i];
  o.id = id;
  o.plan_version = v.version;
  ++v.in_flight;
  active_[id] = i;
  started_[i] = clock_type::now();
  o.wall_start_ms = ms_since(dep_.wall_epoch_);
  deadline_[i] = started_[i] + dep_.options_.timeout;
  sent_versions_[i].insert(v.version);
  if (!dep_.broken_.empty()) return finish(id, dep_.broken_);
  if (!v.broken.empty()) return finish(id, v.broken);
  if (dep_.trace_) {
    status followed = dep_.follow_trace(send_ms);
    if (!followed) return finish(id, followed.message());
    o.trace_step = dep_.trace_applied_;
  }
  o.virtual_start_ms = dep_.virtual_now_;
  if (status sent = send_to(i, v, send_ms); !sent) return finish(id, sent.message());
}

status request_session::send_to(size_t i, deployment::deployed_version& v, double send_ms) {
  auto bundles = encode_bundles(v.inputs, inputs_[i], outcomes_[i].id, uint32_t(v.version));
  if (!bundles) return status::error("request inputs: " + bundles.message());
  auto link = [&](const std::string& node, size_t n) {
    auto clock = dep_.app_links_.find(node);
    return clock == dep_.app_links_.end() ? send_ms : clock->second.send(send_ms, n);
  };
  const clock_mode mode = dep_.options_.emulation.clock;
  D3_RETURN_IF_ERROR(stamp_arrivals(*bundles, mode, link));
  outcomes_[i].app_bytes_sent = 0;
  std::vector<std::pair<std::string, size_t>> handed;  // send_bundles moves the messages out
  for (const outgoing_bundle& b : *bundles)
    if (b.node != dep_.options_.emulation.app_node) {
      handed.emplace_back(b.node, b.message.size());
      outcomes_[i].app_bytes_sent += b.payload_bytes;
    }
  send_bundles((*dep_.self_).ptr(), *bundles, send_ms, mode);
  // Noted once handed over (send_backlog::crossed_before).
  for (const auto& [node, size] : handed) dep_.app_backlog_.sent(node, size);
  std::set<std::string> marked;
  for (const auto& [node, size] : handed)
    if (marked.insert(node).second) dep_.mark_sent(node);
  return status::ok();
}

void request_session::resend(size_t i) {
  request_outcome& o = outcomes_[i];
  auto old = dep_.versions_.find(o.plan_version);
  if (old != dep_.versions_.end() && old->second.in_flight > 0) --old->second.in_flight;
  deployment::deployed_version& v = *dep_.current();
  ++v.in_flight;
  o.plan_version = v.version;
  o.outputs.clear();
  o.stage_reports.clear();
  sent_versions_[i].insert(v.version);
  resent_[i] = true;
  deadline_[i] = clock_type::now() + dep_.options_.timeout;
  // Latency counts from the first send; under the virtual clock the inputs leave once the new
  // version's weights have arrived.
  if (status sent = send_to(i, v, std::max(now_ms(), v.ready_ms)); !sent) finish(o.id, sent.message());
}

std::vector<size_t> request_session::stranded() const {
  std::vector<size_t> out;
  for (const auto& [id, i] : active_) {
    auto v = dep_.versions_.find(outcomes_[i].plan_version);
    if (v == dep_.versions_.end() || !v->second.broken.empty()) out.push_back(i);
  }
  return out;
}

void request_session::after_failover(size_t first_fault, const result<int>& moved, const std::string& why,
                                     const std::vector<size_t>& stranded, clock_type::time_point began) {
  std::vector<size_t> covered;  // indices into faults_
  for (size_t k = first_fault; k < dep_.faults_.size(); ++k) {
    deployment::fault_event& f = dep_.faults_[k];
    if (f.what != "down" || f.new_version != 0 || !f.error.empty()) continue;
    if (covered.empty()) f.requests_resent = moved ? stranded.size() : 0;
    covered.push_back(k);
    if (moved) f.new_version = moved.value();
    else f.error = moved.message();
  }
  if (!moved) {
    const std::string reason = why + "; no failover: " + moved.message();
    for (size_t i : stranded)
      if (active_.count(outcomes_[i].id)) finish(outcomes_[i].id, reason);
    return;
  }
  for (size_t i : stranded)
    if (active_.count(outcomes_[i].id)) resend(i);
  const double recovered_ms = ms_since(began);
  for (size_t k : covered) dep_.faults_[k].recovered_ms = recovered_ms;
  dep_.retire_idle(now_ms());
  dep_.refresh_health();
}

void request_session::handle_loss(const std::string& why) {
  // The requests of versions that broke: re-sent after a failover, else failed.
  const std::vector<size_t> lost = stranded();
  if (!dep_.broken_.empty()) return fail_waiting(dep_.broken_, std::nullopt);
  const auto began = clock_type::now();
  // The loss being handled is the latest fault; nodes lost while the failover installs its version
  // are handled by the same failover (it re-plans without them too) and get its outcome.
  const size_t handled = dep_.faults_.empty() ? 0 : dep_.faults_.size() - 1;
  result<int> moved = dep_.options_.failover ? dep_.fail_over(why) : result<int>(status::error("failover is off"));
  // The failover pings every node first and marks the silent ones down: a node frozen as an
  // unused one was killed breaks the running version only then, and its requests are stranded
  // too (measured, d3-bench chaos: the cloud killed and the edge running the plan frozen at once;
  // its 4 requests in flight were not re-sent and waited out the 30 s timeout).
  std::vector<size_t> affected = lost;
  for (size_t i : stranded())
    if (std::find(affected.begin(), affected.end(), i) == affected.end()) affected.push_back(i);
  after_failover(handled, moved, why, affected, began);
}

void request_session::watch_nodes() {
  std::vector<std::string> silent = dep_.heartbeat();
  // Silence is judged on what has arrived, not on what this loop has read: after a long step of
  // its own (a migration's shipping, the planner's decision) the pongs of that time wait in the
  // mailbox. Read them first (bounded: a flood of answers must not keep this loop here).
  for (int read = 0; !silent.empty() && read < 1024 && receive(std::chrono::milliseconds(0)); ++read) {
  }
  if (!silent.empty()) silent = dep_.heartbeat();
  for (size_t handled = 0; !silent.empty() && handled < dep_.nodes_.size(); ++handled) {
    const std::string node = silent.front();
    const double silent_ms =
        std::chrono::duration<double, std::milli>(clock_type::now() - dep_.health_[node].last_answer).count();
    const std::string cause = "no heartbeat answer for " + std::to_string(int(silent_ms)) + " ms (frozen?)";
    if (node == dep_.options_.emulation.app_node &&
        (dep_.options_.emulation.shaped || dep_.options_.emulation.clock == clock_mode::virtual_time)) {
      dep_.mark_node_down(node, cause);
      dep_.broken_ = "node '" + node + "' at " + dep_.endpoints_.at(node).address() +
                     ", where the emulation places the app, is gone (" + cause + ")";
      fail_waiting(dep_.broken_, std::nullopt);
      return;  // the run ends: nothing is left to fail over to
    }
    if (dep_.mark_node_down(node, cause)) handle_loss("node '" + node + "' lost: " + cause);
    // Handling a loss takes time (a failover migrates) and restarts every node's silence: the
    // others are judged again on what they answered meanwhile, not on the list from before it
    // (which marked two live nodes down "after 0 ms of silence" in a CI run).
    silent = dep_.heartbeat();
  }
  if (dep_.down_nodes_.empty() || !dep_.broken_.empty()) return;
  const std::vector<std::string> back = dep_.try_rejoin();
  if (back.empty() || !dep_.options_.failover) return;
  // The plan is recomputed with the nodes back; requests in flight finish on their version.
  // The failover's pings may find other nodes silent (frozen meanwhile): the versions they ran
  // broke, and their requests are re-sent like after any loss (measured: a node frozen while
  // another rejoined, its 4 requests waited out their 30 s timeouts and were lost).
  const size_t faults_before = dep_.faults_.size();
  const auto began = clock_type::now();
  const std::string why = "node '" + back.front() + "' rejoined";
  auto moved = dep_.fail_over(why);
  if (!moved) dep_.stray_errors_.push_back("after " + why + ": " + moved.message());
  const std::vector<size_t> lost = stranded();
  if (dep_.faults_.size() > faults_before || !lost.empty()) after_failover(faults_before, moved, why, lost, began);
  else dep_.refresh_health();
}

void request_session::finish(uint64_t id, const std::string& error) {
  auto it = active_.find(id);
  const size_t i = it->second;
  request_outcome& o = outcomes_[i];
  o.ok = error.empty();
  o.error = error;
  o.latency_ms = ms_since(started_[i]);
  if (!error.empty()) o.outputs.clear();
  finished_[id] = i;
  active_.erase(it);
  ++done_;
  settle_version(o, resent_[i]);
  if (o.ok && dep_.options_.idle_probe_every > 0) {
    dep_.watch_latency(o);
    dep_.probe_idle_links(o);
    dep_.probe_idle_nodes(o);
  }
  if (dep_.adaptation_ && o.ok && !pending_plan_) {
    o.standby_arrived = dep_.take_arrived_standby();
    o.migrating = dep_.shipping();
    pending_plan_ = dep_.adaptation_(o);
  }
}

void request_session::settle_version(request_outcome& o, bool resent) {
  auto found = dep_.versions_.find(o.plan_version);
  if (found == dep_.versions_.end()) return;
  deployment::deployed_version& v = found->second;
  // A re-sent request's times mix two sends: no observations from it. Wall clock: the reports
  // are on the app's clock (on_report), the request ran from its send to now.
  if (o.ok && !resent) {
    o.transfers = virtual_clock_ ? v.accounting.transfers(o.stage_reports, o.virtual_start_ms, o.virtual_end_ms,
                                                          o.app_bytes_sent)
                                 : v.accounting.transfers(o.stage_reports, o.wall_start_ms, o.wall_start_ms + o.latency_ms,
                                                          o.app_bytes_sent,
                                                          [this](const std::string& node) { return dep_.clock_error_ms(node); });
    o.computes = v.accounting.computes(o.stage_reports);
  }
  if (v.in_flight > 0) --v.in_flight;
  dep_.retire_idle(virtual_clock_ ? dep_.virtual_now_ : ms_since(dep_.wall_epoch_));
}

void request_session::fail_waiting(const std::string& why, std::optional<int> version) {
  std::vector<uint64_t> waiting;
  for (const auto& [id, i] : active_)
    if (!version || outcomes_[i].plan_version == *version) waiting.push_back(id);
  for (uint64_t id : waiting) finish(id, why);
}

bool request_session::expire_late() {
  const std::chrono::milliseconds timeout = dep_.options_.timeout;
  const auto now = clock_type::now();
  std::vector<uint64_t> late;
  for (const auto& [id, i] : active_)
    if (deadline_[i] <= now) late.push_back(id);
  for (uint64_t id : late) finish(id, "no answer within " + std::to_string(timeout.count()) + " ms");
  return !late.empty();
}

bool request_session::receive(std::chrono::milliseconds wait) {
  bool got = true;
  (*dep_.self_)->receive(
      [&](protocol::data_atom, const protocol::bytes& payload) { on_data(payload); },
      [&](protocol::fail_atom, uint64_t id, bool known, int32_t, const std::string& what) { on_fail(id, known, what); },
      [&](protocol::report_atom, uint64_t id, int32_t stage, double ready, double fin, double cpu, uint64_t sent,
          double messages) { on_report(id, {int(stage), ready, fin, cpu, sent, messages}); },
      [&](protocol::peer_down_atom, const std::string& reporter, const std::string& peer, const std::string& cause) {
        on_peer_down(reporter, peer, cause);
      },
      [&](protocol::pong_atom, uint64_t seq, double node_ms) {
        dep_.on_pong(caf::actor_cast<caf::actor_addr>((*dep_.self_)->current_sender()), seq, node_ms);
      },
      [&](protocol::shipped_atom, int32_t version, const std::string& error) { on_shipped(int(version), error); },
      [&](caf::down_msg& down) { on_down(down); }, caf::after(std::max(wait, std::chrono::milliseconds(0))) >> [&] {
        got = false;
      });
  return got;
}

request_outcome* request_session::outcome_of(uint64_t id) {
  auto it = active_.find(id);
  if (it != active_.end()) return &outcomes_[it->second];
  auto done = finished_.find(id);
  return done == finished_.end() ? nullptr : &outcomes_[done->second];
}

void request_session::on_data(const protocol::bytes& payload) {
  auto bundle = decode_bundle(payload.data(), payload.size());
  if (!bundle) {
    dep_.stray_errors_.push_back("undecodable answer: " + bundle.message());
    return;
  }
  const uint64_t id = bundle->request_id;
  if (finished_.count(id)) {
    ++dep_.duplicates_dropped_;  // the first answer per id counts (e.g. a re-sent request's)
    return;
  }
  auto it = active_.find(id);
  if (it == active_.end()) {
    dep_.stray_errors_.push_back("answer for unknown request " + std::to_string(id));
    return;
  }
  const size_t i = it->second;
  request_outcome& o = outcomes_[i];
  o.virtual_end_ms = std::max(o.virtual_end_ms, bundle->virtual_ms);
  o.virtual_latency_ms = o.virtual_end_ms - o.virtual_start_ms;
  dep_.virtual_now_ = std::max(dep_.virtual_now_, bundle->virtual_ms);
  if (!sent_versions_[i].count(int(bundle->plan_version)))
    return finish(id, "answer under plan version " + std::to_string(bundle->plan_version) + ", sent under " +
                          std::to_string(o.plan_version));
  auto version = dep_.versions_.find(o.plan_version);
  if (version == dep_.versions_.end()) return finish(id, "answer under a retired plan version");
  const std::vector<std::string>& outputs = version->second.stages.graph_outputs;
  for (named_tensor& t : bundle->tensors) {
    if (std::find(outputs.begin(), outputs.end(), t.name) == outputs.end())
      return finish(id, "answer holds '" + t.name + "', which is no graph output");
    // After a re-send, two versions may both answer: the outputs are bit-identical, the first counts.
    if (!o.outputs.emplace(t.name, std::move(t.value)).second && !resent_[i])
      return finish(id, "output '" + t.name + "' received twice");
  }
  if (o.outputs.size() == outputs.size()) finish(id, "");
}

void request_session::on_fail(uint64_t id, bool known, const std::string& what) {
  auto active = active_.find(id);
  // A re-sent request's old version may still report (e.g. a stage of it exiting): its answer
  // is expected from the new one.
  if (known && active != active_.end() && resent_[active->second]) return dep_.stray_errors_.push_back(what);
  if (known && active != active_.end()) return finish(id, what);
  if (known && finished_.count(id)) {
    request_outcome& o = outcomes_[finished_[id]];
    o.ok = false;
    if (o.error.empty()) o.error = what;
    return;
  }
  dep_.stray_errors_.push_back(what);
}

void request_session::on_report(uint64_t id, const stage_report& report) {
  request_outcome* o = outcome_of(id);
  if (!o) return;
  o->stage_reports.push_back(report);
  if (virtual_clock_) return;
  // Wall clock: the node's monotonic times onto the app's wall ms since the deploy.
  auto version = dep_.versions_.find(o->plan_version);
  const std::vector<stage>* stages = version == dep_.versions_.end() ? nullptr : &version->second.stages.stages;
  stage_report& r = o->stage_reports.back();
  if (!stages || r.stage_id < 0 || size_t(r.stage_id) >= stages->size()) return;
  const std::string& node = (*stages)[size_t(r.stage_id)].node;
  r.ready_ms = dep_.node_to_wall_ms(node, r.ready_ms);
  r.finish_ms = dep_.node_to_wall_ms(node, r.finish_ms);
}

void request_session::on_down(const caf::down_msg& down) {
  const bool was_down = [&] {
    for (const auto& [name, node] : dep_.nodes_)
      if (node.address() == down.source) return dep_.down_nodes_.count(name) > 0;
    return false;
  }();
  const std::string node = dep_.note_node_down(down);
  if (!node.empty()) {
    // The emulation puts the app on its node: requests start there and answers end there.
    // Without it, latencies would leave out the app's links: every request fails instead.
    const emulation_settings& em = dep_.options_.emulation;
    const bool emulated = em.shaped || em.clock == clock_mode::virtual_time;
    if (emulated && node == em.app_node) {
      if (dep_.broken_.empty())
        dep_.broken_ = "node '" + node + "' at " + dep_.endpoints_.at(node).address() +
                       ", where the emulation places the app, is gone (" + dep_.system_.render(down.reason) + ")";
      fail_waiting(dep_.broken_, std::nullopt);
      return;
    }
    if (!was_down) handle_loss("node '" + node + "' lost: " + dep_.system_.render(down.reason));
    return;
  }
  for (auto& [version, v] : dep_.versions_)
    for (size_t s = 0; s < v.actors.size(); ++s) {
      if (v.actors[s].address() != down.source) continue;
      const stage& st = v.stages.stages[s];
      const std::string reason = dep_.system_.render(down.reason);
      v.gone.insert(s);
      dep_.log({{"event", "actor_exited"}, {"actor", int(s)}, {"node", st.node}, {"plan_version", v.version}, {"reason", reason}});
      if (!v.broken.empty()) return;  // its node is down: handled there
      v.broken = std::string(to_string(st.kind)) + " stage " + std::to_string(s) + " on node '" + st.node +
                 "' is gone (" + reason + ")";
      // Copy: failing over may retire and erase v (the loop ends here).
      const std::string why = v.broken;
      return handle_loss(why);
    }
}

void request_session::on_peer_down(const std::string& reporter, const std::string& peer, const std::string& cause) {
  if (dep_.down_nodes_.count(reporter) || dep_.down_nodes_.count(peer) || !dep_.nodes_.count(peer)) return;
  // Which side of the link failed cannot be told from here: the peer is taken out, unless it is
  // the node the app sits on (then the reporter is). If the app still hears it, it is not taken
  // back for a while, or it would be re-planned onto the same broken link at once (measured: a cut
  // between edge2 and the cloud failed edge2 over, back and over again every 3 s).
  const std::string& app_node = dep_.options_.emulation.app_node;
  const std::string out = peer == app_node && dep_.nodes_.count(reporter) ? reporter : peer;
  std::string why = "node '" + peer + "' unreachable from node '" + reporter + "' (" + cause + ")";
  // The app still hears both nodes (neither is down here), and the reporter's pings may have
  // waited behind traffic it cannot see (the app's own shipment from the reporter's machine, which
  // under the wall clock may still be under way: migrations ship in the background): the reporter
  // pings the peer again, and the link is failed only if that ping goes unanswered too.
  // The session waits for the verdict, bounded: never past the moment the app's own watch would
  // find the peer silent (a frozen peer is then failed over on time), and not at all once it has.
  auto max_wait = 2 * dep_.options_.peer_silence;
  if (const auto& since = dep_.health_[peer].unanswered_since)
    max_wait = std::min(max_wait, dep_.options_.silence - std::chrono::duration_cast<std::chrono::milliseconds>(
                                                               clock_type::now() - *since));
  auto reporter_handle = dep_.nodes_.find(reporter);
  if (reporter_handle != dep_.nodes_.end() && max_wait > std::chrono::milliseconds(0)) {
    const auto asked = clock_type::now();
    const result<bool> answered = ask<bool>(*dep_.self_, reporter_handle->second, max_wait + dep_.options_.silence,
                                            "node '" + reporter + "': recheck of '" + peer + "'",
                                            protocol::recheck_atom::value, peer, uint32_t(max_wait.count()));
    const double recheck_ms = ms_since(asked);
    // No verdict within the app's own silence after the bound: the reporter itself is in trouble,
    // which the app's watch judges (blaming the peer for it would fail over a node that answers).
    if (!answered) {
      dep_.log({{"event", "peer_report_unconfirmed"}, {"reporter", reporter}, {"peer", peer}, {"error", answered.message()}});
      return;
    }
    if (answered.value()) {
      dep_.log({{"event", "peer_report_withdrawn"}, {"reporter", reporter}, {"peer", peer}, {"cause", cause},
                {"recheck_ms", recheck_ms}});
      return;
    }
    why += "; no answer to a recheck either (" + std::to_string(int(recheck_ms)) + " ms)";
  }
  // Held out only if it still answers the app (a link failed, not the node): asked now, as the
  // recheck kept the session from reading its pongs (a frozen node that resumes is taken back as
  // soon as it answers, as when the app finds it silent itself).
  auto out_handle = dep_.nodes_.find(out);
  if (out_handle != dep_.nodes_.end() &&
      ask<protocol::node_info>(*dep_.self_, out_handle->second, 2 * dep_.options_.heartbeat, "node '" + out + "'",
                               protocol::info_atom::value)) {
    dep_.health_[out].hold_until = clock_type::now() + 10 * dep_.options_.silence;
    dep_.health_[out].held_for = out == peer ? reporter : peer;
  }
  if (dep_.mark_node_down(out, why)) handle_loss(why);
}

std::optional<deployment_plan> request_session::admissible(deployment_plan plan) {
  // The planner decides on what it observed; a failover may have moved the deployment on since
  // (a newer version, a node down). A plan on a node that is down is skipped, not an error; the
  // deployment numbers versions, so a plan proposed under an older one gets the next number.
  const std::map<std::string, std::string> available = dep_.available_nodes();
  auto sg = dep_.adaptation_graph_ ? build_stage_graph(*dep_.adaptation_graph_, plan)
                                   : result<stage_graph>(status::error("no graph"));
  if (sg)
    for (const stage& st : sg->stages)
      if (!available.count(st.node)) {
        dep_.log({{"event", "migration_skipped"}, {"version", plan.version},
                  {"reason", "the plan places a stage on node '" + st.node + "', which is down"}});
        return std::nullopt;
      }
  if (dep_.current_ && plan.version <= *dep_.current_) plan.version = *dep_.current_ + 1;  // versions_ holds none newer
  return plan;
}

void request_session::migration_failed(int version, const std::string& error) {
  dep_.stray_errors_.push_back("adaptation: " + error);
  dep_.log({{"event", "migration_failed"}, {"version", version}, {"error", error}});
}

void request_session::migrate_to_pending() {
  // One migration at a time: a plan chosen while another one's weights are on their way waits.
  if (!pending_plan_ || dep_.shipping()) return;
  std::optional<deployment_plan> plan = admissible(std::move(*pending_plan_));
  pending_plan_.reset();
  if (!plan) return;
  if (!dep_.adaptation_graph_) return migration_failed(plan->version, "no graph");
  // Wall clock: the weights cross the real links for as long as they take; the running version
  // serves meanwhile, and the plan is installed when they have arrived (on_shipped).
  if (!virtual_clock_) {
    auto started = dep_.ship_in_background(*dep_.adaptation_graph_, *plan, dep_.adaptation_redeploys_everything_);
    if (!started) return migration_failed(plan->version, "migrate to plan version " + std::to_string(plan->version) +
                                                             ": " + started.message());
    if (*started) return;
  }
  auto migrated = dep_.migrate(*dep_.adaptation_graph_, *plan, dep_.adaptation_redeploys_everything_);
  dep_.refresh_health();
  if (!migrated) migration_failed(plan->version, migrated.message());
}

void request_session::on_shipped(int version, const std::string& error) {
  auto shipped = dep_.end_background_shipment(version);
  if (!shipped) return;  // a notice from a shipment torn down
  if (!error.empty())
    return migration_failed(version, "migrate to plan version " + std::to_string(version) + ": " + error);
  std::optional<deployment_plan> plan = admissible(shipped->plan);
  if (!plan || !dep_.adaptation_graph_) return;
  // Its weights are on the nodes: the install ships nothing more (a node that evicted some
  // meanwhile gets them again), and it takes the requests that start from now on.
  auto migrated = dep_.migrate(*dep_.adaptation_graph_, *plan, false, shipped.get());
  dep_.refresh_health();
  if (!migrated) migration_failed(plan->version, migrated.message());
}

}  // namespace d3
