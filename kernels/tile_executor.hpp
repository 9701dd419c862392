// Runs the tiles of a tiled run (kernels/tiling.hpp). Operators are created at create(), one per
// run layer and distinct padding combination among the tiles (weights packed once per
// combination, never per request); each tile's buffers are allocated at create() too.
#pragma once

#include <memory>
#include <vector>

#include "kernels/executor.hpp"
#include "kernels/tiling.hpp"

namespace d3 {

class tile_executor {
 public:
  ~tile_executor();
  tile_executor(const tile_executor&) = delete;
  tile_executor& operator=(const tile_executor&) = delete;

  // Precondition: g prepared (prepare_for_inference), run and tiles from make_tiled_run/plan_tiles.
  // `only_tiles`: indices of the tiles this executor will run (a node runs one); empty means all.
  static result<std::unique_ptr<tile_executor>> create(const graph& g, const tiled_run& run,
                                                       std::vector<tile_geometry> tiles,
                                                       std::vector<int> only_tiles = {},
                                                       executor_options options = {});

  int tile_count() const;
  const tile_geometry& geometry(int tile) const;
  // Tensors the run reads, in tiled_run::inputs order, and their names.
  const std::vector<std::string>& input_names() const;

  // Runs tile `tile` given its input regions: inputs[i] holds geometry(tile).computed[run.inputs[i]]
  // of input i (shape checked). Returns the tile's output region.
  result<tensor> run_tile(int tile, const std::vector<const tensor*>& input_regions);

  // Whole inputs in, whole output out: scatters the input regions, runs every tile, gathers.
  result<tensor> run(const std::vector<const tensor*>& whole_inputs);

  // Distinct operators created (for tests: reuse across tiles with equal padding).
  int operator_count() const;

 private:
  tile_executor() = default;
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace d3
