#include "actors/request_session.hpp"

#include <algorithm>

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
      started_(inputs.size()) {}

std::vector<request_outcome> request_session::run() {
  const std::chrono::milliseconds timeout = dep_.options_.timeout;
  while (done_ < inputs_.size()) {
    migrate_to_pending();
    while (active_.size() < in_flight_ && next_ < inputs_.size()) start(next_++);
    if (active_.empty() || expire_late()) continue;
    // The oldest waiting request sets the deadline.
    clock_type::time_point oldest = clock_type::time_point::max();
    for (const auto& [id, i] : active_) oldest = std::min(oldest, started_[i]);
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(oldest + timeout - clock_type::now());
    receive(wait + std::chrono::milliseconds(1));
  }
  // Answers already queued (duplicates would be here) are accounted before returning.
  while (receive(std::chrono::milliseconds(0))) {
  }
  // A plan chosen on the last answer is migrated to before returning: the next run starts on it.
  migrate_to_pending();
  return std::move(outcomes_);
}

void request_session::start(size_t i) {
  // Emulation: the app sits on the app node; inputs for stages elsewhere cross its links.
  const double send_ms = virtual_clock_ ? dep_.virtual_now_ : ms_since(dep_.wall_epoch_);
  deployment::deployed_version& v = *dep_.serving(send_ms);
  dep_.retire_idle(send_ms);
  const uint64_t id = dep_.next_request_id_++;
  request_outcome& o = outcomes_[i];
  o.id = id;
  o.plan_version = v.version;
  ++v.in_flight;
  active_[id] = i;
  started_[i] = clock_type::now();
  if (!dep_.broken_.empty()) return finish(id, dep_.broken_);
  if (!v.broken.empty()) return finish(id, v.broken);
  if (dep_.trace_) {
    status followed = dep_.follow_trace(send_ms);
    if (!followed) return finish(id, followed.message());
    o.trace_step = dep_.trace_applied_;
  }
  o.virtual_start_ms = dep_.virtual_now_;
  auto bundles = encode_bundles(v.inputs, inputs_[i], id, uint32_t(v.version));
  if (!bundles) return finish(id, "request inputs: " + bundles.message());
  auto link = [&](const std::string& node, size_t n) {
    auto clock = dep_.app_links_.find(node);
    return clock == dep_.app_links_.end() ? send_ms : clock->second.send(send_ms, n);
  };
  const clock_mode mode = dep_.options_.emulation.clock;
  if (status stamped = stamp_arrivals(*bundles, mode, link); !stamped) return finish(id, stamped.message());
  send_bundles((*dep_.self_).ptr(), *bundles, send_ms, mode);
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
  settle_version(o);
  if (o.ok && dep_.options_.idle_probe_every > 0) dep_.probe_idle_links(o);
  if (dep_.adaptation_ && o.ok && !pending_plan_) pending_plan_ = dep_.adaptation_(o);
}

void request_session::settle_version(request_outcome& o) {
  auto found = dep_.versions_.find(o.plan_version);
  if (found == dep_.versions_.end()) return;
  deployment::deployed_version& v = found->second;
  if (virtual_clock_ && o.ok) {
    o.transfers = v.accounting.transfers(o.stage_reports, o.virtual_start_ms, o.virtual_end_ms);
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
    if (started_[i] + timeout <= now) late.push_back(id);
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
  if (auto dup = finished_.find(id); dup != finished_.end()) {
    request_outcome& o = outcomes_[dup->second];
    if (o.ok) o.error = "duplicated answer";
    o.ok = false;
    return;
  }
  auto it = active_.find(id);
  if (it == active_.end()) {
    dep_.stray_errors_.push_back("answer for unknown request " + std::to_string(id));
    return;
  }
  request_outcome& o = outcomes_[it->second];
  o.virtual_end_ms = std::max(o.virtual_end_ms, bundle->virtual_ms);
  o.virtual_latency_ms = o.virtual_end_ms - o.virtual_start_ms;
  dep_.virtual_now_ = std::max(dep_.virtual_now_, bundle->virtual_ms);
  if (bundle->plan_version != uint32_t(o.plan_version))
    return finish(id, "answer under plan version " + std::to_string(bundle->plan_version) + ", sent under " +
                          std::to_string(o.plan_version));
  auto version = dep_.versions_.find(o.plan_version);
  if (version == dep_.versions_.end()) return finish(id, "answer under a retired plan version");
  const std::vector<std::string>& outputs = version->second.stages.graph_outputs;
  for (named_tensor& t : bundle->tensors) {
    if (std::find(outputs.begin(), outputs.end(), t.name) == outputs.end())
      return finish(id, "answer holds '" + t.name + "', which is no graph output");
    if (!o.outputs.emplace(t.name, std::move(t.value)).second)
      return finish(id, "output '" + t.name + "' received twice");
  }
  if (o.outputs.size() == outputs.size()) finish(id, "");
}

void request_session::on_fail(uint64_t id, bool known, const std::string& what) {
  if (known && active_.count(id)) return finish(id, what);
  if (known && finished_.count(id)) {
    request_outcome& o = outcomes_[finished_[id]];
    o.ok = false;
    if (o.error.empty()) o.error = what;
    return;
  }
  dep_.stray_errors_.push_back(what);
}

void request_session::on_report(uint64_t id, const stage_report& report) {
  if (request_outcome* o = outcome_of(id)) o->stage_reports.push_back(report);
}

void request_session::on_down(const caf::down_msg& down) {
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
    }
    return;
  }
  for (auto& [version, v] : dep_.versions_)
    for (size_t s = 0; s < v.actors.size(); ++s) {
      if (v.actors[s].address() != down.source) continue;
      const stage& st = v.stages.stages[s];
      const std::string reason = dep_.system_.render(down.reason);
      v.gone.insert(s);
      dep_.log({{"event", "actor_exited"}, {"actor", int(s)}, {"node", st.node}, {"reason", reason}});
      if (v.broken.empty())
        v.broken = std::string(to_string(st.kind)) + " stage " + std::to_string(s) + " on node '" + st.node +
                   "' is gone (" + reason + ")";
      // Copies: finishing the requests may retire and erase v (the loop ends here).
      const std::string why = v.broken;
      const int broken_version = version;
      return fail_waiting(why, broken_version);
    }
}

void request_session::migrate_to_pending() {
  if (!pending_plan_) return;
  deployment_plan plan = std::move(*pending_plan_);
  pending_plan_.reset();
  auto migrated = dep_.adaptation_graph_
                      ? dep_.migrate(*dep_.adaptation_graph_, plan, dep_.adaptation_redeploys_everything_)
                      : result<migration_report>(status::error("no graph"));
  if (!migrated) {
    dep_.stray_errors_.push_back("adaptation: " + migrated.message());
    dep_.log({{"event", "migration_failed"}, {"version", plan.version}, {"error", migrated.message()}});
  }
}

}  // namespace d3
