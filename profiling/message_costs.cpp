#include "profiling/message_costs.hpp"

#include <algorithm>
#include <functional>
#include <vector>

#include "emulation/emulation.hpp"
#include "codec/tensor_codec.hpp"
#include "kernels/executor.hpp"
#include "kernels/model_zoo.hpp"
#include "kernels/tensor.hpp"
#include "kernels/tiling.hpp"
#include "profiling/tile_overhead.hpp"
#include "schema/bundle.hpp"

namespace d3 {

namespace {

// Median thread CPU time of `op`, in ms.
double median_cpu_ms(int repeats, const std::function<void()>& op) {
  std::vector<double> samples;
  // Warm-up: first-touch page faults are not the steady state, and neither is glibc's malloc
  // before it has freed a large block: until then each 1 MB buffer is mapped afresh (page faults
  // on every byte), and the heap grows over the next two. Three rounds leave the buffers on the
  // heap, as in a node that has been moving tensors. (Measured: with one round, a fresh process
  // read encoding at 2.6 ms/MB, and 0.04 when measured again; priced at the first, a tiled
  // plan's scatter took 5.8 ms for the 0.5 its stage measured.)
  for (int warm = 0; warm < 3; ++warm) op();
  for (int r = 0; r < std::max(1, repeats); ++r) {
    const double start = thread_cpu_ms();
    op();
    samples.push_back(thread_cpu_ms() - start);
  }
  std::nth_element(samples.begin(), samples.begin() + long(samples.size() / 2), samples.end());
  return samples[samples.size() / 2];
}

// Fixed and per-MB cost from times at two sizes (clamped at 0: noise must not make either negative).
void fit(double small_ms, size_t small_bytes, double large_ms, size_t large_bytes, double& fixed_ms, double& per_mb) {
  per_mb = std::max(0.0, (large_ms - small_ms) / (double(large_bytes - small_bytes) * 1e-6));
  fixed_ms = std::max(0.0, small_ms - per_mb * double(small_bytes) * 1e-6);
}

}  // namespace

result<message_costs> measure_message_costs(int repeats) {
  const tensor small = random_tensor({1, 16, 16, 64}, 11);   // 64 KiB
  const tensor large = random_tensor({1, 64, 64, 64}, 12);   // 1 MiB
  double encode[2], decode[2];
  const tensor* sizes[2] = {&small, &large};
  for (int k = 0; k < 2; ++k) {
    std::vector<uint8_t> bytes;
    encode[k] = median_cpu_ms(repeats, [&] { bytes = encode_bundle(1, 1, {{"t", sizes[k]}}); });
    if (bytes.empty()) return status::error("message costs: cannot encode a bundle");
    bool ok = true;
    decode[k] = median_cpu_ms(repeats, [&] { ok = decode_bundle(bytes.data(), bytes.size()).is_ok() && ok; });
    if (!ok) return status::error("message costs: cannot decode a bundle");
  }
  message_costs c;
  fit(encode[0], small.bytes(), encode[1], large.bytes(), c.encode_ms, c.encode_ms_per_mb);
  fit(decode[0], small.bytes(), decode[1], large.bytes(), c.decode_ms, c.decode_ms_per_mb);
  // A scatter cuts regions out of a whole tensor (a new zero-filled tensor per part, then the
  // copy); a gather fills a new whole tensor from its parts: the same two passes per byte.
  const region top{0, large.shape().h / 2, 0, large.shape().w};
  const region bottom{large.shape().h / 2, large.shape().h, 0, large.shape().w};
  const double copy_ms = median_cpu_ms(repeats, [&] {
    tensor a = extract_region(large, top);
    tensor b = extract_region(large, bottom);
  });
  c.copy_ms_per_mb = copy_ms / (double(large.bytes()) * 1e-6);
  // Each codec's own work on 1 MiB: a post-ReLU map (about half exact zeros) for sparse and zstd,
  // 8-bit pixel values for u8.
  tensor relu = large;
  for (size_t i = 0; i < relu.elements(); ++i) relu.data()[i] = std::max(0.0f, relu.data()[i]);
  tensor pixels = large;
  for (size_t i = 0; i < pixels.elements(); ++i) pixels.data()[i] = float((i * 2654435761u >> 7) % 256);
  const double mb = double(large.bytes()) * 1e-6;
  for (tensor_codec codec : {tensor_codec::u8, tensor_codec::sparse, tensor_codec::zstd, tensor_codec::sparse_zstd}) {
    const tensor& t = codec == tensor_codec::u8 ? pixels : relu;
    std::optional<std::vector<uint8_t>> encoded;
    const double enc = median_cpu_ms(repeats, [&] { encoded = encode_floats(codec, t.data(), t.elements()); });
    if (!encoded) return status::error(std::string("message costs: codec ") + to_string(codec) + " cannot encode");
    tensor back(t.shape());
    bool ok = true;
    const double dec = median_cpu_ms(repeats, [&] {
      ok = decode_floats(codec, encoded->data(), encoded->size(), back.data(), back.elements()).is_ok() && ok;
    });
    if (!ok) return status::error(std::string("message costs: codec ") + to_string(codec) + " cannot decode");
    c.codec_encode_ms_per_mb[size_t(codec)] = enc / mb;
    c.codec_decode_ms_per_mb[size_t(codec)] = dec / mb;
  }
  return c;
}

result<layer_profile> measure_local_profile(const graph& g, int repeats) {
  auto profile = measure_profile(g, repeats);
  if (!profile) return profile.error();
  auto messages = measure_message_costs(std::max(3, repeats));
  if (!messages) return messages.error();
  profile->messages = messages.value();
  auto sample = tensors_of_sample_run(g);
  if (!sample) return sample.error();
  D3_RETURN_IF_ERROR(measure_codec_ratios(g, sample.value(), profile.value()));
  D3_RETURN_IF_ERROR(measure_tile_overheads(g, sample.value(), profile.value(), repeats));
  return profile;
}

message_costs at_speed(const message_costs& c, double speed) {
  message_costs out{c.encode_ms / speed, c.encode_ms_per_mb / speed, c.decode_ms / speed, c.decode_ms_per_mb / speed,
                    c.copy_ms_per_mb / speed, c.receive_ms_per_mb / speed};
  for (int k = 0; k < tensor_codec_count; ++k) {
    out.codec_encode_ms_per_mb[size_t(k)] = c.codec_encode_ms_per_mb[size_t(k)] / speed;
    out.codec_decode_ms_per_mb[size_t(k)] = c.codec_decode_ms_per_mb[size_t(k)] / speed;
  }
  return out;
}

message_costs median_of(const std::vector<message_costs>& samples) {
  message_costs out;
  if (samples.empty()) return out;
  auto median = [&](auto field) {
    std::vector<double> v;
    for (const message_costs& c : samples) v.push_back(field(c));
    std::nth_element(v.begin(), v.begin() + long(v.size() / 2), v.end());
    return v[v.size() / 2];
  };
  out.encode_ms = median([](const message_costs& c) { return c.encode_ms; });
  out.encode_ms_per_mb = median([](const message_costs& c) { return c.encode_ms_per_mb; });
  out.decode_ms = median([](const message_costs& c) { return c.decode_ms; });
  out.decode_ms_per_mb = median([](const message_costs& c) { return c.decode_ms_per_mb; });
  out.copy_ms_per_mb = median([](const message_costs& c) { return c.copy_ms_per_mb; });
  out.receive_ms_per_mb = median([](const message_costs& c) { return c.receive_ms_per_mb; });
  for (size_t k = 0; k < size_t(tensor_codec_count); ++k) {
    out.codec_encode_ms_per_mb[k] = median([k](const message_costs& c) { return c.codec_encode_ms_per_mb[k]; });
    out.codec_decode_ms_per_mb[k] = median([k](const message_costs& c) { return c.codec_decode_ms_per_mb[k]; });
  }
  return out;
}

result<std::map<std::string, tensor>> tensors_of_sample_run(const graph& g) {
  executor_options every_tensor;  // run_all
  every_tensor.fuse_residual_adds = false;
  auto exec = executor::create(g, {}, every_tensor);
  if (!exec) return exec.error();
  std::vector<tensor> inputs;
  std::vector<const tensor*> pointers;
  const std::vector<int> input_layers = g.input_layers();
  for (int i : input_layers) inputs.push_back(sample_input(g, i, 1));
  for (const tensor& t : inputs) pointers.push_back(&t);
  auto all = (*exec)->run_all(pointers);
  if (!all) return all.error();
  for (size_t k = 0; k < input_layers.size(); ++k) all->emplace(g.layers[size_t(input_layers[k])].name, inputs[k]);
  return all;
}

status measure_codec_ratios(const graph& g, layer_profile& profile) {
  auto sample = tensors_of_sample_run(g);
  if (!sample) return sample.error();
  return measure_codec_ratios(g, sample.value(), profile);
}

status measure_codec_ratios(const graph& g, const std::map<std::string, tensor>& all, layer_profile& profile) {
  profile.encoded_fraction.assign(g.layers.size(), {});
  for (size_t l = 0; l < g.layers.size(); ++l) {
    auto t = all.find(g.layers[l].name);
    if (t == all.end()) continue;
    const tensor& value = t->second;
    if (value.bytes() == 0) continue;
    for (int k = 1; k < tensor_codec_count; ++k) {
      auto size = encoded_size(tensor_codec(k), value.data(), value.elements());
      profile.encoded_fraction[l][size_t(k)] = size ? double(*size) / double(value.bytes()) : 0.0;
    }
  }
  return status::ok();
}

}  // namespace d3
