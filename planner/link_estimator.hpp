// A link's bandwidth and latency estimated from the transfers actors report (payload bytes and
// the time from send to arrival), never from the emulation config: time = latency + 8 * bytes /
// bandwidth, fitted by least squares over the most recent transfers, so the estimate follows a
// link that changes (an uplink dropping from WiFi to 3G) within one window.
#pragma once

#include <cstddef>
#include <deque>
#include <utility>

#include "emulation/emulation.hpp"

namespace d3 {

class link_estimator {
 public:
  explicit link_estimator(size_t window = 16) : window_(window < 2 ? 2 : window) {}

  // One observed transfer: `bytes` of payload arrived `milliseconds` after it was sent.
  void observe(size_t bytes, double milliseconds);

  // True once the window holds transfers of at least two sizes (needed to separate latency from
  // bandwidth; light probes of another size provide them on an otherwise uniform link).
  bool ready() const;

  // The least-squares line through the window (latency clamped at >= 0). Precondition: ready().
  link_profile estimate() const;

  size_t samples() const { return samples_.size(); }

 private:
  size_t window_;
  std::deque<std::pair<double, double>> samples_;  // (bytes, milliseconds), oldest first
};

}  // namespace d3
