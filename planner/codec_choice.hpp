// Which tensors travel encoded (codec/tensor_codec.hpp), chosen per tensor and link from
// measurements: each crossing of a stage graph (a tensor from one node to another) takes the codec
// whose predicted delivery (the sender's encoding + encoded bytes over the link + the receiver's
// decoding, at the nodes' speeds) beats raw by a margin, using the profile's measured ratio of that
// tensor (layer_profile::encoded_fraction) and the nodes' measured codec costs (message_costs).
// The whole plan is then priced with and without the codecs (predict_plan): when the codecs are
// not predicted faster end to end, none is used. Pure reasoning on the model and measurements.
#pragma once

#include <utility>
#include <vector>

#include "plan/plan.hpp"
#include "planner/cost_model.hpp"
#include "planner/profile.hpp"

namespace d3 {

struct codec_choice_options {
  // A codec must save at least this much of a crossing's raw transfer time, and min_gain_ms: the
  // ratio is measured on one sample input, and a marginal gain is within its noise.
  double min_gain_fraction = 0.05;
  double min_gain_ms = 0.05;
  // Codecs considered (raw always is).
  std::vector<tensor_codec> allowed = {tensor_codec::u8, tensor_codec::sparse, tensor_codec::zstd,
                                       tensor_codec::sparse_zstd};
};

// The codecs for `sg` (built from a plan without codecs). Errors as predict_plan's.
result<std::vector<plan_codec>> choose_codecs(const graph& g, const stage_graph& sg, const layer_profile& profile,
                                              const cluster_model& cluster, const codec_choice_options& options = {});

// with_codecs and its prediction at once (one stage graph, two predictions): what the searches use.
result<std::pair<deployment_plan, plan_prediction>> priced_with_codecs(const graph& g, deployment_plan plan,
                                                                      const layer_profile& profile,
                                                                      const cluster_model& cluster,
                                                                      const codec_choice_options& options = {},
                                                                      stage_graph_memo* memo = nullptr);

// The plan with choose_codecs' codecs (plan.codecs replaced); `memo` as build_stage_graph's.
result<deployment_plan> with_codecs(const graph& g, deployment_plan plan, const layer_profile& profile,
                                    const cluster_model& cluster, const codec_choice_options& options = {},
                                    stage_graph_memo* memo = nullptr);

}  // namespace d3
