// Checks of a TLS identity (base/tls_settings.hpp) with OpenSSL. Every connection
// between d3 processes is mutually authenticated against the cluster CA: a peer is admitted when
// the cluster CA signed its certificate and the certificate is valid now. Names are not bound to
// certificates (any member of the cluster may act as any node), so the CA key is the boundary.
// OpenSSL only: no actors here.
#pragma once

#include <string>

#include "base/status.hpp"
#include "base/tls_settings.hpp"

namespace d3 {

// Checks an identity before any connection uses it, so that a bad file is an error naming it
// rather than a failed handshake later (CAF's TLS module throws on its I/O thread when it cannot
// load a file): every file readable and PEM, the key matching the certificate, the certificate
// signed by the CA and valid now (not expired, not yet valid). OK when TLS is off.
status check_tls_identity(const tls_settings& tls, const std::string& who);

// The identity of `name` in a folder made by scripts/make-certs.sh: dir/NAME.pem when it exists,
// else the folder's generic identity dir/node.pem (local clusters whose node names vary).
tls_settings cluster_identity(const std::string& dir, const std::string& name);

// The lines of a d3-node INI file for `tls`: "tls=..." for the [d3] section, and the [openssl]
// section naming the files (written last, as it opens a section).
std::string tls_ini_key(const tls_settings& tls);
std::string tls_ini_section(const tls_settings& tls);

// The warning every program prints when it runs with tls=false.
std::string plaintext_warning(const std::string& who);

}  // namespace d3
