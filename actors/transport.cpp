#include "actors/transport.hpp"

#include <caf/openssl/all.hpp>

#include <stdexcept>

#include "security/openssl_error_queue.hpp"
#include "security/tls_audit.hpp"

namespace d3::transport {

void configure_tls(caf::actor_system_config& cfg, const tls_settings& tls) {
  if (!tls.enabled) return;
  if (!openssl_error_queues_cleared_before_io())
    throw std::logic_error("d3 transport: cannot wrap OpenSSL's I/O functions (security/openssl_error_queue.hpp)");
  cfg.openssl_cafile = tls.ca_file;
  cfg.openssl_certificate = tls.certificate_file;
  cfg.openssl_key = tls.key_file;
  cfg.openssl_passphrase = tls.passphrase;
  cfg.load<caf::openssl::manager>();
  start_tls_audit();  // keeps the refusals for connect_failure; programs may add a sink
}

bool uses_tls(caf::actor_system& system) {
  return system.has_openssl_manager() && system.openssl_manager().authentication_enabled();
}

caf::io::middleman_actor connector(caf::actor_system& system) {
  return uses_tls(system) ? system.openssl_manager().actor_handle() : system.middleman().actor_handle();
}

caf::expected<uint16_t> publish(const protocol::node_handle& node, uint16_t port, const std::string& host) {
  caf::actor_system& system = node->home_system();
  if (uses_tls(system)) return caf::openssl::publish(node, port, host.c_str(), true);
  return system.middleman().publish(node, port, host.c_str(), true);
}

std::string connect_failure(caf::actor_system& system, const caf::error& e, const std::string& host, uint16_t port,
                            std::chrono::milliseconds timeout) {
  std::string text = protocol::describe(system, e, timeout);
  if (const std::string refused = last_tls_refusal(host, port); !refused.empty()) text += " (TLS: " + refused + ")";
  else if (uses_tls(system) && e == caf::sec::disconnect_during_handshake)
    text += " (TLS: the node closed the connection during the handshake: does it run with tls=true and trust this "
            "cluster's CA?)";
  return text;
}

}  // namespace d3::transport
