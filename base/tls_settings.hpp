// The TLS identity of one d3 process (a node or an app), as files: the cluster CA it trusts and
// its own certificate and private key (PEM, made by scripts/make-certs.sh). Plain data; the
// checks and the handshakes are in security/.
#pragma once

#include <string>

namespace d3 {

struct tls_settings {
  // false only when asked explicitly (tls=false): then peers are not authenticated and tensors
  // travel in plaintext, which every program says in a warning.
  bool enabled = true;
  std::string ca_file;           // PEM: the cluster CA's certificate
  std::string certificate_file;  // PEM: this process's certificate (signed by the cluster CA)
  std::string key_file;          // PEM: its private key
  std::string passphrase;        // of the key, if it is encrypted

  // The files scripts/make-certs.sh writes into `dir` for `name`: dir/ca.pem, dir/NAME.pem and
  // dir/NAME.key.
  static tls_settings from_dir(const std::string& dir, const std::string& name) {
    tls_settings s;
    s.ca_file = dir + "/ca.pem";
    s.certificate_file = dir + "/" + name + ".pem";
    s.key_file = dir + "/" + name + ".key";
    return s;
  }
  static tls_settings off() {
    tls_settings s;
    s.enabled = false;
    return s;
  }
  bool configured() const { return !ca_file.empty() && !certificate_file.empty() && !key_file.empty(); }
};

}  // namespace d3
