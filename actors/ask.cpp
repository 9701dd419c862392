#include "actors/ask.hpp"

#include <map>
#include <mutex>
#include <set>
#include <vector>

namespace d3 {

namespace {

using watch_atom = caf::atom_constant<caf::atom("d3watch")>;

struct waiting_request {
  caf::node_id node;
  caf::strong_actor_ptr asker;
  caf::message_id response_id;
};

std::mutex waiting_mutex;
std::map<uint64_t, waiting_request> waiting;  // by registration token
uint64_t next_token = 1;
// Nodes seen lost: a request registered after the loss (sent to a node that is gone already, e.g.
// by a thread that did not see the down message) is answered at once too. A node that comes back
// is a new process with a new node id, so an id stays lost.
std::set<caf::node_id> lost_nodes;

void answer_lost(caf::strong_actor_ptr& asker, caf::message_id response_id) {
  asker->enqueue(nullptr, response_id, caf::make_message(caf::make_error(caf::sec::request_receiver_down)), nullptr);
}

// Answers every request waiting on `node` with request_receiver_down.
void answer_requests_to_lost_node(const caf::node_id& node) {
  std::vector<waiting_request> lost;
  {
    std::lock_guard<std::mutex> lock(waiting_mutex);
    lost_nodes.insert(node);
    for (auto it = waiting.begin(); it != waiting.end();)
      if (it->second.node == node) {
        lost.push_back(std::move(it->second));
        it = waiting.erase(it);
      } else {
        ++it;
      }
  }
  for (waiting_request& r : lost) answer_lost(r.asker, r.response_id);
}

struct loss_watcher_state {
  static inline const char* name = "d3_loss_watcher";
};

caf::behavior loss_watcher(caf::stateful_actor<loss_watcher_state>* self) {
  self->set_down_handler([](caf::down_msg& down) { answer_requests_to_lost_node(down.source.node()); });
  return {[=](watch_atom, const caf::actor& node_actor) { self->monitor(node_actor); }};
}

}  // namespace

waiting_for_answer::waiting_for_answer(const caf::node_id& node, caf::strong_actor_ptr asker,
                                       caf::message_id response_id) {
  {
    std::lock_guard<std::mutex> lock(waiting_mutex);
    if (!lost_nodes.count(node)) {
      token_ = next_token++;
      waiting[token_] = {node, std::move(asker), response_id};
      return;
    }
  }
  answer_lost(asker, response_id);
}

waiting_for_answer::~waiting_for_answer() {
  std::lock_guard<std::mutex> lock(waiting_mutex);
  waiting.erase(token_);
}

caf::actor spawn_loss_watcher(caf::actor_system& system) { return system.spawn(loss_watcher); }

void watch_for_loss(const caf::actor& watcher, const caf::actor& node_actor) {
  {
    // Connected again (a lost connection to a process that lived on): no longer lost.
    std::lock_guard<std::mutex> lock(waiting_mutex);
    lost_nodes.erase(node_actor.node());
  }
  caf::anon_send(watcher, watch_atom::value, node_actor);
}

}  // namespace d3
