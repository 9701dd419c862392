// d3-node processes on this machine, for benchmarks that deploy over real nodes (d3-bench grid).
// Each node gets an INI file with port 0, binds a free loopback port and prints it; its stdout and
// stderr go to a log file (never a pipe nobody drains). The nodes are stopped (SIGTERM, SIGKILL
// after a grace period) by stop() and the destructor, at exit() (a failing app that calls exit()
// skips destructors), when this process gets SIGINT, SIGTERM or SIGHUP, and by the kernel when
// this process dies any other way (PR_SET_PDEATHSIG): no node outlives the app.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "actors/deployment.hpp"
#include "base/status.hpp"
#include "base/tls_settings.hpp"
#include "kernels/model_zoo.hpp"

namespace d3 {

// The TLS of a local cluster: a folder made by scripts/make-certs.sh (the app presents app.pem,
// each node NAME.pem, or node.pem for other names), or off (tls=false: plaintext, with a warning).
struct local_tls {
  bool enabled = true;
  std::string dir;
  tls_settings app() const;
  tls_settings node(const std::string& name) const;
};

// From a --tls option: a folder, "false", or "" for the certificates the build made beside this
// executable's folder (build/certs). The app's identity is checked; the error names the file.
result<local_tls> local_tls_from_option(const std::string& given);

// The app side of a local cluster: d3's message types, CAF's TLS module with the app's identity
// (or, with TLS off, a warning on stderr naming `who`).
void configure_local_app(caf::actor_system_config& cfg, const local_tls& tls, const std::string& who);

struct local_node_spec {
  local_node_spec() = default;
  local_node_spec(std::string node_name, std::string node_role, double node_speed = 1.0)
      : name(std::move(node_name)), role(std::move(node_role)), speed(node_speed) {}
  std::string name;
  std::string role;    // device, edge or cloud
  double speed = 1.0;  // INI `speed`: emulated capacity relative to one core (virtual clock)
  std::string models;  // INI `models`: provisioned at start (weights cached, never shipped); "" none
  uint64_t model_seed = default_model_seed;  // INI `model_seed`
};

class local_nodes {
 public:
  // Starts one d3-node per spec (binary `node_binary`), with its INI and log in `folder`, and
  // waits until every node prints its listening line. Errors name the node and quote its log.
  // `tls`: how the nodes authenticate (their INI files name their certificates).
  static result<std::unique_ptr<local_nodes>> start(const std::string& node_binary, const std::string& folder,
                                                    const std::vector<local_node_spec>& specs,
                                                    std::chrono::milliseconds startup_timeout, const local_tls& tls);
  ~local_nodes();
  local_nodes(const local_nodes&) = delete;
  local_nodes& operator=(const local_nodes&) = delete;

  // SIGTERM to every node, then waits for each (5 s grace, then SIGKILL). Idempotent.
  void stop();

  // Nodes whose process has ended (reaped here), one line each: name, how it ended, its log. A
  // node can die without any stage of the current deployment noticing (no stage on it), so
  // benchmarks ask after each measurement.
  std::vector<std::string> exited();

  const std::vector<node_endpoint>& endpoints() const { return endpoints_; }

  // Faults on purpose (d3-bench chaos): a signal to node `name` (SIGKILL also reaps it), and a
  // killed node started again with the same name, role, speed and port (an empty layer cache).
  status signal(const std::string& name, int sig);
  // Whether the node's process was started and not killed through signal() (a frozen one is running).
  bool running(const std::string& name) {
    process* p = find(name);
    return p && p->pid > 0;
  }
  status restart(const std::string& name, std::chrono::milliseconds startup_timeout);
  // restart() in two halves: start the process (returns at once), then wait for its listening
  // line. Call both from the same thread as start(): a node started from a thread that then ends
  // gets SIGTERM (PR_SET_PDEATHSIG follows the creating thread).
  status relaunch(const std::string& name);
  status wait_relaunched(const std::string& name, std::chrono::milliseconds startup_timeout);
  // The node's resident set size (VmRSS), or an error when it is not running.
  result<size_t> rss_bytes(const std::string& name) const;
  // The log file of node `name` ("" for an unknown name).
  std::string log_path(const std::string& name) const;

 private:
  struct process {
    local_node_spec spec;
    std::string ini, log;
    pid_t pid = -1;
  };
  local_nodes() = default;
  status launch(const std::string& node_binary, process& p, uint16_t port = 0);
  process* find(const std::string& name);
  std::string node_binary_;
  local_tls tls_;
  result<uint16_t> wait_listening(process& p, std::chrono::steady_clock::time_point deadline);

  std::vector<process> processes_;
  std::vector<node_endpoint> endpoints_;
};

// The file `name` in the folder of the running executable (/proc/self/exe), e.g. the d3-node
// built next to d3-bench; "" when that folder cannot be read.
std::string sibling_executable(const std::string& name);

// How the benchmarks deploy on local nodes: the virtual clock, the testbed's links shaped, the app
// on the node named "device", and `timeout_ms` for every step.
deployment_options virtual_clock_options(const testbed& links, long timeout_ms);

// A benchmark's --node-binary and --tls resolved in place: the given d3-node or the one next to
// this executable, and local_tls_from_option. The error names what is wrong.
status resolve_local_cluster(std::string& node_binary, const std::string& tls_option, local_tls& tls);

}  // namespace d3
