#include "planner/link_estimator.hpp"

#include <algorithm>

namespace d3 {

void link_estimator::observe(size_t bytes, double milliseconds) {
  samples_.emplace_back(double(bytes), milliseconds);
  while (samples_.size() > window_) samples_.pop_front();
}

bool link_estimator::ready() const {
  if (samples_.size() < 2) return false;
  for (const auto& s : samples_)
    if (s.first != samples_.front().first) return true;
  return false;
}

link_profile link_estimator::estimate() const {
  // time = a + b * bytes; b = 8 / (bandwidth in bit/ms) = 8 / (1000 * Mbit/s).
  const double n = double(samples_.size());
  double sx = 0, sy = 0;
  for (const auto& [x, y] : samples_) sx += x, sy += y;
  const double mx = sx / n, my = sy / n;
  double sxx = 0, sxy = 0;
  for (const auto& [x, y] : samples_) sxx += (x - mx) * (x - mx), sxy += (x - mx) * (y - my);
  const double slope = sxx > 0 ? sxy / sxx : 0;
  const double intercept = my - slope * mx;
  link_profile p;
  p.latency_ms = std::max(0.0, intercept);
  p.bandwidth_mbit_per_s = slope > 0 ? 8.0 / (slope * 1000.0) : 0.0;  // 0: faster than measurable
  return p;
}

size_t long_probe_bytes(size_t small_bytes, double small_ms, size_t larger_bytes, double larger_ms) {
  constexpr double target_ms = 40, max_bytes = 1 << 20, long_enough_ms = 10;
  const double extra_bytes = double(larger_bytes) - double(small_bytes);
  const double extra_ms = larger_ms - small_ms;
  if (extra_bytes <= 0 || extra_ms >= long_enough_ms) return 0;
  const double bytes_per_ms = extra_ms > 0 ? extra_bytes / extra_ms : max_bytes;
  return size_t(std::clamp(bytes_per_ms * target_ms, 4 * double(larger_bytes), max_bytes));
}

}  // namespace d3
