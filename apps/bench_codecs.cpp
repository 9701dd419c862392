// d3-bench codecs: what the wire codecs (codec/tensor_codec.hpp) do to each model's tensors.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "apps/bench_support.hpp"
#include "codec/tensor_codec.hpp"
#include "kernels/model_zoo.hpp"
#include "profiling/message_costs.hpp"

namespace d3 {

namespace {

const char* codecs_usage = R"(usage: d3-bench codecs [options]

Runs each model once on a seeded input and encodes every layer's output with every codec: prints
one JSON object per tensor (model, layer, kind, post_relu: its values are clamped at 0 (a fused or
standalone ReLU), zeros: the fraction of exact zeros, raw_bytes, and per codec the ratio raw /
encoded (0: the codec does not apply) and the encode and decode MB/s of raw data, medians over
--repeat on one thread), then one summary object per model: the post-ReLU tensors' median and
minimum ratio of the best codec. Each round trip is checked memcmp-equal.

  --models LIST       built-in models or model files (default: the five built-ins)
  --images            the models take 8-bit images (a preprocess layer first; its input is u8)
  --repeat R          timed encodes and decodes per tensor and codec (default 3)
  --help              this text
)";

double mb_per_s(size_t bytes, double ms) { return ms > 0 ? double(bytes) * 1e-6 / (ms * 1e-3) : 0.0; }

}  // namespace

int bench_codecs(int argc, char** argv) {
  std::vector<std::string> models = builtin_model_names();
  int repeat = 3;
  bool images = false, help = false;
  read_bench_options(argc, argv, "see d3-bench codecs --help", [&](option_reader& in) {
    if (in.is("--help", "-h")) help = true;
    else if (in.is("--models")) models = split_list(in.value());
    else if (in.is("--images")) images = true;
    else if (in.is("--repeat")) repeat = int(in.integer(1, 1000));
    else in.unknown();
  });
  if (help) {
    std::cout << codecs_usage;
    return 0;
  }
  for (const std::string& name : models) {
    auto g = load_model_by_name(name, default_model_seed);
    if (!g) bench_fail(bench_exit_bad_input, g.message());
    if (images) {
      if (status s = add_image_preprocess(g.value()); !s) bench_fail(bench_exit_bad_input, s.message());
    }
    auto all = tensors_of_sample_run(g.value());
    if (!all) bench_fail(bench_exit_failed, all.message());
    std::vector<double> post_relu_best;
    for (const layer& l : g->layers) {
      auto t = all->find(l.name);
      if (t == all->end() || t->second.bytes() == 0) continue;
      const tensor& value = t->second;
      const bool post_relu = l.act.min == 0.0f;
      size_t zeros = 0;
      for (size_t i = 0; i < value.elements(); ++i) zeros += value.data()[i] == 0.0f;
      std::string codecs;
      double best = 1.0;
      for (int c = 1; c < tensor_codec_count; ++c) {
        const tensor_codec codec = tensor_codec(c);
        std::optional<std::vector<uint8_t>> encoded;
        std::vector<double> enc_ms, dec_ms;
        tensor back(value.shape());
        for (int r = 0; r < repeat; ++r) {
          auto start = std::chrono::steady_clock::now();
          encoded = encode_floats(codec, value.data(), value.elements());
          enc_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
          if (!encoded) break;
          start = std::chrono::steady_clock::now();
          status s = decode_floats(codec, encoded->data(), encoded->size(), back.data(), back.elements());
          dec_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
          if (!s) bench_fail(bench_exit_failed, name + " " + l.name + ": " + s.message());
          if (!bitwise_equal(back, value))
            bench_fail(bench_exit_failed, name + " " + l.name + ": " + to_string(codec) + " did not round-trip");
        }
        const double ratio = encoded ? double(value.bytes()) / double(encoded->size()) : 0.0;
        best = std::max(best, ratio);
        char buffer[200];
        std::snprintf(buffer, sizeof buffer, "%s\"%s\": {\"ratio\": %.4f, \"encode_mb_per_s\": %.0f, \"decode_mb_per_s\": %.0f}",
                      codecs.empty() ? "" : ", ", to_string(codec), ratio,
                      encoded ? mb_per_s(value.bytes(), median(enc_ms)) : 0.0,
                      encoded ? mb_per_s(value.bytes(), median(dec_ms)) : 0.0);
        codecs += buffer;
      }
      if (post_relu) post_relu_best.push_back(best);
      std::printf("{\"model\": \"%s\", \"layer\": \"%s\", \"kind\": \"%s\", \"post_relu\": %s, \"zeros\": %.4f, "
                  "\"raw_bytes\": %zu, %s}\n",
                  name.c_str(), l.name.c_str(), to_string(l.kind), post_relu ? "true" : "false",
                  double(zeros) / double(value.elements()), value.bytes(), codecs.c_str());
    }
    if (!post_relu_best.empty())
      std::printf("{\"model\": \"%s\", \"summary\": true, \"post_relu_tensors\": %zu, \"best_ratio_median\": %.3f, "
                  "\"best_ratio_min\": %.3f}\n",
                  name.c_str(), post_relu_best.size(), median(post_relu_best),
                  *std::min_element(post_relu_best.begin(), post_relu_best.end()));
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace d3
