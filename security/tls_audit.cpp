#include "security/tls_audit.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>

#include <deque>
#include <mutex>

namespace d3 {

namespace {

// What one session saw so far; owned by the SSL structure (ex_data), freed with it.
struct session_audit {
  std::string peer;           // taken at the first callback, while the socket is connected
  std::string subject;        // the peer's certificate
  std::string verify_reason;  // why its certificate was rejected, if it was
  bool reported = false;      // one event per session
};

constexpr size_t kept_refusals = 64;

struct audit_state {
  std::mutex mutex;
  std::function<void(const tls_event&)> sink;
  std::deque<tls_event> refusals;
  int index = -1;  // the ex_data index of session_audit
};

audit_state& state() {
  static audit_state s;
  return s;
}

session_audit* audit_of(const SSL* ssl) {
  const int index = state().index;
  return index < 0 ? nullptr : static_cast<session_audit*>(SSL_get_ex_data(ssl, index));
}

std::string peer_of(const SSL* ssl) {
  const int fd = SSL_get_fd(ssl);
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (fd < 0 || ::getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return "?";
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (address.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&address);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
  } else if (address.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&address);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
  }
  return std::string(host) + ":" + std::to_string(port);
}

std::string subject_of(X509* cert) {
  if (!cert) return "";
  char buffer[512];
  X509_NAME_oneline(X509_get_subject_name(cert), buffer, sizeof buffer);
  return buffer;
}

void report(const SSL* ssl, session_audit& audit, bool admitted, std::string reason) {
  if (audit.reported) return;
  audit.reported = true;
  tls_event e;
  e.admitted = admitted;
  e.we_accepted = SSL_is_server(const_cast<SSL*>(ssl)) == 1;
  e.peer = audit.peer.empty() ? peer_of(ssl) : audit.peer;
  e.subject = audit.subject;
  e.reason = std::move(reason);
  std::function<void(const tls_event&)> sink;
  {
    audit_state& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    if (!admitted) {
      s.refusals.push_back(e);
      if (s.refusals.size() > kept_refusals) s.refusals.pop_front();
    }
    sink = s.sink;
  }
  if (sink) sink(e);
}

// Observes OpenSSL's verdict on each certificate of the peer's chain; returns it unchanged.
int verify_callback(int ok, X509_STORE_CTX* ctx) {
  auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
  session_audit* audit = ssl ? audit_of(ssl) : nullptr;
  if (!audit) return ok;
  if (audit->subject.empty()) audit->subject = subject_of(X509_STORE_CTX_get0_cert(ctx));
  if (!ok && audit->verify_reason.empty()) {
    const int error = X509_STORE_CTX_get_error(ctx);
    audit->verify_reason = std::string("its certificate does not verify against the cluster CA: ") +
                           X509_verify_cert_error_string(error);
  }
  return ok;
}

void info_callback(const SSL* ssl, int where, int ret) {
  session_audit* audit = audit_of(ssl);
  if (!audit || audit->reported) return;
  if (audit->peer.empty()) audit->peer = peer_of(ssl);
  if (where & SSL_CB_HANDSHAKE_DONE) {
    report(ssl, *audit, true, "");
  } else if ((where & SSL_CB_ALERT) && (where & SSL_CB_READ) && (ret >> 8) == SSL3_AL_FATAL) {
    report(ssl, *audit, false, std::string("the peer refused the handshake: ") + SSL_alert_desc_string_long(ret));
  } else if ((where & SSL_CB_EXIT) && ret <= 0) {
    const int error = SSL_get_error(ssl, ret);
    if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) return;  // non-blocking: more to come
    std::string reason = audit->verify_reason;
    if (reason.empty()) {
      const unsigned long code = ERR_peek_last_error();
      const char* text = code ? ERR_reason_error_string(code) : nullptr;
      reason = text ? std::string("TLS handshake failed: ") + text
                    : std::string("the connection closed during the TLS handshake");
      const int why = code ? ERR_GET_REASON(code) : 0;
      if (why == SSL_R_WRONG_VERSION_NUMBER || why == SSL_R_PACKET_LENGTH_TOO_LONG || why == SSL_R_HTTP_REQUEST)
        reason += " (the peer does not speak TLS: plaintext?)";
    }
    report(ssl, *audit, false, reason);
  }
}

// Runs inside SSL_new, after the session copied its verification settings from the context.
void on_new_session(void* parent, void*, CRYPTO_EX_DATA* data, int index, long, void*) {
  auto* ssl = static_cast<SSL*>(parent);
  CRYPTO_set_ex_data(data, index, new session_audit());
  SSL_set_verify(ssl, SSL_get_verify_mode(ssl), verify_callback);
  SSL_set_info_callback(ssl, info_callback);
}

void on_free_session(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<session_audit*>(ptr);
}

}  // namespace

std::string tls_event::describe() const {
  std::string text = admitted ? "admitted TLS peer " : "refused TLS peer ";
  text += peer + (we_accepted ? " (it connected to us)" : " (we connected to it)");
  if (!subject.empty()) text += ", certificate " + subject;
  if (!reason.empty()) text += ": " + reason;
  return text;
}

void start_tls_audit() {
  audit_state& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.index < 0) s.index = SSL_get_ex_new_index(0, nullptr, on_new_session, nullptr, on_free_session);
}

void watch_tls_handshakes(std::function<void(const tls_event&)> sink) {
  start_tls_audit();
  audit_state& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.sink = std::move(sink);
}

std::string last_tls_refusal(const std::string& host, uint16_t port) {
  audit_state& s = state();
  const std::string peer = host + ":" + std::to_string(port);
  std::lock_guard<std::mutex> lock(s.mutex);
  for (auto it = s.refusals.rbegin(); it != s.refusals.rend(); ++it)
    if (it->peer == peer) return it->reason;
  return "";
}

}  // namespace d3
