// A node's profile probe (protocol::profile_atom): per-layer compute times of a model fragment
// sent without weights, and what moving tensors costs, measured on this process under its
// emulated clock (emulation/node_emulation.hpp). No actors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace d3 {

// JSON {"layers": {name: ms, ...}, "messages": {...}, "clock": ..., "speed": ...} or
// {"error": text}; see the .cpp for how it measures.
std::string profile_fragment(const std::vector<uint8_t>& payload, int repeats);

}  // namespace d3
