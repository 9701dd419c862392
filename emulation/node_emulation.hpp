// The emulated testbed as one node process applies it (emulation, emulation/emulation.hpp): the
// clock mode, one node clock and one link clock per destination node, shared by every stage of
// the process. The app configures it with an (emul, JSON) message at every deploy
// (actors/protocol.hpp); thread-safe.
#pragma once

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <string>

#include "base/send_backlog.hpp"
#include "base/status.hpp"
#include "emulation/emulation.hpp"

namespace d3 {

class node_emulation {
 public:
  void set_identity(const std::string& name, double speed) {
    std::lock_guard<std::mutex> lock(mutex_);
    name_ = name;
    speed_ = speed > 0 ? speed : 1.0;
    compute_ = node_clock(speed_);
  }
  std::string name() {
    std::lock_guard<std::mutex> lock(mutex_);
    return name_;
  }
  // Applies an (emul, JSON) message; resets every clock unless "keep_clocks" is set.
  status configure(const std::string& text);
  clock_mode mode() {
    std::lock_guard<std::mutex> lock(mutex_);
    return mode_;
  }
  // Wall clock: ms since the last configuration.
  double now_ms() {
    std::lock_guard<std::mutex> lock(mutex_);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - epoch_).count();
  }
  double compute(double ready_ms, double cpu_ms) {
    std::lock_guard<std::mutex> lock(mutex_);
    return compute_.compute(ready_ms, cpu_ms);
  }
  // Arrival at `dest_node` of `bytes` sent at `send_ms`; same node or unshaped: `send_ms`.
  double send(const std::string& dest_node, double send_ms, size_t bytes) {
    return on_link(dest_node, send_ms, [&](link_clock& l) { return l.send(send_ms, bytes); });
  }
  // Background bytes (link_clock::send_background) to `dest_node` at `send_ms`, 0 bytes to ask:
  // when that link's background backlog will have arrived; same node or no link: `send_ms`.
  double send_background(const std::string& dest_node, double send_ms, size_t bytes) {
    return on_link(dest_node, send_ms, [&](link_clock& l) { return std::max(send_ms, l.send_background(send_ms, bytes)); });
  }
  // Shared bulk (link_clock::send_shared) to `dest_node` at `send_ms`, 0 bytes to ask: when that
  // link's bulk will have arrived; same node or no link: `send_ms`.
  double send_shared(const std::string& dest_node, double send_ms, size_t bytes) {
    return on_link(dest_node, send_ms, [&](link_clock& l) { return std::max(send_ms, l.send_shared(send_ms, bytes)); });
  }
  // link_clock::promote_background on the link to `dest_node`; same node or no link: `send_ms`.
  double promote_background(const std::string& dest_node, double send_ms) {
    return on_link(dest_node, send_ms, [&](link_clock& l) { return std::max(send_ms, l.promote_background(send_ms)); });
  }
  double speed() {
    std::lock_guard<std::mutex> lock(mutex_);
    return speed_;
  }
  bool is_remote(const std::string& dest_node) {
    std::lock_guard<std::mutex> lock(mutex_);
    return !dest_node.empty() && dest_node != name_;
  }
  std::string describe() {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string out = std::string(mode_ == clock_mode::wall ? "wall" : "virtual") + " clock, speed " +
                      std::to_string(speed_) + ", links:";
    for (const auto& [dest, l] : links_)
      out += " " + dest + " " + std::to_string(l.profile().bandwidth_mbit_per_s) + " Mbit/s " +
             std::to_string(l.profile().latency_ms) + " ms;";
    return out;
  }

 private:
  // `use` applied to the link clock to `dest_node`, under the lock; the same node, or no emulated
  // link to it: `send_ms`.
  template <class F>
  double on_link(const std::string& dest_node, double send_ms, F&& use) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (dest_node.empty() || dest_node == name_) return send_ms;
    auto it = links_.find(dest_node);
    return it == links_.end() ? send_ms : use(it->second);
  }

  std::mutex mutex_;
  std::string name_;
  double speed_ = 1.0;
  clock_mode mode_ = clock_mode::wall;
  node_clock compute_{1.0};
  std::map<std::string, link_clock> links_;
  std::chrono::steady_clock::time_point epoch_ = std::chrono::steady_clock::now();
};

// The process's one instance.
node_emulation& emulation();

// What this process's stages sent to each other node (under either clock the bytes cross the
// real network): a node's heartbeats to its peers share the connections (base/send_backlog.hpp).
send_backlog& peer_backlog();

// What other nodes' stages announced they were sending to this process's stages (the incoming
// notice, actors/protocol.hpp), per sending node: until it has crossed, that node's answers to
// this node's pings wait behind it (measured on a 2 Mbit/s tc-shaped backbone: an edge's 400 KB
// tensors to the cloud held its pongs 1.6 s, the cloud reported the live edge gone, and the app
// failed over and back twice within one bandwidth drop).
send_backlog& incoming_backlog();

}  // namespace d3
