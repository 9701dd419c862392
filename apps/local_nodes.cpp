#include "apps/local_nodes.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "actors/transport.hpp"
#include "security/tls_identity.hpp"

namespace d3 {

namespace {

using namespace std::chrono_literals;

// Every node process alive, for the exit and signal paths (which run no destructors). A fixed
// array of lock-free atomics: the signal handler may read it at any moment.
constexpr int max_tracked = 256;
std::atomic<pid_t> tracked[max_tracked];

void track(pid_t pid) {
  for (std::atomic<pid_t>& slot : tracked) {
    pid_t empty = 0;
    if (slot.compare_exchange_strong(empty, pid)) return;
  }
}

void untrack(pid_t pid) {
  for (std::atomic<pid_t>& slot : tracked) {
    pid_t expected = pid;
    slot.compare_exchange_strong(expected, 0);
  }
}

// Async-signal-safe: only kill(2).
void terminate_tracked() {
  for (std::atomic<pid_t>& slot : tracked) {
    const pid_t pid = slot.load();
    if (pid > 0) ::kill(pid, SIGTERM);
  }
}

extern "C" void terminate_nodes_and_reraise(int signal_number) {
  terminate_tracked();
  ::signal(signal_number, SIG_DFL);
  ::raise(signal_number);
}

extern "C" void terminate_nodes_at_exit() { terminate_tracked(); }

void install_cleanup_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::atexit(terminate_nodes_at_exit);
    for (int signal_number : {SIGINT, SIGTERM, SIGHUP}) {
      struct sigaction current {};
      ::sigaction(signal_number, nullptr, &current);
      if (current.sa_handler == SIG_IGN) continue;  // e.g. started with nohup: keep ignoring it
      struct sigaction action {};
      action.sa_handler = terminate_nodes_and_reraise;
      sigemptyset(&action.sa_mask);
      ::sigaction(signal_number, &action, nullptr);
    }
  });
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The log's last line, to quote in an error.
std::string last_line(const std::string& text) {
  std::string t = text;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
  const size_t at = t.rfind('\n');
  return at == std::string::npos ? t : t.substr(at + 1);
}

// A waitpid status in words.
std::string how_it_ended(int wait_status) {
  return WIFSIGNALED(wait_status) ? "killed by signal " + std::to_string(WTERMSIG(wait_status))
                                  : "exited with code " + std::to_string(WEXITSTATUS(wait_status));
}

// A double as CAF's INI parser takes it for a double option: "4" parses as an integer and is
// silently not bound to a double member (the node would keep its default speed 1), "4.0" is.
std::string ini_double(double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.15g", value);
  std::string text = buffer;
  if (text.find_first_of(".eEn") == std::string::npos) text += ".0";
  return text;
}

}  // namespace

std::string sibling_executable(const std::string& name) {
  char buffer[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buffer, sizeof buffer - 1);
  if (n <= 0) return "";
  std::string self(buffer, size_t(n));
  const size_t slash = self.rfind('/');
  return slash == std::string::npos ? name : self.substr(0, slash + 1) + name;
}

result<std::unique_ptr<local_nodes>> local_nodes::start(const std::string& node_binary, const std::string& folder,
                                                        const std::vector<local_node_spec>& specs,
                                                        std::chrono::milliseconds startup_timeout,
                                                        const local_tls& tls) {
  if (::access(node_binary.c_str(), X_OK) != 0)
    return status::error("cannot run d3-node '" + node_binary + "': " + std::strerror(errno) +
                         " (build it, or give its path with --node-binary)");
  install_cleanup_once();
  std::unique_ptr<local_nodes> nodes(new local_nodes());
  nodes->node_binary_ = node_binary;
  nodes->tls_ = tls;
  for (const local_node_spec& spec : specs) {
    process p;
    p.spec = spec;
    p.ini = folder + "/" + spec.name + ".ini";
    p.log = folder + "/" + spec.name + ".log";
    nodes->processes_.push_back(p);
  }
  // All start at once, then we wait for all: the start-up times overlap.
  for (process& p : nodes->processes_) D3_RETURN_IF_ERROR(nodes->launch(node_binary, p));
  const auto deadline = std::chrono::steady_clock::now() + startup_timeout;
  for (process& p : nodes->processes_) {
    auto port = nodes->wait_listening(p, deadline);
    if (!port) return port.error();  // the destructor stops the nodes already started
    nodes->endpoints_.push_back({p.spec.name, "127.0.0.1", port.value()});
  }
  return nodes;
}

status local_nodes::launch(const std::string& node_binary, process& p, uint16_t port) {
  {
    // Port 0: the node binds any free loopback port and prints it. Strings double-quoted (CAF INI).
    std::ofstream ini(p.ini, std::ios::trunc);
    ini << "; written by d3-bench: a node of a local benchmark cluster\n[d3]\nname=\"" << p.spec.name << "\"\nrole=\""
        << p.spec.role << "\"\nhost=\"127.0.0.1\"\nport=" << port << "\nspeed=" << ini_double(p.spec.speed) << "\n"
        << (p.spec.models.empty() ? std::string()
                                  : "models=\"" + p.spec.models + "\"\nmodel_seed=" + std::to_string(p.spec.model_seed) + "\n")
        << tls_ini_key(tls_.node(p.spec.name)) << tls_ini_section(tls_.node(p.spec.name));
    if (!ini) return status::error("cannot write node config '" + p.ini + "': " + std::strerror(errno));
  }
  // Everything the child needs is built before fork(): after it, only async-signal-safe calls.
  const std::string config = "--config-file=" + p.ini;
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return status::error("cannot start d3-node " + p.spec.name + ": fork: " + std::strerror(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl took effect
    const int log = ::open(p.log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int null = ::open("/dev/null", O_RDONLY);
    if (log >= 0) {
      ::dup2(log, 1);
      ::dup2(log, 2);
    }
    if (null >= 0) ::dup2(null, 0);
    ::execl(node_binary.c_str(), node_binary.c_str(), config.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  p.pid = pid;
  track(pid);
  return status::ok();
}

result<uint16_t> local_nodes::wait_listening(process& p, std::chrono::steady_clock::time_point deadline) {
  // The node prints its port, then the speed it runs at: the speed is checked too, as a config
  // value CAF does not bind is silently left at its default.
  const std::string marker = "d3-node " + p.spec.name + " (" + p.spec.role + ") listening on 127.0.0.1:";
  const std::string speed_marker = "d3-node " + p.spec.name + ": emulated speed ";
  for (;;) {
    const std::string text = read_text(p.log);
    const size_t at = text.find(marker), speed_at = text.find(speed_marker);
    if (at != std::string::npos && speed_at != std::string::npos && text.find('\n', speed_at) != std::string::npos) {
      const int port = std::atoi(text.c_str() + at + marker.size());
      if (port <= 0 || port > 65535)
        return status::error("d3-node " + p.spec.name + " printed a bad listening line: " + last_line(text));
      const double speed = std::strtod(text.c_str() + speed_at + speed_marker.size(), nullptr);
      if (std::fabs(speed - p.spec.speed) > 1e-6 * std::fabs(p.spec.speed))
        return status::error("d3-node " + p.spec.name + " runs at emulated speed " + ini_double(speed) + ", not " +
                             ini_double(p.spec.speed) + " (config " + p.ini + ")");
      return uint16_t(port);
    }
    int wait_status = 0;
    if (::waitpid(p.pid, &wait_status, WNOHANG) == p.pid) {
      untrack(p.pid);
      p.pid = -1;  // reaped: stop() must not signal a reused pid
      return status::error("d3-node " + p.spec.name + " exited at start-up (log " + p.log + "): " + last_line(text));
    }
    if (std::chrono::steady_clock::now() >= deadline)
      return status::error("d3-node " + p.spec.name + " did not report a listening port in time (log " + p.log + ")");
    std::this_thread::sleep_for(20ms);
  }
}

void local_nodes::stop() {
  for (process& p : processes_)
    if (p.pid > 0) ::kill(p.pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  for (process& p : processes_) {
    if (p.pid <= 0) continue;
    bool reaped = false;
    int wait_status = 0;
    while (!reaped && std::chrono::steady_clock::now() < deadline) {
      reaped = ::waitpid(p.pid, &wait_status, WNOHANG) == p.pid;
      if (!reaped) std::this_thread::sleep_for(10ms);
    }
    // SIGTERM ends a node with 0: anything else (a sanitizer's report, a crash) is printed with
    // the end of its log.
    if (reaped && !(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0)) {
      const std::string text = read_text(p.log);
      std::fprintf(stderr, "d3-node %s %s at shutdown (log %s):\n%s\n", p.spec.name.c_str(), how_it_ended(wait_status).c_str(),
                   p.log.c_str(), text.substr(text.size() > 4000 ? text.size() - 4000 : 0).c_str());
    }
    if (!reaped) {  // ignored SIGTERM (hung): insist
      ::kill(p.pid, SIGKILL);
      ::waitpid(p.pid, nullptr, 0);
    }
    untrack(p.pid);
    p.pid = -1;
  }
}

std::vector<std::string> local_nodes::exited() {
  std::vector<std::string> gone;
  for (process& p : processes_) {
    if (p.pid <= 0) continue;
    int wait_status = 0;
    if (::waitpid(p.pid, &wait_status, WNOHANG) != p.pid) continue;
    untrack(p.pid);
    p.pid = -1;
    gone.push_back("d3-node " + p.spec.name + " " + how_it_ended(wait_status) + " (log " + p.log + ")");
  }
  return gone;
}

local_nodes::~local_nodes() { stop(); }

std::string local_nodes::log_path(const std::string& name) const {
  for (const process& p : processes_)
    if (p.spec.name == name) return p.log;
  return "";
}

tls_settings local_tls::app() const { return node("app"); }

tls_settings local_tls::node(const std::string& name) const {
  return enabled ? cluster_identity(dir, name) : tls_settings::off();
}

result<local_tls> local_tls_from_option(const std::string& given) {
  local_tls tls;
  if (given == "false") {
    tls.enabled = false;
    return tls;
  }
  if (given.empty()) {
    const std::string self = sibling_executable("");
    tls.dir = self + "../certs";
  } else {
    tls.dir = given;
  }
  if (auto checked = check_tls_identity(tls.app(), "--tls " + tls.dir); !checked)
    return status::error(checked.message() + (given.empty() ? " (the build makes build/certs; or give --tls DIR or --tls false)" : ""));
  return tls;
}

void configure_local_app(caf::actor_system_config& cfg, const local_tls& tls, const std::string& who) {
  protocol::configure_process(cfg);
  if (!tls.enabled) std::fprintf(stderr, "%s\n", plaintext_warning(who).c_str());
  transport::configure_tls(cfg, tls.app());
}

namespace {

// `given`, or the d3-node next to this executable when empty, checked to be executable; the error
// says how to give another one (--node-binary).
result<std::string> node_binary_or_sibling(const std::string& given) {
  const std::string path = given.empty() ? sibling_executable("d3-node") : given;
  if (::access(path.c_str(), X_OK) != 0)
    return status::error("cannot run d3-node '" + path + "' (build it, or give its path with --node-binary)");
  return path;
}

}  // namespace

status resolve_local_cluster(std::string& node_binary, const std::string& tls_option, local_tls& tls) {
  auto node = node_binary_or_sibling(node_binary);
  if (!node) return node.error();
  node_binary = node.value();
  auto resolved = local_tls_from_option(tls_option);
  if (!resolved) return resolved.error();
  tls = resolved.value();
  return status::ok();
}

deployment_options virtual_clock_options(const testbed& links, long timeout_ms) {
  deployment_options options;
  options.timeout = std::chrono::milliseconds(timeout_ms);
  options.emulation.clock = clock_mode::virtual_time;
  options.emulation.shaped = true;
  options.emulation.links = links;
  options.emulation.app_node = "device";
  return options;
}

local_nodes::process* local_nodes::find(const std::string& name) {
  for (process& p : processes_)
    if (p.spec.name == name) return &p;
  return nullptr;
}

status local_nodes::signal(const std::string& name, int sig) {
  process* p = find(name);
  if (!p) return status::error("no local node named '" + name + "'");
  if (p->pid <= 0) return status::error("node '" + name + "' is not running");
  if (::kill(p->pid, sig) != 0) return status::error("cannot signal node '" + name + "': " + std::strerror(errno));
  if (sig == SIGKILL) {
    ::waitpid(p->pid, nullptr, 0);
    untrack(p->pid);
    p->pid = -1;
  }
  return status::ok();
}

status local_nodes::restart(const std::string& name, std::chrono::milliseconds startup_timeout) {
  D3_RETURN_IF_ERROR(relaunch(name));
  return wait_relaunched(name, startup_timeout);
}

status local_nodes::relaunch(const std::string& name) {
  process* p = find(name);
  if (!p) return status::error("no local node named '" + name + "'");
  if (p->pid > 0) return status::error("node '" + name + "' is still running");
  uint16_t port = 0;
  for (const node_endpoint& e : endpoints_)
    if (e.name == name) port = e.port;
  std::remove(p->log.c_str());  // the new process's listening line, not the old one's
  return launch(node_binary_, *p, port);
}

status local_nodes::wait_relaunched(const std::string& name, std::chrono::milliseconds startup_timeout) {
  process* p = find(name);
  if (!p) return status::error("no local node named '" + name + "'");
  uint16_t port = 0;
  for (const node_endpoint& e : endpoints_)
    if (e.name == name) port = e.port;
  auto listening = wait_listening(*p, std::chrono::steady_clock::now() + startup_timeout);
  if (!listening) return listening.error();
  if (listening.value() != port)
    return status::error("node '" + name + "' came back on port " + std::to_string(listening.value()) + ", not " +
                         std::to_string(port));
  return status::ok();
}

result<size_t> local_nodes::rss_bytes(const std::string& name) const {
  for (const process& p : processes_) {
    if (p.spec.name != name) continue;
    if (p.pid <= 0) return status::error("node '" + name + "' is not running");
    std::ifstream status_file("/proc/" + std::to_string(p.pid) + "/status");
    std::string line;
    while (std::getline(status_file, line))
      if (line.rfind("VmRSS:", 0) == 0) return size_t(std::strtoull(line.c_str() + 6, nullptr, 10)) * 1024;
    return status::error("no VmRSS for node '" + name + "'");
  }
  return status::error("no local node named '" + name + "'");
}

}  // namespace d3
