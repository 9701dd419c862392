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

// Sends `xs...` to `dest` and waits up to `timeout` for its one-value reply. Errors read
// "<what>: <the refusal's text | no answer within T ms | CAF's error>".
template <class Reply, class Handle, class... Ts>
result<Reply> ask(caf::scoped_actor& self, const Handle& dest, std::chrono::milliseconds timeout,
                  const std::string& what, Ts&&... xs) {
  std::optional<Reply> reply;
  std::string failure;
  self->request(dest, timeout, std::forward<Ts>(xs)...)
      .receive([&](Reply& r) { reply = std::move(r); },
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
