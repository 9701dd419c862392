// How d3 processes reach each other: CAF's middleman over TCP, through CAF's OpenSSL module when
// TLS is on (mutual certificate authentication against the cluster CA, security/). Every
// connect and publish of the runtime goes through here, so no path opens a plaintext connection
// while TLS is on.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "actors/protocol.hpp"
#include "base/tls_settings.hpp"

namespace d3::transport {

// Before the actor system exists: with TLS on, loads CAF's OpenSSL module and gives it this
// process's identity (check it first with check_tls_identity: CAF's module throws on its I/O
// thread when it cannot load a file), and starts the handshake audit (security/tls_audit.hpp).
void configure_tls(caf::actor_system_config& cfg, const tls_settings& tls);

// Whether this actor system speaks TLS (configure_tls with TLS on).
bool uses_tls(caf::actor_system& system);

// The middleman actor that opens connections: CAF's TLS one when TLS is on.
caf::io::middleman_actor connector(caf::actor_system& system);

// Publishes a node on host:port (0: any free port), over TLS when it is on.
caf::expected<uint16_t> publish(const protocol::node_handle& node, uint16_t port, const std::string& host);

// Why a connect to host:port failed: CAF's error, and the TLS audit's reason when a handshake
// with that address was refused (CAF only sees the connection close).
std::string connect_failure(caf::actor_system& system, const caf::error& e, const std::string& host, uint16_t port,
                            std::chrono::milliseconds timeout);

}  // namespace d3::transport
