// d3-node: one node process of a d3 deployment. It publishes its node actor on HOST:PORT (the
// port the app connects to and remote_spawn goes through), hosts the stage actors the app spawns
// on it and caches the layers shipped to it, until SIGINT or SIGTERM.
//
//   d3-node --config-file=apps/config/edge1.ini        (INI, section [d3]; strings double-quoted)
//   d3-node --d3.name="edge9" --d3.role="edge" --d3.port=0   (the CLI overrides the file)
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <iostream>
#include <string>

#include "actors/emulation.hpp"
#include "actors/node.hpp"
#include "actors/protocol.hpp"

namespace {

struct node_config : caf::actor_system_config {
  std::string name = "node";
  std::string role = "edge";
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  double speed = 1.0;
  bool verbose = false;

  node_config() {
    opt_group{custom_options_, "d3"}
        .add(name, "name", "the node's name (the app refers to it by this name)")
        .add(role, "role", "device, edge or cloud")
        .add(host, "host", "address to listen on (default 127.0.0.1)")
        .add(port, "port", "port to listen on (0: any free port, printed)")
        .add(speed, "speed", "emulated compute capacity relative to one core (emulation: applied under the virtual clock)")
        .add(verbose, "verbose", "print one line per stage spawned, shipment cached and stage error");
    d3::protocol::configure_process(*this);
    d3::protocol::add_stage_actor_types(*this);
  }
};

}  // namespace

int main(int argc, char** argv) {
  node_config cfg;
  if (auto err = cfg.parse(argc, argv)) {
    std::cerr << "d3-node: bad configuration: " << caf::to_string(err) << "\n";
    return 2;
  }
  if (cfg.cli_helptext_printed) return 0;
  if (cfg.name.empty()) {
    std::cerr << "d3-node: [d3] name is empty (strings must be double-quoted in the INI file)\n";
    return 2;
  }
  if (!d3::node_role_from_string(cfg.role)) {
    std::cerr << "d3-node: [d3] role '" << cfg.role << "' is not device, edge or cloud\n";
    return 2;
  }
  d3::set_stage_event_printing(cfg.verbose);

  // SIGINT/SIGTERM are blocked in every thread (CAF's threads inherit the mask) and taken by
  // sigwait below: a clean shutdown, not a handler racing the actor system.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  int exit_code = 0;
  {
    caf::actor_system system{cfg};
    auto node = system.spawn(d3::node_actor, d3::node_identity{cfg.name, cfg.role, cfg.speed});
    auto port = system.middleman().publish(node, cfg.port, cfg.host.c_str(), true);
    if (!port) {
      std::cerr << "d3-node " << cfg.name << ": cannot listen on " << cfg.host << ":" << cfg.port << ": "
                << system.render(port.error()) << "\n";
      caf::anon_send_exit(node, caf::exit_reason::user_shutdown);
      exit_code = 1;
    } else {
      std::printf("d3-node %s (%s) listening on %s:%u\n", cfg.name.c_str(), cfg.role.c_str(), cfg.host.c_str(),
                  unsigned(*port));
      std::printf("d3-node %s: emulated speed %g (emulation: compute capacity relative to one core, applied "
                  "under the virtual clock)\n", cfg.name.c_str(), cfg.speed);
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
