// Request and wait, the app side's one way to ask a node or a stage something: a finite timeout,
// and every failure (a refusal, no answer, a lost connection) as an error naming what was asked.
#pragma once

#include <caf/all.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <utility>

#include "actors/protocol.hpp"
#include "base/status.hpp"

namespace d3 {

// A request to a remote node that is under way when the node's process dies, or its connection
// closes, gets no answer from CAF: its asker would wait out the whole timeout (measured: a failover
// stalled 10 s on a request to an edge killed 20 ms after the cloud). While a waiting_for_answer
// lives, the loss of `node` (seen by a loss watcher that monitors the node's actor) answers the
// request at once with request_receiver_down; so does registering a request to a node already
// lost (a worker thread may ask one the app's loop has seen go; watch_for_loss, on a reconnect,
// clears the mark).
class waiting_for_answer {
 public:
  waiting_for_answer(const caf::node_id& node, caf::strong_actor_ptr asker, caf::message_id response_id);
  ~waiting_for_answer();
  waiting_for_answer(const waiting_for_answer&) = delete;
  waiting_for_answer& operator=(const waiting_for_answer&) = delete;

 private:
  uint64_t token_ = 0;
};

// The loss watcher: an actor that monitors the node actors it is given (watch_for_loss) and, when
// one goes down, answers the requests waiting on its node. One per deployment; exit it with it.
// Precondition: the actors watched are d3-node actors of other processes (one per process); a
// local actor watched stands for this process, whose waiting requests its exit would all end
// (the unit test relies on that).
caf::actor spawn_loss_watcher(caf::actor_system& system);
void watch_for_loss(const caf::actor& watcher, const caf::actor& node_actor);

// Sends `xs...` to `dest` and waits up to `timeout` for its one-value reply. Errors read
// "<what>: <the refusal's text | no answer within T ms | CAF's error>"; a lost node's requests
// end at once (waiting_for_answer).
template <class Reply, class Handle, class... Ts>
result<Reply> ask(caf::scoped_actor& self, const Handle& dest, std::chrono::milliseconds timeout,
                  const std::string& what, Ts&&... xs) {
  std::optional<Reply> reply;
  std::string failure;
  auto handle = self->request(dest, timeout, std::forward<Ts>(xs)...);
  waiting_for_answer waiting(dest.node(), caf::actor_cast<caf::strong_actor_ptr>(self), handle.id());
  handle.receive([&](Reply& r) { reply = std::move(r); },
                 [&](caf::error& e) { failure = protocol::describe(self->home_system(), e, timeout); });
  if (!reply) return status::error(what + ": " + failure);
  return std::move(*reply);
}

// A command whose reply is ok_atom.
template <class Handle, class... Ts>
status command(caf::scoped_actor& self, const Handle& dest, std::chrono::milliseconds timeout, const std::string& what,
               Ts&&... xs) {
  auto done = ask<protocol::ok_atom>(self, dest, timeout, what, std::forward<Ts>(xs)...);
  return done ? status::ok() : status::error(done.message());
}

}  // namespace d3
