#include "emulation/emulation.hpp"

#include <chrono>

#include "emulation/testbed_file.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include <algorithm>
#include <cmath>

namespace d3 {

const char* to_string(node_role role) {
  switch (role) {
    case node_role::device: return "device";
    case node_role::edge: return "edge";
    case node_role::cloud: return "cloud";
  }
  return "unknown";
}

result<node_role> node_role_from_string(const std::string& text) {
  if (text == "device") return node_role::device;
  if (text == "edge") return node_role::edge;
  if (text == "cloud") return node_role::cloud;
  return status::error("unknown node role '" + text + "' (device, edge or cloud)");
}

const char* to_string(clock_mode mode) { return mode == clock_mode::virtual_time ? "virtual" : "wall"; }

result<clock_mode> clock_mode_from_string(const std::string& text) {
  if (text == "wall") return clock_mode::wall;
  if (text == "virtual") return clock_mode::virtual_time;
  return status::error("unknown clock '" + text + "' (wall or virtual)");
}

double transfer_ms(const link_profile& link, size_t bytes) {
  const double transmission = link.bandwidth_mbit_per_s > 0 ? 8.0 * double(bytes) / (link.bandwidth_mbit_per_s * 1e3) : 0.0;
  return link.latency_ms + transmission;
}

bool link_clock::carry(double& backlog, double& done_ms, double& idle_from, double until_ms) const {
  if (backlog > 0 && until_ms > idle_from) {
    if (profile_.bandwidth_mbit_per_s <= 0) {  // unshaped: no time at all
      backlog = 0;
    } else {
      const double bytes_per_ms = profile_.bandwidth_mbit_per_s * 1e3 / 8.0;
      const double carried = std::min(backlog, (until_ms - idle_from) * bytes_per_ms);
      backlog -= carried;
      idle_from += carried / bytes_per_ms;
      if (backlog <= 0.5) backlog = 0;
    }
    if (backlog == 0) done_ms = idle_from + profile_.latency_ms;
  }
  return backlog == 0;
}

void link_clock::drain_background(double until_ms) {
  double idle_from = std::max(free_at_ms_, background_at_ms_);
  if (carry(shared_bytes_, shared_done_ms_, idle_from, until_ms))  // the bulk first
    carry(backlog_bytes_, background_done_ms_, idle_from, until_ms);
  background_at_ms_ = std::max(background_at_ms_, until_ms);
  settle_promoted();
}

void link_clock::settle_promoted() {
  if (!promoted_ || shared_bytes_ > 0) return;
  background_done_ms_ = std::max(background_done_ms_, shared_done_ms_);
  promoted_ = false;
}

void link_clock::queue(double& backlog, double& done_ms, double send_ms, size_t bytes) {
  drain_background(send_ms);
  if (profile_.bandwidth_mbit_per_s <= 0) {  // unshaped: no time on the link
    done_ms = std::max(done_ms, send_ms + profile_.latency_ms);
    return;
  }
  backlog += double(bytes);
}

double link_clock::send_shared(double send_ms, size_t bytes) {
  queue(shared_bytes_, shared_done_ms_, send_ms, bytes);
  return shared_done_ms();
}

double link_clock::shared_done_ms() const {
  if (shared_bytes_ == 0) return shared_done_ms_;
  const double bytes_per_ms = profile_.bandwidth_mbit_per_s * 1e3 / 8.0;
  return std::max(free_at_ms_, background_at_ms_) + shared_bytes_ / bytes_per_ms + profile_.latency_ms;
}

double link_clock::send_background(double send_ms, size_t bytes) {
  queue(backlog_bytes_, background_done_ms_, send_ms, bytes);
  return background_done_ms();
}

double link_clock::promote_background(double send_ms) {
  drain_background(send_ms);
  if (backlog_bytes_ == 0) return background_done_ms_;
  shared_bytes_ += backlog_bytes_;
  backlog_bytes_ = 0;
  promoted_ = true;
  return background_done_ms();
}

double link_clock::background_done_ms() const {
  // Promoted copies end with the bulk they joined.
  if (backlog_bytes_ == 0) return promoted_ ? std::max(background_done_ms_, shared_done_ms()) : background_done_ms_;
  const double bytes_per_ms = profile_.bandwidth_mbit_per_s * 1e3 / 8.0;
  // The bulk goes first.
  return std::max(free_at_ms_, background_at_ms_) + (shared_bytes_ + backlog_bytes_) / bytes_per_ms + profile_.latency_ms;
}

double link_clock::send(double send_ms, size_t bytes) {
  drain_background(send_ms);
  const double start = std::max(send_ms, free_at_ms_);
  double transmission =
      std::max(transfer_ms({profile_.bandwidth_mbit_per_s, 0.0}, bytes), double(bytes) * 1e-6 * receive_ms_per_mb_);
  // Bulk left at the start shares the transmission half and half (see send_shared); an unshaped
  // link never holds any.
  const double shared = std::min(shared_bytes_, double(bytes));
  if (shared > 0) {
    const double shared_ms = shared * 8.0 / (profile_.bandwidth_mbit_per_s * 1e3);
    transmission += shared_ms;
    shared_bytes_ -= shared;
    if (shared_bytes_ <= 0.5) {
      shared_bytes_ = 0;
      shared_done_ms_ = start + 2 * shared_ms + profile_.latency_ms;
    }
  }
  free_at_ms_ = start + transmission;
  settle_promoted();
  return free_at_ms_ + profile_.latency_ms;
}

double node_clock::compute(double ready_ms, double cpu_ms) {
  const double start = std::max(ready_ms, free_at_ms_);
  free_at_ms_ = start + cpu_ms / speed_;
  return free_at_ms_;
}

bool node_name_less(const std::string& a, const std::string& b) {
  return a.size() != b.size() ? a.size() < b.size() : a < b;
}

namespace {
double clock_ms(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) / 1e6;
}
}  // namespace

double thread_cpu_ms() { return clock_ms(CLOCK_THREAD_CPUTIME_ID); }

double process_cpu_ms() { return clock_ms(CLOCK_PROCESS_CPUTIME_ID); }

double monotonic_ms() {
  // steady_clock is CLOCK_MONOTONIC here: the same clock as the runtime's steady time points.
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string monotonic_clock_domain() {
  std::ifstream boot("/proc/sys/kernel/random/boot_id");
  std::string id;
  if (!(boot >> id) || id.empty()) return "";
  // Kernels before 5.6 have no time namespaces (no such link): the boot id alone decides.
  char ns[128];
  const ssize_t n = readlink("/proc/self/ns/time", ns, sizeof ns - 1);
  return n > 0 ? id + "/" + std::string(ns, size_t(n)) : id;
}

namespace {

std::mutex cpu_lock_mutex;

// The lock file, opened on first use and kept open for the process's lifetime (-1: none).
int cpu_lock_file() {
  static const int fd = [] {
    const char* path = std::getenv("D3_CPU_LOCK");
    return ::open(path && *path ? path : "/tmp/d3-virtual-clock.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  }();
  return fd;
}

// Whether the process that last took the lock (its pid, written into the lock file) is stopped
// (SIGSTOP, or a debugger): false when the file names no process or it cannot be read.
bool lock_holder_stopped(int fd) {
  char text[32] = {};
  const ssize_t n = ::pread(fd, text, sizeof text - 1, 0);
  if (n <= 0) return false;
  const long pid = std::strtol(text, nullptr, 10);
  if (pid <= 0 || pid == long(::getpid())) return false;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE* f = std::fopen(path, "r");
  if (!f) return false;
  char stat[512] = {};
  const size_t got = std::fread(stat, 1, sizeof stat - 1, f);
  std::fclose(f);
  // "pid (comm) S ...": the state follows the last ')' (comm may hold spaces and parentheses).
  const char* close = std::strrchr(stat, ')');
  if (got == 0 || !close || close[1] != ' ') return false;
  return close[2] == 'T' || close[2] == 't';
}

}  // namespace

machine_cpu_lock::machine_cpu_lock(bool enabled) {
  if (!enabled) return;
  in_process_ = std::unique_lock<std::mutex>(cpu_lock_mutex);
  const int fd = cpu_lock_file();
  if (fd < 0) return;
  // Not a blocking flock: a node frozen (SIGSTOP) while it holds the lock would hold every other
  // node of the machine with it, and the app, which fails over from the frozen node, would see
  // the whole emulated cluster stop (measured: d3-bench chaos froze edge1 under the virtual
  // clock and lost the remaining 75 of 150 requests to their timeouts). A waiter polls, and every
  // 50 ms looks at the holder: a stopped one is passed by, this measurement then contended.
  // Separate machines share no such lock, so nothing of the emulated testbed is lost by it.
  auto next_check = std::chrono::steady_clock::now() + std::chrono::milliseconds(50);
  for (int attempt = 0;; ++attempt) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) break;
    if (errno != EWOULDBLOCK && errno != EINTR) return;
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_check) {
      if (lock_holder_stopped(fd)) return;
      next_check = now + std::chrono::milliseconds(50);
    }
    // The first waits short (a lock is often released within a stage's decode), then 0.5 ms.
    struct timespec pause = {0, attempt < 20 ? 50'000 : 500'000};
    ::nanosleep(&pause, nullptr);
  }
  fd_ = fd;
  // The holder's pid, for waiters to see whether it is stopped (no waiter writes). It ends at a
  // newline, so a shorter pid over a longer one reads right without truncating the file (one
  // system call per lock: this runs around every decode and compute under the virtual clock).
  char text[32];
  const int len = std::snprintf(text, sizeof text, "%ld\n", long(::getpid()));
  (void)::pwrite(fd, text, size_t(len), 0);
}

machine_cpu_lock::~machine_cpu_lock() {
  if (fd_ >= 0) ::flock(fd_, LOCK_UN);  // the process mutex unlocks after this
}

result<testbed> testbed::with_uplink(const std::string& name) {
  // The rates are the first testbed's scenarios (one definition of them: emulation/testbed_file).
  const testbed_file mobile = testbed_file::mobile_edge();
  const testbed_scenario* scenario = mobile.scenario(name);
  if (!scenario) return status::error("unknown uplink '" + name + "' (CAT1, 3G, 4G or WiFi)");
  testbed t;
  t.device_edge = scenario->links.at("device-edge");
  t.uplink = name;
  return t;
}

double testbed::speed_of(node_role role) const {
  switch (role) {
    case node_role::device: return device_speed;
    case node_role::edge: return edge_speed;
    case node_role::cloud: return cloud_speed;
  }
  return 1.0;
}

link_profile testbed::link(node_role from, node_role to) const {
  auto is = [&](node_role a, node_role b) { return (from == a && to == b) || (from == b && to == a); };
  if (is(node_role::device, node_role::edge)) return device_edge;
  if (is(node_role::edge, node_role::cloud)) return edge_cloud;
  if (is(node_role::edge, node_role::edge)) return edge_edge;
  if (is(node_role::device, node_role::cloud)) {
    if (device_cloud) return *device_cloud;
    return {std::min(device_edge.bandwidth_mbit_per_s, edge_cloud.bandwidth_mbit_per_s),
            device_edge.latency_ms + edge_cloud.latency_ms};
  }
  return {};  // device-device or cloud-cloud: one machine
}

double testbed::slowest_bandwidth_mbit() const {
  double slowest = 0;
  for (const link_profile& l : {device_edge, edge_edge, edge_cloud, link(node_role::device, node_role::cloud)})
    if (l.bandwidth_mbit_per_s > 0 && (slowest == 0 || l.bandwidth_mbit_per_s < slowest)) slowest = l.bandwidth_mbit_per_s;
  return slowest;
}

const std::vector<std::string>& testbed::link_names() {
  static const std::vector<std::string> names = {"device-edge", "edge-edge", "edge-cloud", "device-cloud"};
  return names;
}

status testbed::set_link(const std::string& pair, const link_profile& profile) {
  if (pair == "device-edge") device_edge = profile;
  else if (pair == "edge-edge") edge_edge = profile;
  else if (pair == "edge-cloud") edge_cloud = profile;
  else if (pair == "device-cloud") device_cloud = profile;
  else return status::error("unknown link '" + pair + "' (device-edge, edge-edge, edge-cloud or device-cloud)");
  return status::ok();
}

}  // namespace d3
