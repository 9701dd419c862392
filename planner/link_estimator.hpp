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

// The size of a third light probe of a link, after two of `small_bytes` and `larger_bytes` took
// `small_ms` and `larger_ms` from send to arrival; 0: none is needed.
// Why: a real link shaped by a token bucket (tc's tbf and htb) lets a burst of a few ms at its rate
// pass at line speed. 1 and 16 KB both fit in the 2 ms bucket of a 100 Mbit/s link, and an idle
// link then reads as 1-6 Gbit/s (measured on the namespace cluster). So when the larger probe took
// under 10 ms more than the small one, the third is sized to take about 40 ms at the rate the two
// show (the bucket then hides at most ~5% of its time; where they overstated the rate it takes
// longer, which only makes it more accurate), at least 4x the larger probe and at most 1 MB, so
// that probing an idle link never holds the requests up for long. Emulated links have no bucket;
// the third probe then agrees with the first two.
size_t long_probe_bytes(size_t small_bytes, double small_ms, size_t larger_bytes, double larger_ms);

}  // namespace d3
