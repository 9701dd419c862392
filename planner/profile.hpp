// Per-layer compute profiles: what each layer costs on one core of the machine that measured it
// (speed 1.0). A node of speed s takes ms / s (the emulated testbed's model).
#pragma once

#include <cstddef>
#include <vector>

#include "kernels/graph.hpp"
#include "base/status.hpp"
#include "codec/tensor_codec.hpp"
#include <array>

namespace d3 {

// What moving tensors costs a node's CPU besides its layers (the virtual clock charges it too):
// encoding the tensor bundle a stage sends each destination, decoding each bundle a stage
// receives, and the region copies of scatter and gather stages. Per message and per MB
// (1e6 bytes) of tensor payload, in the same units as the layer times it travels with.
struct message_costs {
  double encode_ms = 0, encode_ms_per_mb = 0;
  double decode_ms = 0, decode_ms_per_mb = 0;
  double copy_ms_per_mb = 0;
  // The transport's work per MB a node receives (socket reads, TLS decryption, framing: what
  // happens before a bundle reaches its stage), pipelined with the link (emulation/emulation.hpp:
  // link_clock). Measured over a real connection (actors/: deployment::probe_receive_cost), not by
  // measure_message_costs; 0 when not measured: then not modelled.
  double receive_ms_per_mb = 0;
  // A codec's own work (codec/tensor_codec.hpp) per MB of raw float32, on top of encode/decode
  // (index: tensor_codec; raw's is 0). Zero unless measured: then no codec is predicted to cost.
  std::array<double, tensor_codec_count> codec_encode_ms_per_mb{}, codec_decode_ms_per_mb{};

  double encode(size_t bytes) const { return encode_ms + encode_ms_per_mb * double(bytes) * 1e-6; }
  double decode(size_t bytes) const { return decode_ms + decode_ms_per_mb * double(bytes) * 1e-6; }
  double copy(size_t bytes) const { return copy_ms_per_mb * double(bytes) * 1e-6; }
};

struct layer_profile {
  std::vector<double> milliseconds;  // per layer index; 0 for input layers
  message_costs messages;            // zero unless measured (profiling/message_costs.hpp)
  // Per layer index, each codec's encoded size over the raw size of the layer's output on a
  // sample input (profiling/codec_ratios.hpp); 0 where the codec does not apply (u8 on values
  // that are not 8-bit integers). Empty: not measured, every tensor travels raw.
  std::vector<std::array<double, tensor_codec_count>> encoded_fraction;
  // Per layer index, what computing a tile costs beyond its area: a layer computing `share` of
  // its output (halo included) takes milliseconds[l] * (share + tile_overhead[l] * (1 - share))
  // (tile_cost). Measured per tileable run (profiling/tile_overhead.hpp): small tiles run
  // their GEMMs on fewer pixels, copy the crops their halos leave, and pay each operator's fixed
  // work once per tile. 0 (or empty: not measured): a tile costs its area share.
  std::vector<double> tile_overhead;
  double total() const;
  // The fraction of layer `layer`'s whole time a tile computing `share` (0..1] of its output
  // costs: share where no overhead is known, at least half the share and at most 1.
  double tile_cost(int layer, double share) const;
  // encoded_fraction of `layer` under `codec`: 1 for raw, 0 when unknown or not applicable.
  double fraction(int layer, tensor_codec codec) const;
};

// Median over `repeats` single-threaded runs of the whole graph (after one warm-up) of each
// layer's time. Precondition: g prepared.
result<layer_profile> measure_profile(const graph& g, int repeats = 5);

// A profile from FLOPs alone at `gflop_per_s` (for tests and planning before a measurement).
layer_profile profile_from_flops(const graph& g, double gflop_per_s);

}  // namespace d3
