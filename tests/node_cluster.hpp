// The test fixture for real d3-node processes on loopback (runtime_test, fault_test): a cluster
// (device, edge1, edge2, cloud by default) started on free ports, each node's stdout and stderr in
// a file; nodes can be killed, frozen, resumed and restarted on their port. The destructor stops
// every node (SIGTERM, then SIGKILL after 5 s), also when a check fails; nodes also get SIGTERM
// if the test process dies (PR_SET_PDEATHSIG). Plus the answers' single-process reference.
#pragma once

#include <boost/test/unit_test.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "actors/deployment.hpp"
#include "actors/protocol.hpp"
#include "actors/transport.hpp"
#include "security/tls_identity.hpp"
#include "kernels/executor.hpp"
#include "kernels/model_zoo.hpp"
#include "schema/bundle.hpp"

#ifndef D3_NODE_BINARY
#error "D3_NODE_BINARY (path of d3-node) must be defined by the build"
#endif
#ifndef D3_CERT_DIR
#error "D3_CERT_DIR (the certificates the build made with scripts/make-certs.sh) must be defined by the build"
#endif

namespace d3_test {

using namespace std::chrono_literals;

// How much slower than a plain build this one runs: D3_TIME_SCALE, which tests/CMakeLists.txt sets
// to 3 under the sanitizers (else 1). Wall-clock bounds that tell a prompt recovery from one that
// waited out a timeout are scaled by it; a sanitized run checks memory and undefined behaviour.
inline double time_scale() {
  const char* set = std::getenv("D3_TIME_SCALE");
  const double scale = set ? std::atof(set) : 1.0;
  return scale >= 1.0 ? scale : 1.0;
}

// The identity `name` has in the build's cluster certificates (TLS is on in every test).
inline d3::tls_settings test_identity(const std::string& name) { return d3::cluster_identity(D3_CERT_DIR, name); }

// An app-side actor system with TLS identity `tls` (the config outlives the system).
struct app_system {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> system;
  explicit app_system(const d3::tls_settings& tls) {
    d3::protocol::configure_process(cfg);
    d3::transport::configure_tls(cfg, tls);
    system = std::make_unique<caf::actor_system>(cfg);
  }
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// One d3-node process with its stdout/stderr in a file (never a pipe nobody drains).
struct node_process {
  std::string name, role, ini, log;
  pid_t pid = -1;
  uint16_t port = 0;
};

struct cluster {
  std::string dir;
  std::vector<node_process> nodes;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> system;

  using layout_type = std::vector<std::pair<std::string, std::string>>;  // name, role

  // `speeds`: the emulated speed (INI `speed`) per node name; 1.0 when not given. Every node and
  // the test's own actor system (the app) authenticate with the build's certificates.
  explicit cluster(const std::map<std::string, double>& speeds = {},
                   const layout_type& layout = {{"device", "device"}, {"edge1", "edge"}, {"edge2", "edge"}, {"cloud", "cloud"}}) {
    char tmpl[] = "/tmp/d3-runtime-test-XXXXXX";
    BOOST_REQUIRE(mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    for (const auto& [name, role] : layout) start(name, role, speeds.count(name) ? speeds.at(name) : 1.0);
    for (node_process& n : nodes) wait_listening(n);
    d3::protocol::configure_process(cfg);
    d3::transport::configure_tls(cfg, test_identity("app"));
    system = std::make_unique<caf::actor_system>(cfg);
  }

  ~cluster() {
    system.reset();
    for (node_process& n : nodes)
      if (n.pid > 0) ::kill(n.pid, SIGTERM);
    for (node_process& n : nodes) {
      if (n.pid <= 0) continue;
      bool reaped = false;
      int wait_status = 0;
      for (int i = 0; i < 100 && !reaped; ++i) {  // 5 s grace, then SIGKILL
        reaped = ::waitpid(n.pid, &wait_status, WNOHANG) == n.pid;
        if (!reaped) std::this_thread::sleep_for(50ms);
      }
      // A node stopped by SIGTERM exits 0: anything else (a sanitizer's exit code or abort, a
      // crash) is the test's failure, with the node's log.
      if (reaped && !(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0))
        BOOST_ERROR("d3-node " << n.name << " ended "
                               << (WIFEXITED(wait_status) ? "with exit code " + std::to_string(WEXITSTATUS(wait_status))
                                                          : "by signal " + std::to_string(WTERMSIG(wait_status)))
                               << " at shutdown; its log:\n"
                               << read_file(n.log));
      if (!reaped) {
        BOOST_TEST_MESSAGE("d3-node " << n.name << " ignored SIGTERM; killing it");
        ::kill(n.pid, SIGKILL);
        ::waitpid(n.pid, nullptr, 0);
      }
    }
    for (node_process& n : nodes) {
      std::remove(n.ini.c_str());
      std::remove(n.log.c_str());
    }
    std::remove((dir + "/topology.jsonl").c_str());
    ::rmdir(dir.c_str());
  }

  // `port` 0: any free port (read from the node's listening line).
  // `extra_ini`: more lines for the [d3] section (e.g. "max_stages=4\n").
  // `tls`: the node's TLS identity (default: its own from the build's certificates).
  void start(const std::string& name, const std::string& role, double speed = 1.0, uint16_t port = 0,
             const std::string& extra_ini = "", std::optional<d3::tls_settings> tls = std::nullopt) {
    if (!tls) tls = test_identity(name);
    node_process n;
    n.name = name;
    n.role = role;
    n.ini = dir + "/" + name + ".ini";
    n.log = dir + "/" + name + ".log";
    std::ofstream(n.ini) << "[d3]\nname=\"" << name << "\"\nrole=\"" << role << "\"\nhost=\"127.0.0.1\"\nport=" << port
                         << "\nspeed=" << std::to_string(speed) << "\n"  // "4" would be dropped by CAF: needs a decimal point
                         << extra_ini << d3::tls_ini_key(*tls) << d3::tls_ini_section(*tls);
    const pid_t parent = ::getpid();
    n.pid = ::fork();
    BOOST_REQUIRE(n.pid >= 0);
    if (n.pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(127);
      int fd = ::open(n.log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        ::close(fd);
      }
      const std::string config = "--config-file=" + n.ini;
      ::execl(D3_NODE_BINARY, D3_NODE_BINARY, config.c_str(), "--d3.verbose", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    nodes.push_back(n);
  }

  void wait_listening(node_process& n) {
    const std::string marker = "d3-node " + n.name + " (" + n.role + ") listening on 127.0.0.1:";
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      const std::string text = read_file(n.log);
      const size_t at = text.find(marker);
      if (at != std::string::npos && text.find('\n', at) != std::string::npos) {
        n.port = uint16_t(std::atoi(text.c_str() + at + marker.size()));
        BOOST_REQUIRE_MESSAGE(n.port != 0, "bad listening line of " << n.name << ": " << text);
        return;
      }
      int status = 0;
      BOOST_REQUIRE_MESSAGE(::waitpid(n.pid, &status, WNOHANG) == 0, "d3-node " << n.name << " exited: " << text);
      std::this_thread::sleep_for(20ms);
    }
    BOOST_FAIL("d3-node " << n.name << " did not print its listening line within 20 s: " << read_file(n.log));
  }

  node_process& node(const std::string& name) {
    for (node_process& n : nodes)
      if (n.name == name) return n;
    BOOST_FAIL("no node named " << name);
    return nodes.front();
  }

  // Sends `sig`; a SIGKILL also reaps the process.
  void signal(const std::string& name, int sig) {
    node_process& n = node(name);
    BOOST_REQUIRE(n.pid > 0);
    ::kill(n.pid, sig);
    if (sig == SIGKILL) {
      ::waitpid(n.pid, nullptr, 0);
      n.pid = -1;
    }
  }

  // Starts a node that was killed again, with the same name, role and port (its layer cache is
  // empty: a new process).
  void restart(const std::string& name, double speed = 1.0, const std::string& extra_ini = "") {
    node_process& old = node(name);
    BOOST_REQUIRE_MESSAGE(old.pid <= 0, "restart: " << name << " is still running");
    const node_process copy = old;
    nodes.erase(nodes.begin() + (&old - nodes.data()));
    std::remove(copy.log.c_str());  // wait_listening must read the new process's line
    start(copy.name, copy.role, speed, copy.port, extra_ini);
    wait_listening(nodes.back());
  }

  std::vector<d3::node_endpoint> endpoints() const {
    std::vector<d3::node_endpoint> out;
    for (const node_process& n : nodes) out.push_back({n.name, "127.0.0.1", n.port});
    return out;
  }
};

inline const d3::graph& resnet18() {
  static const d3::graph g = [] {
    auto m = d3::builtin_model("resnet18");
    BOOST_REQUIRE_MESSAGE(m.is_ok(), m.message());
    return std::move(m.value());
  }();
  return g;
}

inline d3::deployment_plan three_tier_plan(bool tiled) {
  d3::deployment_plan plan;
  plan.segments = {{"device", "conv1", "maxpool"}, {"edge1", "layer1.0.conv1", "layer2.1.add"},
                   {"cloud", "layer3.0.conv1", "fc"}};
  if (tiled) {
    d3::plan_tiled_run run;
    run.first = "layer1.0.conv1";
    run.last = "layer2.1.add";
    run.grid = "2x1";
    run.nodes = {"edge1", "edge2"};
    plan.tiled_runs.push_back(run);
  }
  return plan;
}

inline std::vector<std::map<std::string, d3::tensor>> inputs_for(const d3::graph& g, size_t count, uint64_t seed) {
  std::vector<std::map<std::string, d3::tensor>> inputs(count);
  for (size_t i = 0; i < count; ++i)
    for (int in : g.input_layers())
      inputs[i][g.layers[size_t(in)].name] = d3::random_tensor(g.layers[size_t(in)].output_shape, seed + i);
  return inputs;
}

// Single-process answers (one executor over the whole graph).
// The executor is kept for the next call on the same graph (same object, name and size: a test
// may import another model later, possibly at the same address). It runs on two threads: the
// answers are checked after the nodes are done, and fault_test alone checks about a thousand
// (two threads compute the same bits: executor_test two_threads_compute_the_same_bits).
inline std::vector<d3::tensor> expected_outputs(const d3::graph& g, const std::map<std::string, d3::tensor>& input) {
  static std::unique_ptr<d3::executor> local;
  static const d3::graph* local_graph = nullptr;
  static std::pair<std::string, size_t> local_identity;
  const std::pair<std::string, size_t> identity{g.name, g.layers.size()};
  if (!local || local_graph != &g || local_identity != identity) {
    d3::executor_options options;
    options.threads = 2;
    auto e = d3::executor::create(g, {}, options);
    BOOST_REQUIRE_MESSAGE(e.is_ok(), e.message());
    local = std::move(e.value());
    local_graph = &g;
    local_identity = identity;
  }
  std::vector<const d3::tensor*> in;
  for (int l : g.input_layers()) in.push_back(&input.at(g.layers[size_t(l)].name));
  auto out = local->run(in);
  BOOST_REQUIRE_MESSAGE(out.is_ok(), out.message());
  return std::move(out.value());
}

inline void check_answers(const d3::graph& g, const std::vector<std::map<std::string, d3::tensor>>& inputs,
                   const std::vector<d3::request_outcome>& outcomes) {
  BOOST_REQUIRE_EQUAL(outcomes.size(), inputs.size());
  std::set<uint64_t> ids;
  for (size_t i = 0; i < outcomes.size(); ++i) {
    const d3::request_outcome& r = outcomes[i];
    BOOST_CHECK_MESSAGE(r.ok, "request " << r.id << ": " << r.error);
    BOOST_CHECK_MESSAGE(ids.insert(r.id).second, "request id " << r.id << " used twice");
    if (!r.ok) continue;
    const std::vector<d3::tensor> expected = expected_outputs(g, inputs[i]);
    for (size_t k = 0; k < g.outputs.size(); ++k) {
      auto it = r.outputs.find(g.layers[size_t(g.outputs[k])].name);
      BOOST_REQUIRE(it != r.outputs.end());
      BOOST_CHECK_MESSAGE(d3::bitwise_equal(it->second, expected[k]),
                          "request " << r.id << " (input " << i << "): output differs from the single-process run");
    }
  }
}

inline size_t total_weight_bytes(const d3::graph& g, const d3::stage_graph& sg) {
  // Per node, each layer once (both edge nodes hold the tiled run's layers).
  std::set<std::pair<std::string, int>> held;
  for (const d3::stage& s : sg.stages)
    for (int l : s.layers) held.insert({s.node, l});
  size_t bytes = 0;
  for (const auto& [node, l] : held) bytes += d3::weight_bytes(g.layers[size_t(l)]);
  return bytes;
}

// The evaluation testbed's node speeds (emulation): device 0.1, edges 0.5, cloud 4.
struct testbed_cluster : cluster {
  testbed_cluster() : cluster({{"device", 0.1}, {"edge1", 0.5}, {"edge2", 0.5}, {"cloud", 4.0}}) {}
};

// Deployment options of the emulated evaluation testbed: virtual clock, shaped links, WiFi.
inline d3::deployment_options virtual_wifi_options(std::chrono::seconds timeout) {
  d3::deployment_options options;
  options.timeout = timeout;
  options.emulation.clock = d3::clock_mode::virtual_time;
  options.emulation.shaped = true;
  options.emulation.links = d3::testbed::with_uplink("WiFi").value();
  return options;
}

// The deployment migrates to `plan` after its `answers`-th answer from now, once, as a planner
// deciding so would.
inline void migrate_after_answer(d3::deployment& dep, const d3::graph& g, const d3::deployment_plan& plan,
                                 int answers = 1) {
  auto answered = std::make_shared<int>(0);
  dep.set_adaptation(
      [answered, plan, answers](const d3::request_outcome&) -> std::optional<d3::deployment_plan> {
        return ++*answered == answers ? std::optional<d3::deployment_plan>(plan) : std::nullopt;
      },
      &g);
}

inline const d3::stage_report* report_of(const d3::request_outcome& r, int stage_id) {
  for (const d3::stage_report& s : r.stage_reports)
    if (s.stage_id == stage_id) return &s;
  return nullptr;
}


}  // namespace d3_test
