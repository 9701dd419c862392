// Failover without a planner: a plan moved off nodes that are gone, onto the nodes left, keeping
// everything else where it was. Pure logic on the plan and the graph (the runtime calls it when a
// node is lost and no planner is given; a planner re-plans instead).
#pragma once

#include <map>
#include <set>
#include <string>

#include "base/status.hpp"
#include "kernels/graph.hpp"
#include "plan/plan.hpp"

namespace d3 {

// `available`: the nodes left, name -> role ("device", "edge", "cloud"). A segment on a node that
// is gone moves to the first available node of its role (by name: edge1 before edge2), else an
// edge takes a cloud's work and the cloud an edge's, else the device. A tiled run keeps its
// available tile nodes and is re-split over them (R x 1, else 1 x C, uniform tiles); with one or
// none left it is dropped and its segment runs it whole. Scatter and gather nodes that are gone
// fall back to their defaults. The result is checked with build_stage_graph; errors name what
// cannot be placed (no node of any usable role is left).
result<deployment_plan> repair_plan(const graph& g, const deployment_plan& plan,
                                    const std::map<std::string, std::string>& available);

// The nodes a plan places work on (segments, tiles, explicit scatter and gather nodes).
std::set<std::string> plan_nodes(const deployment_plan& plan);

}  // namespace d3
