// What tiles cost beyond their area (planner/profile.hpp: layer_profile::tile_overhead), measured
// on this machine: a tile runs its GEMMs on fewer pixels, copies the crops its halos leave and
// pays each operator's fixed work once per tile, so pricing it by its share of the output's area
// put DenseNet-121's first tiled run 14% under what its tiles took (d3-bench tiling, one thread,
// one executor per tile), ResNet-18's layer1..layer2 3%, and VGG-16's features 2% over.
#pragma once

#include <map>
#include <string>

#include "base/status.hpp"
#include "kernels/graph.hpp"
#include "kernels/tensor.hpp"
#include "planner/profile.hpp"

namespace d3 {

// Fills profile.tile_overhead (one entry per layer): the tileable layers of `g` in runs of one
// output resolution (taken greedily in topological order: from the first layer not yet covered,
// the longest valid run within longest_tileable_run whose layers keep its first layer's height
// and width), each cut 2x2 (2x1 or 1x2 where the output has one row or column; runs of a 1x1
// output are skipped), its tiles run by one executor each, as nodes run them, alternating with the
// run computed whole, over `repeats` (>= 1) rounds after one warm-up. With R the tiles' summed time over the whole run's
// (medians), W the run's layers' profile times summed and P their area-priced sum over the tiles
// (profile.milliseconds times each layer's share per tile), the overhead a of the run's layers
// solves R * W = P + a * (n * W - P) for n tiles, kept within [-0.5, 0.9]: the tiles' measured
// cost in the profile's terms, so machine drift between the profile and this cancels. Layers of
// no measured run get 0. `tensors`: tensors_of_sample_run(g) (the run's inputs are taken from
// it). Precondition: profile.milliseconds has one entry per layer of g (prepared).
status measure_tile_overheads(const graph& g, const std::map<std::string, tensor>& tensors, layer_profile& profile,
                              int repeats);

}  // namespace d3
