// The one send path for tensor bundles, used by the stage actors (their outputs) and the app (a
// request's inputs): group the tensors by destination along the routes, encode one bundle per
// destination, stamp each with its emulated arrival and send it. Protocol: actors/protocol.hpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "actors/protocol.hpp"
#include "base/status.hpp"
#include "emulation/emulation.hpp"
#include "kernels/tensor.hpp"
#include "schema/bundle.hpp"

namespace d3 {

// Where each tensor goes (tensor name -> destinations) and on which node each destination runs
// (picks the emulated link; a destination missing here is on no known node and unshaped).
struct bundle_routes {
  std::map<std::string, std::vector<protocol::data_handle>> destinations;
  std::map<protocol::data_handle, std::string> nodes;
  std::map<std::pair<std::string, protocol::data_handle>, tensor_codec> codecs;  // raw when absent

  // Adds `dest` on `node` for `tensor`, sent with `codec` (idempotent; the last codec holds).
  void add(const std::string& tensor, const protocol::data_handle& dest, const std::string& node,
           tensor_codec codec = tensor_codec::raw);
};

// One bundle to one destination, holding every routed tensor it reads.
struct outgoing_bundle {
  protocol::data_handle dest;
  std::string node;
  size_t payload_bytes = 0;  // tensor data bytes as encoded: what the emulated link carries
  protocol::bytes message;   // encoded Cap'n Proto TensorBundle
  double arrival_ms = 0;     // emulated arrival (stamp_arrivals)
};

// Encodes one bundle per destination of `routes` for request `id` under `plan_version`. Every
// routed tensor must be in `tensors`; errors name the missing tensor or the bundle too large.
result<std::vector<outgoing_bundle>> encode_bundles(const bundle_routes& routes,
                                                    const std::map<std::string, tensor>& tensors, uint64_t id,
                                                    uint32_t plan_version);

// Sets each bundle's arrival to `link(node, payload bytes)` (the emulated link from the sender,
// leaving at the time the caller's clock gives) and, under the virtual clock, stamps it into the
// message.
status stamp_arrivals(std::vector<outgoing_bundle>& bundles, clock_mode mode,
                      const std::function<double(const std::string& node, size_t bytes)>& link);

// Sends every bundle as (data, message). Under the wall clock a bundle whose arrival lies ahead of
// `depart_ms` is delayed by the difference (the link's latency and transfer time); under the
// virtual clock it leaves now and carries its virtual arrival.
template <class Self>
void send_bundles(Self* self, std::vector<outgoing_bundle>& bundles, double depart_ms, clock_mode mode) {
  for (outgoing_bundle& b : bundles) {
    const double delay_ms = b.arrival_ms - depart_ms;
    if (mode == clock_mode::wall && delay_ms > 0.001)
      self->delayed_send(b.dest, std::chrono::microseconds(int64_t(delay_ms * 1000.0)), protocol::data_atom::value,
                         std::move(b.message));
    else
      self->send(b.dest, protocol::data_atom::value, std::move(b.message));
  }
}

}  // namespace d3
