#include "profiling/cpu_limit.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace d3 {

namespace {

std::optional<double> read_number(const std::string& path) {
  std::ifstream in(path);
  double value = 0;
  if (!(in >> value)) return std::nullopt;
  return value;
}

// The tighter of two limits (nullopt: none).
std::optional<double> tighter(std::optional<double> a, std::optional<double> b) {
  if (!a) return b;
  if (!b) return a;
  return std::min(*a, *b);
}

// Quota / period of one cgroup directory, nullopt where unlimited or unreadable.
std::optional<double> v1_limit(const std::string& dir) {
  auto quota = read_number(dir + "/cpu.cfs_quota_us");
  auto period = read_number(dir + "/cpu.cfs_period_us");
  if (!quota || !period || *quota <= 0 || *period <= 0) return std::nullopt;  // -1: unlimited
  return *quota / *period;
}

std::optional<double> v2_limit(const std::string& dir) {
  std::ifstream in(dir + "/cpu.max");
  std::string quota;
  double period = 0;
  if (!(in >> quota >> period) || quota == "max" || period <= 0) return std::nullopt;
  try {
    const double q = std::stod(quota);
    return q > 0 ? std::optional<double>(q / period) : std::nullopt;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// The tightest limit of `path` ("/a/b") and its ancestors under `base`.
template <typename Limit>
std::optional<double> tightest(const std::string& base, std::string path, Limit limit) {
  std::optional<double> best;
  while (true) {
    best = tighter(best, limit(base + path));
    if (path.empty() || path == "/") break;
    const size_t slash = path.find_last_of('/');
    path = slash == 0 || slash == std::string::npos ? std::string("/") : path.substr(0, slash);
  }
  return best;
}

}  // namespace

std::optional<double> cpu_limit_cores(const std::string& proc_self_cgroup, const std::string& cgroup_root) {
  std::optional<double> best;
  std::istringstream lines(proc_self_cgroup);
  std::string line;
  while (std::getline(lines, line)) {
    // hierarchy-id:controllers:path
    const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (controllers.empty()) {  // v2
      best = tighter(best, tightest(cgroup_root, path, v2_limit));
      continue;
    }
    std::istringstream names(controllers);
    std::string name;
    bool cpu = false;
    while (std::getline(names, name, ',')) cpu = cpu || name == "cpu";
    if (!cpu) continue;
    for (const std::string& mount : {controllers, std::string("cpu"), std::string("cpu,cpuacct")})
      if (auto l = tightest(cgroup_root + "/" + mount, path, v1_limit)) {
        best = tighter(best, l);
        break;
      }
  }
  return best;
}

std::optional<double> cpu_limit_cores() {
  std::ifstream in("/proc/self/cgroup");
  std::stringstream text;
  text << in.rdbuf();
  return cpu_limit_cores(text.str(), "/sys/fs/cgroup");
}

double sustained_ms(double wall_ms, double cpu_ms, std::optional<double> limit_cores) {
  if (!limit_cores || *limit_cores <= 0) return wall_ms;
  return std::max(wall_ms, cpu_ms / std::min(1.0, *limit_cores));
}

}  // namespace d3
