// The CPU a cgroup quota lets this process use (cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us,
// cgroup v2 cpu.max), as containers, CPU-limited services and scripts/netns-cluster.sh set it.
// Why a probe needs it: CFS lets a short burst after an idle spell run at full speed (the quota
// is charged per period and per scheduler tick, so a few ms of work finish before the throttle
// comes), while stages of tens of ms pay the quota. Measured on the namespace cluster: a speed
// probe of 1.3 ms of CPU read 1.2-1.6 ms on a device at 9% of a core, and now and then 10-20 ms,
// which made the planner take the device for nine times faster than it is and move resnet18 onto
// it (47 MB shipped over 8 s) and back.
#pragma once

#include <optional>
#include <string>

namespace d3 {

// The limit in cores (0.09: 9% of one core) of the process's cgroup and its ancestors (the
// tightest), or nullopt when none is set or the files cannot be read.
std::optional<double> cpu_limit_cores();

// The same from the text of /proc/self/cgroup and the cgroup mount root (a directory holding
// cpu/ or cpu,cpuacct/ for v1, or the v2 hierarchy itself): for tests.
std::optional<double> cpu_limit_cores(const std::string& proc_self_cgroup, const std::string& cgroup_root);

// The wall time `cpu_ms` of work takes at a sustained `limit_cores` (a single thread can use at
// most one core), if longer than `wall_ms`, else wall_ms.
double sustained_ms(double wall_ms, double cpu_ms, std::optional<double> limit_cores);

}  // namespace d3
