// d3-node: one node process of a d3 deployment. It publishes its node actor on HOST:PORT (the
// port the app connects to and remote_spawn goes through), hosts the stage actors the app spawns
// on it and caches the layers shipped to it, until SIGINT or SIGTERM.
//
//   d3-node --config-file=apps/config/edge1.ini        (INI, section [d3]; strings double-quoted)
//   d3-node --d3.name="edge9" --d3.role="edge" --d3.port=0   (the CLI overrides the file)
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <string>

#include "kernels/arithmetic_fingerprint.hpp"
#include "kernels/memory.hpp"
#include "emulation/emulation.hpp"
#include "actors/layer_cache.hpp"
#include "actors/node.hpp"
#include "actors/protocol.hpp"
#include "actors/transport.hpp"
#include "apps/app_support.hpp"
#include "kernels/model_zoo.hpp"
#include "profiling/cpu_limit.hpp"
#include "security/tls_audit.hpp"
#include "security/tls_identity.hpp"

namespace {

struct node_config : caf::actor_system_config {
  std::string name = "node";
  std::string role = "edge";
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  double speed = 1.0;
  size_t cache_mb = 2048;
  size_t max_message_mb = 256;
  size_t max_upload_mb = 2048;
  size_t max_stages = 1024;
  size_t max_layers = 4096;
  bool verbose = false;
  bool tls = true;
  std::string models;
  uint64_t model_seed = d3::default_model_seed;

  node_config() {
    opt_group{custom_options_, "d3"}
        .add(name, "name", "the node's name (the app refers to it by this name)")
        .add(role, "role", "device, edge or cloud")
        .add(host, "host", "address to listen on (default 127.0.0.1)")
        .add(port, "port", "port to listen on (0: any free port, printed)")
        .add(speed, "speed", "emulated compute capacity relative to one core (emulation: applied under the virtual clock)")
        .add(cache_mb, "cache_mb", "budget of the layer cache in MB (0: none); least recently used layers no stage uses are evicted")
        .add(max_message_mb, "max_message_mb", "largest layer shipment, tensor bundle or profile fragment accepted, in MB")
        .add(max_upload_mb, "max_upload_mb", "largest layer shipment sent in parts (a layer over max_message_mb), and the most MB of such uploads in progress at once")
        .add(max_stages, "max_stages", "most stages live at once on this node")
        .add(max_layers, "max_layers", "most layers in one layer shipment (upload)")
        .add(models, "models", "models provisioned at start (comma-separated built-in names, .d3m or .onnx files): their weights are cached, never shipped")
        .add(model_seed, "model_seed", "seed of the built-in models' weights in `models` (as d3-infer --model-seed)")
        .add(verbose, "verbose", "print one line per stage spawned, shipment cached and stage error")
        .add(tls, "tls", "mutual TLS on every connection (certificates in [openssl]); false: plaintext, with a warning");
    d3::protocol::configure_process(*this);
    d3::protocol::add_stage_actor_types(*this);
    // Stages block their worker thread while they compute (and, under the virtual clock, while
    // they wait for the machine's CPU lock): spare workers keep the node actor answering the
    // app's heartbeats meanwhile, so a busy node is not taken for a frozen one. The config file
    // or the CLI still overrides it (--scheduler.max-threads=N).
    set("scheduler.max-threads", size_t(8));
  }
};

const char* node_usage = R"(usage: d3-node [--config-file=FILE.ini] [--d3.KEY=VALUE ...]

One node process of a d3 deployment: publishes its node actor on HOST:PORT, hosts the stage
actors the app spawns on it and caches the layers shipped to it, until SIGINT or SIGTERM.

Options, in the [d3] section of the INI file (strings double-quoted: role="edge") or on the
command line as --d3.KEY=VALUE (the command line overrides the file):
  name     the node's name, how the app and the plans refer to it   (default "node")
  role     device, edge or cloud                                     (default "edge")
  host     address to listen on                                      (default "127.0.0.1")
  port     port to listen on; 0 picks a free one and prints it       (default 0)
  speed    emulated compute capacity relative to one core; applied
           under the virtual clock (emulation)                       (default 1)
  cache_mb budget of the layer cache in MB; past it, the least
           recently used layers no stage uses are evicted, and a
           shipment that still does not fit is refused (0: none)     (default 2048)
  max_message_mb  the largest layer shipment, tensor bundle or profile
           fragment accepted; larger ones are refused before they
           are decoded, and the node keeps serving                  (default 256)
  max_upload_mb  the largest layer shipment the app sends in parts of
           at most 32 MB (one layer whose weights exceed
           max_message_mb), and the most MB of such uploads in
           progress at once; checked before any is allocated        (default 2048)
  max_stages  the most stages live at once; one more is refused    (default 1024)
  max_layers  the most layers in one layer shipment; a longer one is
           refused before any layer is read                         (default 4096)
  models   models provisioned on this machine, comma-separated: built-in
           names, d3 model files (.d3m) or ONNX files, loaded at start.
           Their weights go into the layer cache (within cache_mb), so
           no deployment or migration of the same model (same weights:
           the same file, or the same name and model_seed) ships them
           here; the app learns at deploy which layers each node holds  (default "")
  model_seed  seed of the built-in models' weights in models       (default 2021)
  verbose  print one line per stage spawned, shipment cached and
           stage error (a bare flag on the command line)             (default false)
  tls      mutual TLS on every connection: peers must present a
           certificate the cluster CA signed, valid now; refusals
           are printed. false: no authentication, plaintext (a
           warning says so)                                          (default true)

TLS identity, in CAF's [openssl] section (or --openssl.KEY=VALUE), PEM files made by
scripts/make-certs.sh DIR NAME... (paths relative to the working directory):
  cafile       the cluster CA's certificate      (e.g. "certs/ca.pem")
  certificate  this node's certificate           (e.g. "certs/edge1.pem")
  key          its private key                   (e.g. "certs/edge1.key")
  passphrase   the key's passphrase, if it is encrypted

Example: d3-node --config-file=apps/config/edge1.ini
         d3-node --d3.name="edge9" --d3.role="edge" --d3.port=0
CAF's own options (e.g. [middleman], [scheduler]): d3-node --long-help.
Exit codes: 0 stopped by a signal; 1 cannot listen; 2 bad configuration (also a TLS file that
cannot be read, a key that does not match its certificate, a certificate the CA did not sign or
that is not valid now).
)";

std::string config_file(int argc, char** argv) {
  std::string file = "caf-application.ini";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--config-file=", 0) == 0) file = arg.substr(14);
  }
  return file;
}

// CAF reports INI errors as "parser_error(unexpected_character, line 2, column 7)": name the file,
// quote the line and say what CAF expects.
std::string explain_config_error(const std::string& caf_text, int argc, char** argv) {
  const std::string file = config_file(argc, argv);
  // CAF 0.17 writes the position as ({"column" = 7, "line" = 3}).
  const size_t at = caf_text.find("\"line\" = ");
  if (at == std::string::npos) return caf_text;
  const int line = std::atoi(caf_text.c_str() + at + 9);
  std::ifstream in(file);
  std::string text;
  for (int n = 1; n <= line && std::getline(in, text); ++n) {
  }
  std::string out = file + " line " + std::to_string(line) + ": '" + text + "' (" + caf_text + ")";
  if (text.find('=') != std::string::npos && text.find('"') == std::string::npos)
    out += "; strings must be double-quoted, e.g. role=\"edge\"";
  return out;
}

// CAF's INI reader drops a [d3] key whose value has the wrong type (speed="fast", port=70000,
// role='edge') and the member keeps its default: find such a key in the file and name it ("" when
// every [d3] key of the file was taken).
std::string dropped_ini_key(const std::string& file, const caf::settings& content) {
  std::ifstream in(file);
  std::string line, section;
  const std::map<std::string, std::string> expected = {
      {"name", "a double-quoted string"}, {"role", "a double-quoted string (device, edge or cloud)"},
      {"host", "a double-quoted string"}, {"port", "an integer in [0, 65535]"},
      {"speed", "a number"},             {"verbose", "true or false"},
      {"cache_mb", "an integer >= 0"},     {"max_message_mb", "an integer >= 0"},
      {"max_upload_mb", "an integer >= 0"},
      {"max_stages", "an integer >= 0"},   {"tls", "true or false"},
      {"max_layers", "an integer >= 0"},   {"models", "a double-quoted string"},
      {"model_seed", "an integer >= 0"}};
  for (int number = 1; std::getline(in, line); ++number) {
    const size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == ';' || line[first] == '#') continue;
    if (line[first] == '[') {
      section = line.substr(first + 1, line.find(']') - first - 1);
      continue;
    }
    const size_t eq = line.find('=');
    if (section != "d3" || eq == std::string::npos) continue;
    std::string key = line.substr(first, eq - first);
    key.erase(key.find_last_not_of(" \t") + 1);
    auto known = expected.find(key);
    if (known == expected.end())
      return file + " line " + std::to_string(number) + ": unknown [d3] key '" + key +
             "' (name, role, host, port, speed, cache_mb, max_message_mb, max_upload_mb, max_stages, max_layers, models, model_seed, verbose, tls)";
    if (!caf::get_if(&content, "d3." + key))
      return file + " line " + std::to_string(number) + ": [d3] " + key + " must be " + known->second + ", got '" +
             line.substr(first) + "'";
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  // Freed memory stays in the process between requests (no page faults on each request's
  // buffers), and a retired stage's memory stays for its successor (actors/stage_actor.cpp).
  d3::retain_freed_memory();
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h" || arg == "-?") {
      std::cout << node_usage;
      return 0;
    }
  }
  node_config cfg;
  if (auto err = cfg.parse(argc, argv)) {
    std::cerr << "d3-node: bad configuration: " << explain_config_error(caf::to_string(err), argc, argv) << "\n";
    return 2;
  }
  if (cfg.cli_helptext_printed) return 0;
  if (auto dropped = dropped_ini_key(config_file(argc, argv), caf::content(cfg)); !dropped.empty()) {
    std::cerr << "d3-node: bad configuration: " << dropped << "\n";
    return 2;
  }
  if (!(cfg.speed > 0)) {
    std::cerr << "d3-node: bad configuration: [d3] speed must be a positive number, got " << cfg.speed << "\n";
    return 2;
  }
  if (cfg.name.empty()) {
    std::cerr << "d3-node: [d3] name is empty (strings must be double-quoted in the INI file)\n";
    return 2;
  }
  if (!d3::node_role_from_string(cfg.role)) {
    std::cerr << "d3-node: [d3] role '" << cfg.role << "' is not device, edge or cloud\n";
    return 2;
  }
  d3::tls_settings tls;
  tls.enabled = cfg.tls;
  tls.ca_file = cfg.openssl_cafile;
  tls.certificate_file = cfg.openssl_certificate;
  tls.key_file = cfg.openssl_key;
  tls.passphrase = cfg.openssl_passphrase;
  if (auto checked = d3::check_tls_identity(tls, "d3-node " + cfg.name); !checked) {
    std::cerr << checked.message() << "\n";
    return 2;
  }
  if (!tls.enabled) std::cerr << d3::plaintext_warning("d3-node " + cfg.name) << "\n";
  d3::transport::configure_tls(cfg, tls);
  // Every refused handshake is printed (an attempt to reach the node without the cluster's
  // credentials); admitted ones only with verbose. Runs on CAF's I/O thread: one write.
  const std::string me = "d3-node " + cfg.name + ": ";
  const bool verbose = cfg.verbose;
  d3::watch_tls_handshakes([me, verbose](const d3::tls_event& e) {
    if (!e.admitted || verbose) std::fprintf(stderr, "%s%s\n", me.c_str(), e.describe().c_str());
  });
  d3::set_stage_event_printing(cfg.verbose);
  d3::layer_cache::process().set_budget(cfg.cache_mb << 20);
  d3::set_node_limits({cfg.max_message_mb << 20, cfg.max_stages, cfg.max_layers, cfg.max_upload_mb << 20});
  for (const std::string& model : d3::split_list(cfg.models)) {
    auto g = d3::load_model_by_name(model, cfg.model_seed);
    auto cached = g ? d3::layer_cache::process().provision(g.value()) : d3::result<size_t>(g.error());
    if (!cached) {
      std::cerr << "d3-node " << cfg.name << ": bad configuration: [d3] models: " << model << ": " << cached.message() << "\n";
      return 2;
    }
    std::printf("d3-node %s: provisioned %s: %s of weights cached\n", cfg.name.c_str(), model.c_str(),
                d3::human_bytes(double(*cached)).c_str());
  }

  // SIGINT/SIGTERM are blocked in every thread (CAF's threads inherit the mask) and taken by
  // sigwait below: a clean shutdown, not a handler racing the actor system.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  // Before the node listens: the app compares it with its own (bit-identical outputs need the same
  // arithmetic on every node).
  auto arithmetic = d3::arithmetic_fingerprint();
  if (!arithmetic.is_ok()) {
    std::cerr << "d3-node " << cfg.name << ": " << arithmetic.message() << "\n";
    return 1;
  }
  int exit_code = 0;
  {
    caf::actor_system system{cfg};
    auto node = system.spawn(d3::node_actor, d3::node_identity{cfg.name, cfg.role, cfg.speed, *arithmetic});
    auto port = d3::transport::publish(node, cfg.port, cfg.host);
    if (!port) {
      std::cerr << "d3-node " << cfg.name << ": cannot listen on " << cfg.host << ":" << cfg.port << ": "
                << system.render(port.error()) << "\n";
      caf::anon_send_exit(node, caf::exit_reason::user_shutdown);
      exit_code = 1;
    } else {
      std::printf("d3-node %s (%s) listening on %s:%u (%s)\n", cfg.name.c_str(), cfg.role.c_str(), cfg.host.c_str(),
                  unsigned(*port), tls.enabled ? ("mutual TLS, cluster CA " + tls.ca_file).c_str() : "plaintext: tls=false");
      std::printf("d3-node %s: emulated speed %g (emulation: compute capacity relative to one core, applied "
                  "under the virtual clock)\n", cfg.name.c_str(), cfg.speed);
      std::printf("d3-node %s: arithmetic %s (kernels' fingerprint: nodes with the same one compute the same "
                  "bits)\n", cfg.name.c_str(), arithmetic->c_str());
      if (auto limit = d3::cpu_limit_cores())
        std::printf("d3-node %s: cpu quota of %.3g cores (cgroup): wall-clock speed probes are timed at its sustained "
                    "rate\n", cfg.name.c_str(), *limit);
      std::fflush(stdout);
      int signal_number = 0;
      sigwait(&stop_signals, &signal_number);
      std::printf("d3-node %s stopping (%s), %zu stages running\n", cfg.name.c_str(),
                  signal_number == SIGINT ? "SIGINT" : "SIGTERM", d3::live_stage_count());
      std::fflush(stdout);
      d3::stop_all_stages();
      caf::anon_send_exit(node, caf::exit_reason::user_shutdown);
    }
  }
  return exit_code;
}
