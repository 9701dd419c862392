// A workaround for CAF 0.17.6's TLS module (libcaf_openssl), which we cannot patch (Debian's
// package): OpenSSL keeps one error queue per thread and requires it to be empty before each
// SSL_read, SSL_write, SSL_connect or SSL_accept, else SSL_get_error reports the stale error of
// another connection. CAF runs every connection of a process on one I/O thread and clears the
// queue only in log statements its Debian build compiles out. Measured: when one peer of a node
// died, the node's next reads on all its other TLS connections failed and it dropped them all
// (the app's too).
//
// This file defines those four functions in the executable that links it; the dynamic linker
// binds libcaf_openssl's calls to them (a definition in the executable comes first), and each
// clears the queue and calls OpenSSL's own (dlsym RTLD_NEXT).
#pragma once

namespace d3 {

// Referenced by transport::configure_tls so that the definitions are linked into every program
// that can use TLS. Returns false when OpenSSL's functions cannot be found (then nothing is
// wrapped and TLS is not safe to use: the caller says so).
bool openssl_error_queues_cleared_before_io();

}  // namespace d3
