#include "security/openssl_error_queue.hpp"

#include <dlfcn.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

namespace {

template <class F>
F real(const char* name) {
  static_assert(sizeof(F) == sizeof(void*));
  return reinterpret_cast<F>(::dlsym(RTLD_NEXT, name));
}

using io_fn = int (*)(SSL*, void*, int);
using write_fn = int (*)(SSL*, const void*, int);
using handshake_fn = int (*)(SSL*);

io_fn real_read() {
  static const io_fn f = real<io_fn>("SSL_read");
  return f;
}
write_fn real_write() {
  static const write_fn f = real<write_fn>("SSL_write");
  return f;
}
handshake_fn real_connect() {
  static const handshake_fn f = real<handshake_fn>("SSL_connect");
  return f;
}
handshake_fn real_accept() {
  static const handshake_fn f = real<handshake_fn>("SSL_accept");
  return f;
}

}  // namespace

extern "C" {

int SSL_read(SSL* ssl, void* buffer, int size) {
  ERR_clear_error();
  return real_read()(ssl, buffer, size);
}

int SSL_write(SSL* ssl, const void* buffer, int size) {
  ERR_clear_error();
  return real_write()(ssl, buffer, size);
}

int SSL_connect(SSL* ssl) {
  ERR_clear_error();
  return real_connect()(ssl);
}

int SSL_accept(SSL* ssl) {
  ERR_clear_error();
  return real_accept()(ssl);
}

}  // extern "C"

namespace d3 {

bool openssl_error_queues_cleared_before_io() {
  return real_read() && real_write() && real_connect() && real_accept() && real_read() != &SSL_read;
}

}  // namespace d3
