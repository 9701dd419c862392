// The emulated testbed (emulation, not measurement of real links or devices): links with a
// bandwidth and a one-way latency, nodes with a speed relative to one core of this machine.
// Pure arithmetic on times in milliseconds; the runtime applies it in one of two clocks:
//   wall:    times are real (steady clock); a shaped send is delivered at its arrival time;
//   virtual: times travel with the messages; compute advances a node by its measured thread CPU
//            time divided by its speed, so results do not depend on how many node processes
//            share this machine's cores.
#pragma once

#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/status.hpp"

namespace d3 {

enum class node_role { device, edge, cloud };

// wall: real time, sends delayed by the links; virtual_time: times travel with the messages.
enum class clock_mode { wall, virtual_time };
const char* to_string(clock_mode mode);                              // "wall", "virtual"
result<clock_mode> clock_mode_from_string(const std::string& text);  // errors name the text
const char* to_string(node_role role);
result<node_role> node_role_from_string(const std::string& text);

struct link_profile {
  double bandwidth_mbit_per_s = 0;  // 0: unshaped (infinitely fast)
  double latency_ms = 0;            // one way
};

// Latency + 8 * bytes / bandwidth, in milliseconds.
double transfer_ms(const link_profile& link, size_t bytes);

// One direction of a link. Messages leave in the order they are sent: a message waits for the
// previous one's transmission (bytes / bandwidth) to finish, not for its propagation (latency).
//
// receive_ms_per_mb: the receiving node's own work per MB of message (socket reads, TLS
// decryption, the transport's framing; not the bundle's decoding, which its stage charges), at
// that node's speed. It runs while the bytes arrive, so a message's transmission takes the longer
// of bytes / bandwidth and bytes * receive_ms_per_mb: what a slow node behind a fast link (a
// device receiving the app's input over loopback) spends. 0: not modelled. Bulk and background
// traffic (layer shipments, standby copies) are priced by the bandwidth alone.
class link_clock {
 public:
  explicit link_clock(link_profile profile = {}, double receive_ms_per_mb = 0)
      : profile_(profile), receive_ms_per_mb_(receive_ms_per_mb) {}
  // Arrival time of `bytes` handed to the link at `send_ms`.
  double send(double send_ms, size_t bytes);
  const link_profile& profile() const { return profile_; }
  double receive_ms_per_mb() const { return receive_ms_per_mb_; }
  // A trace step: the new bandwidth and latency (and receiver's work: its speed may have
  // changed) apply from now on; queued messages and the background backlog stay.
  void set_profile(link_profile profile, double receive_ms_per_mb = 0) {
    profile_ = profile;
    receive_ms_per_mb_ = receive_ms_per_mb;
  }

  // Background traffic (standby copies of weights): sent at the lowest priority, it crosses in
  // the link's idle time and delays no message, as behind a strict-priority queue (the one packet
  // that can be in transmission when a message arrives is not modelled). Sends that arrive out of
  // time order (earlier than time already given to the backlog) are not delayed either.
  // Returns background_done_ms() with these bytes queued.
  double send_background(double send_ms, size_t bytes);
  // When the background backlog will have arrived if nothing else is sent (the arrival of its
  // last bytes once it is empty).
  double background_done_ms() const;
  // The backlog is needed now (a migration moves work onto the copies): what is left of it
  // becomes shared bulk from `send_ms`, as a migration's own shipments (send_shared): the
  // requests sharing the link slow down, none waits behind all of it. Its arrival if no message
  // is sent meanwhile. (Sent as one message, 113 MB of convnext_tiny's copies held one request
  // behind them for 6.5 s on a 100 Mbit/s LAN.)
  double promote_background(double send_ms);

  // Shared bulk traffic (a migration's layer shipments, sent in parts): it takes the link's idle
  // time before any background, and shares the link half and half with each message sent while
  // some of it is left, as two TCP flows would: a message of b bytes meeting s bytes of bulk takes
  // (b + min(b, s)) / bandwidth, and carries min(b, s) of the bulk with it. So a shipment delays
  // the requests sharing its link, and they delay it, but none waits behind all of it.
  // Returns shared_done_ms() with these bytes queued (0 bytes: asks).
  double send_shared(double send_ms, size_t bytes);
  // When the shared bulk will have arrived if no message is sent meanwhile (the arrival of its
  // last bytes once it is all carried).
  double shared_done_ms() const;

 private:
  // Carries the bulk, then the background backlog, in the idle time before until_ms.
  void drain_background(double until_ms);
  // Carries `backlog` bytes in the idle time from idle_from (advanced past them) to until_ms;
  // done_ms: the arrival of its last bytes once it is empty (then true).
  bool carry(double& backlog, double& done_ms, double& idle_from, double until_ms) const;
  // Once the bulk promoted copies joined has crossed, their arrival is the background's.
  void settle_promoted();
  // Adds `bytes` sent at send_ms to a class's backlog (unshaped: they arrive after the latency).
  void queue(double& backlog, double& done_ms, double send_ms, size_t bytes);

  link_profile profile_;
  double receive_ms_per_mb_ = 0;
  double free_at_ms_ = 0;  // when the previous transmission ends
  double backlog_bytes_ = 0;         // background bytes not yet carried
  double background_at_ms_ = 0;      // time up to which idle time was given to bulk and backlog
  double background_done_ms_ = 0;    // arrival of the last background bytes carried
  double shared_bytes_ = 0;          // bulk bytes not yet carried
  double shared_done_ms_ = 0;        // arrival of the last bulk bytes carried
  bool promoted_ = false;            // the bulk holds promoted background bytes
};

// A node computes one thing at a time: work starts when its last input has arrived and the node
// is free, and takes cpu_ms / speed.
class node_clock {
 public:
  explicit node_clock(double speed = 1.0) : speed_(speed) {}
  // Finish time of work whose inputs were all there at `ready_ms` and which took `cpu_ms` of
  // thread CPU time on this machine.
  double compute(double ready_ms, double cpu_ms);
  double speed() const { return speed_; }

 private:
  double speed_;
  double free_at_ms_ = 0;
};

// The order of numbered node names: by length, then by name ("edge2" before "edge10").
bool node_name_less(const std::string& a, const std::string& b);

// CPU time the calling thread has used, in milliseconds (CLOCK_THREAD_CPUTIME_ID).
double thread_cpu_ms();
// CPU time every thread of this process has used, in milliseconds (CLOCK_PROCESS_CPUTIME_ID).
double process_cpu_ms();

// This machine's steady clock in milliseconds (CLOCK_MONOTONIC: the same for every process of the
// machine, network namespaces included; its origin differs between machines, so times of two
// machines compare only through an estimated offset, deployment's clock samples).
double monotonic_ms();

// Which CLOCK_MONOTONIC this process reads: its kernel's boot id and its time namespace. Two
// processes with the same (non-empty) domain read the same clock, so their times compare with no
// offset (network namespaces share it; a time namespace or another machine does not). Empty
// when /proc does not tell.
std::string monotonic_clock_domain();

// Virtual clock: the node processes of one machine measure their compute one at a time. Stages
// that run at the same real time (the tiles of a run, on node processes sharing this machine's
// cores) would otherwise inflate each other's thread CPU time through shared cores, caches and
// memory bandwidth (measured: tiles of resnet18 charged ~30% more than when run alone), which
// separate devices do not do. An exclusive flock on a file for the scope; the file is
// $D3_CPU_LOCK, else /tmp/d3-virtual-clock.lock, opened once per process (a flock excludes
// other processes; a process mutex, the threads of this one). `enabled` false, or a file that
// cannot be opened: no lock (the measurement is then as contended as the machine).
class machine_cpu_lock {
 public:
  explicit machine_cpu_lock(bool enabled);
  ~machine_cpu_lock();
  machine_cpu_lock(const machine_cpu_lock&) = delete;
  machine_cpu_lock& operator=(const machine_cpu_lock&) = delete;

 private:
  std::unique_lock<std::mutex> in_process_;
  int fd_ = -1;  // the process's lock file while this holds it
};

// Node speeds and the link between every pair of roles. The defaults are the evaluation testbed
// of the D3 literature with the edges behind the mobile uplink (field.md): device 0.1, edges 0.5,
// cloud 4 times a core; device<->edge by uplink name (CAT1 0.13, 3G 1.1, 4G 5.85, WiFi 18.88
// Mbit/s, 5 ms), edge<->edge 1 Gbit/s 0.2 ms, edge<->cloud 100 Mbit/s 20 ms. D3's own setting
// (edges on the device's LAN, the cloud over the mobile Internet) is a testbed file
// (emulation/testbed_file.hpp).
struct testbed {
  double device_speed = 0.1, edge_speed = 0.5, cloud_speed = 4.0;
  link_profile device_edge{18.88, 5.0};
  link_profile edge_edge{1000.0, 0.2};
  link_profile edge_cloud{100.0, 20.0};
  // Unset: device<->cloud is device<->edge then edge<->cloud in series (the slower bandwidth,
  // latencies added), i.e. the device reaches the cloud through its edge network.
  std::optional<link_profile> device_cloud;
  std::string uplink = "WiFi";  // the name of this link setting (an uplink or a scenario), for logs

  static result<testbed> with_uplink(const std::string& name);  // CAT1, 3G, 4G, WiFi
  double speed_of(node_role role) const;
  // The link from a node of role `from` to one of role `to`; same-role device or cloud traffic
  // stays inside the node (unshaped).
  link_profile link(node_role from, node_role to) const;

  // The role pairs a file may name: "device-edge", "edge-edge", "edge-cloud", "device-cloud".
  static const std::vector<std::string>& link_names();
  // The lowest bandwidth of the shaped links (0 when none is shaped).
  double slowest_bandwidth_mbit() const;
  // Sets the link of a role pair by name; errors name an unknown pair.
  status set_link(const std::string& pair, const link_profile& profile);
};

}  // namespace d3
