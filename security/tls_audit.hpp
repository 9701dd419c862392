// Every TLS handshake of this process, as events: a peer refused (its certificate is not signed by
// the cluster CA, expired, missing; it speaks plaintext; it refused ours), or a peer admitted.
// CAF's TLS module creates one OpenSSL session per connection and offers no hook of its own, so
// the audit attaches to OpenSSL: a per-session callback installed when each session is created
// (an ex_data "new" callback of the SSL structure, which runs after the session took its settings
// from CAF's context, so CAF's verification stays as it is and the audit only observes it).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace d3 {

struct tls_event {
  bool admitted = false;  // false: the handshake failed and the connection was refused
  bool we_accepted = false;  // true: the peer connected to us; false: we connected to it
  std::string peer;       // "host:port" of the other end ("?" when the socket is gone)
  std::string subject;    // the peer certificate's subject, when it sent one
  std::string reason;     // why it was refused (OpenSSL's words), "" when admitted

  std::string describe() const;
};

// Starts the audit (once per process; later calls do nothing). Refusals are then kept for
// last_tls_refusal.
void start_tls_audit();

// Starts the audit and sends every event to `sink` (replacing an earlier one). `sink` runs on
// CAF's I/O thread: keep it short.
void watch_tls_handshakes(std::function<void(const tls_event&)> sink);

// The last refusal involving the peer at host:port (a node we could not connect to), "" if none
// since the audit started.
std::string last_tls_refusal(const std::string& host, uint16_t port);

}  // namespace d3
