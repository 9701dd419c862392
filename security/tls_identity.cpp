#include "security/tls_identity.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>

namespace d3 {

namespace {

template <class T, void (*Free)(T*)>
struct openssl_deleter {
  void operator()(T* p) const { Free(p); }
};
using bio_ptr = std::unique_ptr<BIO, openssl_deleter<BIO, BIO_free_all>>;
using x509_ptr = std::unique_ptr<X509, openssl_deleter<X509, X509_free>>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, openssl_deleter<EVP_PKEY, EVP_PKEY_free>>;
using store_ptr = std::unique_ptr<X509_STORE, openssl_deleter<X509_STORE, X509_STORE_free>>;
using store_ctx_ptr = std::unique_ptr<X509_STORE_CTX, openssl_deleter<X509_STORE_CTX, X509_STORE_CTX_free>>;

// OpenSSL's reason for the last error, and the queue cleared (it is per thread).
std::string openssl_reason() {
  const unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code == 0) return "not PEM";
  const char* reason = ERR_reason_error_string(code);
  return reason ? reason : "OpenSSL error " + std::to_string(code);
}

std::string time_text(const ASN1_TIME* t) {
  bio_ptr out(BIO_new(BIO_s_mem()));
  if (!out || !t || ASN1_TIME_print(out.get(), t) != 1) return "?";
  char* data = nullptr;
  const long n = BIO_get_mem_data(out.get(), &data);
  return std::string(data, size_t(n));
}

int passphrase_callback(char* buffer, int size, int, void* user) {
  const std::string& passphrase = *static_cast<const std::string*>(user);
  if (size <= 0 || passphrase.size() >= size_t(size)) return 0;
  std::memcpy(buffer, passphrase.data(), passphrase.size());
  return int(passphrase.size());
}

result<x509_ptr> read_certificate(const std::string& path, const std::string& what) {
  bio_ptr in(BIO_new_file(path.c_str(), "r"));
  if (!in) return status::error(what + " '" + path + "' cannot be read: " + std::strerror(errno));
  x509_ptr cert(PEM_read_bio_X509(in.get(), nullptr, nullptr, nullptr));
  if (!cert) return status::error(what + " '" + path + "' holds no PEM certificate (" + openssl_reason() + ")");
  return cert;
}

}  // namespace

status check_tls_identity(const tls_settings& tls, const std::string& who) {
  if (!tls.enabled) return status::ok();
  if (!tls.configured())
    return status::error(who + ": TLS is on but " +
                         std::string(tls.ca_file.empty() ? "the cluster CA" : tls.certificate_file.empty() ? "the certificate" : "the key") +
                         " is not given (make them with scripts/make-certs.sh DIR NAME...; or run without TLS with tls=false)");
  D3_ASSIGN_OR_RETURN(x509_ptr ca, read_certificate(tls.ca_file, who + ": cluster CA"));
  D3_ASSIGN_OR_RETURN(x509_ptr cert, read_certificate(tls.certificate_file, who + ": certificate"));
  pkey_ptr key;
  {
    bio_ptr in(BIO_new_file(tls.key_file.c_str(), "r"));
    if (!in) return status::error(who + ": key '" + tls.key_file + "' cannot be read: " + std::strerror(errno));
    std::string passphrase = tls.passphrase;
    key.reset(PEM_read_bio_PrivateKey(in.get(), nullptr, passphrase_callback, &passphrase));
    if (!key)
      return status::error(who + ": key '" + tls.key_file + "' holds no usable PEM private key (" + openssl_reason() +
                           (tls.passphrase.empty() ? "; if it is encrypted, give its passphrase)" : ")"));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return status::error(who + ": key '" + tls.key_file + "' does not belong to certificate '" + tls.certificate_file + "'");
  }
  store_ptr store(X509_STORE_new());
  store_ctx_ptr ctx(X509_STORE_CTX_new());
  if (!store || !ctx || X509_STORE_add_cert(store.get(), ca.get()) != 1 ||
      X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr) != 1)
    return status::error(who + ": cannot set up certificate verification (" + openssl_reason() + ")");
  if (X509_verify_cert(ctx.get()) != 1) {
    const int error = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    std::string detail = X509_verify_cert_error_string(error);
    if (error == X509_V_ERR_CERT_HAS_EXPIRED) detail += " on " + time_text(X509_get0_notAfter(cert.get()));
    if (error == X509_V_ERR_CERT_NOT_YET_VALID) detail += " (valid from " + time_text(X509_get0_notBefore(cert.get())) + ")";
    return status::error(who + ": certificate '" + tls.certificate_file + "' does not verify against the cluster CA '" +
                         tls.ca_file + "': " + detail);
  }
  return status::ok();
}

tls_settings cluster_identity(const std::string& dir, const std::string& name) {
  tls_settings own = tls_settings::from_dir(dir, name);
  if (::access(own.certificate_file.c_str(), R_OK) == 0) return own;
  return tls_settings::from_dir(dir, "node");
}

std::string tls_ini_key(const tls_settings& tls) { return std::string("tls=") + (tls.enabled ? "true" : "false") + "\n"; }

std::string tls_ini_section(const tls_settings& tls) {
  if (!tls.enabled) return "";
  std::string text = "[openssl]\ncafile=\"" + tls.ca_file + "\"\ncertificate=\"" + tls.certificate_file + "\"\nkey=\"" +
                     tls.key_file + "\"\n";
  if (!tls.passphrase.empty()) text += "passphrase=\"" + tls.passphrase + "\"\n";
  return text;
}

std::string plaintext_warning(const std::string& who) {
  return "WARNING: " + who + " runs without TLS (tls=false): peers are not authenticated, anyone who reaches its "
         "port can ship layers and run stages, and tensors travel in plaintext";
}

}  // namespace d3
