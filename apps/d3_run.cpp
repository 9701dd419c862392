// d3-run: runs a model in one process with the single-node engine and reports its latency.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/memory.hpp"
#include "apps/app_support.hpp"
#include "apps/image_input.hpp"
#include "apps/options.hpp"
#include "kernels/cpu_peak.hpp"
#include "kernels/executor.hpp"
#include "kernels/graph.hpp"
#include "kernels/model_zoo.hpp"
#include "kernels/tile_executor.hpp"
#include "kernels/tiling.hpp"
#include "schema/model_file.hpp"
#include "onnx/onnx_import.hpp"

namespace {

constexpr int exit_bad_input = 2;
constexpr int exit_runtime_error = 1;

const char* usage = R"(usage: d3-run --model NAME|FILE [options]
       d3-run --convert IN.onnx OUT.d3m

Runs one DNN inference in a single process on d3's engine (XNNPACK operators, weights packed
once) and reports its latency.

  --model NAME|FILE   a built-in model (alexnet, vgg16, resnet18, googlenet, mobilenet_v2),
                      `all` for the five, a d3 model file (.d3m), or an ONNX file (a path
                      ending in .onnx; opsets 11-17 as torch.onnx exports them, imported and
                      prepared at load: batch norms folded, ReLU/ReLU6 fused). Default: resnet18.
  --convert IN OUT    imports the ONNX file IN, prepares it and writes it as the d3 model file
                      OUT (graph + weights), then exits; later runs load OUT without protobuf
  --threads N         compute threads (default 1)
  --repeat R          timed runs after one warm-up run (default 10)
  --seed S            seed of the built-in models' weights (default 2021)
  --input F           input tensor: raw little-endian float32 in NCHW order (PyTorch's), exactly
                      the model's input size; default: seeded uniform [-1, 1) values
  --image F           input image: a PNG or JPEG file through torchvision's ImageNet transform
                      (PIL bilinear Resize(256) of the shorter side, CenterCrop(224); bit-exact
                      with torchvision 0.14 / Pillow 9.4), kept as 8-bit pixel values; the model
                      gains a first `preprocess` layer (x / 255 - mean) / std with ImageNet's mean
                      and std, as ToTensor + Normalize. Prints the top-5 classes
  --labels F          class names, one per line, for the top-5 of --image
  --output F          writes the output tensor as raw little-endian float32, NCHW order
  --dump NODE=FILE    (ONNX models; repeatable) writes the tensor of ONNX node NODE (a node
                      without a name: its output's name) as raw little-endian float32 in the
                      NCHW order of its d3 shape (as --layers prints it; d3 holds a token
                      tensor [N, tokens, C] as a map of `tokens` pixels, so tokens are written
                      channel-major, [N, C, tokens]): what d3 computed there on the input. A
                      batch norm or activation fused into the layer before it is read from that
                      layer (the fused result). For checks against another framework's
                      intermediates (tools/check_zoo.py)
  --save F            writes the model (graph + weights) as a d3 model file and exits
  --json              prints one JSON object per model: model, threads, median_ms, p90_ms, gflop,
                      gflop_per_s, peak_gflop_per_s (measured one-core FMA peak x threads),
                      peak_fraction, conv_gflop_per_s and conv_peak_fraction (convolutions only,
                      from per-layer timings of the same runs)
  --profile           prints each layer's median time and GFLOP/s over the timed runs
  --layers            prints the model's layers in topological order and exits: position, name,
                      kind, output shape (NCHW), MFLOP, output bytes (the names --tile-run takes)
  --tiles RxC --tile-run FIRST:LAST
                      runs the layers FIRST..LAST (names from --layers; topological positions,
                      both included) cut into an R x C grid of spatial tiles of LAST's output,
                      each computed from its input region with its halo (vertical separation),
                      in one process: the layers before the run on one executor, the run's tiles
                      one after another on a tile executor, the rest on another executor, tensors
                      passed between them by name. The latency covers the whole pipeline. Also
                      prints the halo FLOP overhead (tiled / untiled FLOP of the run - 1) and
                      bytes per tile, runs the model untiled once and prints "tiled output
                      identical to untiled: yes|no" (bitwise; exit 1 on no). A run must be
                      spatially local (convolution, pooling, pad, element-wise, add, concat) and
                      no tensor may leave it before LAST; the error says which layer breaks it.
  --help              this text

Exit codes: 0 success, 2 bad input (unknown model, malformed file, wrong input size, bad option,
unknown layer, bad grid, untileable run), 1 runtime failure (or a tiled output that differs).
)";

struct options {
  std::string model = d3::default_model_name;
  int threads = 1;
  int repeat = 10;
  uint64_t seed = d3::default_model_seed;
  std::string input_file, output_file, save_file, image_file, labels_file;
  std::string convert_in, convert_out;
  bool json = false;
  bool profile = false;
  bool layers = false;
  std::string tiles, tile_run;  // --tiles RxC, --tile-run FIRST:LAST
  std::vector<std::pair<std::string, std::string>> dumps;  // --dump NODE=FILE: (node, file)
  bool help = false;
};

// Ends the run: main catches it, prints "d3-run: <message>" and returns `code` (the stack
// unwinds, so files and executors close as usual).
struct run_failure {
  int code;
  std::string message;
};

[[noreturn]] void fail(int code, const std::string& message) { throw run_failure{code, message}; }

d3::graph load(const std::string& model, uint64_t seed) {
  auto g = d3::load_model_by_name(model, seed);
  if (!g) fail(exit_bad_input, g.message());
  return std::move(g.value());
}

d3::tensor read_input(const std::string& path, const d3::tensor_shape& shape) {
  auto t = d3::read_nchw_file(path, shape);
  if (!t) fail(exit_bad_input, t.message());
  return std::move(t.value());
}

void write_output(const std::string& path, const d3::tensor& t) {
  d3::status s = d3::write_nchw_file(path, t);
  if (!s) fail(exit_runtime_error, s.message());
}

// Combinations of options that do not go together.
void check(const options& o) {
  if (!o.convert_in.empty() && !d3::is_onnx_path(o.convert_in))
    throw d3::option_error{"--convert reads an ONNX file (a path ending in .onnx), got '" + o.convert_in + "'"};
  if (o.model == "all" && (!o.input_file.empty() || !o.output_file.empty() || !o.save_file.empty()))
    throw d3::option_error{"--input, --output and --save need a single model, not 'all'"};
  if (!o.dumps.empty() && !d3::is_onnx_path(o.model))
    throw d3::option_error{"--dump names ONNX nodes: it needs an ONNX model (a path ending in .onnx)"};
  if (!o.dumps.empty() && !o.tiles.empty()) throw d3::option_error{"--dump does not go with --tiles"};
  if (!o.image_file.empty() && !o.input_file.empty()) throw d3::option_error{"--image and --input both give the input"};
  if (!o.image_file.empty() && o.model == "all") throw d3::option_error{"--image needs a single model, not 'all'"};
  if (!o.labels_file.empty() && o.image_file.empty()) throw d3::option_error{"--labels names the classes of --image"};
  if (o.tiles.empty() != o.tile_run.empty())
    throw d3::option_error{"--tiles RxC and --tile-run FIRST:LAST go together (see --help)"};
  if (!o.tiles.empty() && o.model == "all")
    throw d3::option_error{"--tiles and --tile-run name layers of a single model, not 'all'"};
  if (!o.tiles.empty() && o.profile) throw d3::option_error{"--profile does not apply to a tiled run (--tiles)"};
}

d3::result<options> parse(int argc, char** argv) {
  return d3::parse_options<options>([&] {
    options o;
    d3::option_reader in(argc, argv, 1, "see --help");
    while (in.next()) {
      if (in.is("--help", "-h")) {
        o.help = true;
        return o;
      }
      if (in.is("--model")) o.model = in.value();
      else if (in.is("--threads")) o.threads = int(in.integer(1, 256));
      else if (in.is("--repeat")) o.repeat = int(in.integer(1, 1000000));
      else if (in.is("--seed")) o.seed = uint64_t(in.integer(0, 0x7fffffffffffffffL));
      else if (in.is("--input")) o.input_file = in.value();
      else if (in.is("--image")) o.image_file = in.value();
      else if (in.is("--labels")) o.labels_file = in.value();
      else if (in.is("--output")) o.output_file = in.value();
      else if (in.is("--save")) o.save_file = in.value();
      else if (in.is("--dump")) {
        const std::string v = in.value();
        const size_t eq = v.rfind('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == v.size())
          in.fail("--dump takes NODE=FILE, got '" + v + "'");
        o.dumps.emplace_back(v.substr(0, eq), v.substr(eq + 1));
      }
      else if (in.is("--convert")) {
        o.convert_in = in.value();
        if (!in.next()) in.fail("--convert needs two values: IN.onnx OUT.d3m (see --help)");
        o.convert_out = in.name();
      } else if (in.is("--profile")) o.profile = true;
      else if (in.is("--layers")) o.layers = true;
      else if (in.is("--tiles")) o.tiles = in.value();
      else if (in.is("--tile-run")) o.tile_run = in.value();
      else if (in.is("--json")) o.json = true;
      else in.unknown();
    }
    check(o);
    return o;
  });
}
std::vector<int> topological(const d3::graph& g) {
  auto order = d3::topological_order(g);
  if (!order) fail(exit_bad_input, order.message());
  return std::move(order.value());
}

void print_layers(const d3::graph& g, const std::string& model) {
  std::printf("%s: %zu layers in topological order\n", model.c_str(), g.layers.size());
  int width = 5;
  for (const d3::layer& l : g.layers) width = std::max(width, int(l.name.size()));
  std::printf("%5s  %-*s %-20s %-18s %10s %12s\n", "#", width, "layer", "kind", "output (NCHW)", "MFLOP", "output bytes");
  int position = 0;
  for (int i : topological(g)) {
    const d3::layer& l = g.layers[i];
    std::printf("%5d  %-*s %-20s %-18s %10.2f %12zu\n", position++, width, l.name.c_str(), d3::to_string(l.kind),
                l.output_shape.to_string().c_str(), d3::cost_of(g, i).flops / 1e6, l.output_shape.bytes());
  }
  std::fflush(stdout);
}

// Finds FIRST:LAST in `spec`; layer names may hold ':' themselves, so every split is tried.
std::pair<int, int> parse_tile_run(const d3::graph& g, const std::string& spec) {
  std::string unknown;
  for (size_t colon = spec.find(':'); colon != std::string::npos; colon = spec.find(':', colon + 1)) {
    const std::string first = spec.substr(0, colon), last = spec.substr(colon + 1);
    const int a = g.find(first), b = g.find(last);
    if (a >= 0 && b >= 0) return {a, b};
    if (unknown.empty()) unknown = a < 0 ? first : last;
  }
  if (spec.find(':') == std::string::npos)
    fail(exit_bad_input, "--tile-run expects FIRST:LAST (two layer names, see --layers), got '" + spec + "'");
  fail(exit_bad_input, "--tile-run: model '" + g.name + "' has no layer named '" + unknown + "' (see --layers)");
}

// --tiles/--tile-run: the layers before the run on one executor, the run's tiles on a tile
// executor, the rest on a third executor; tensors pass between them by name.
void run_tiled(const options& o, const std::string& model, const d3::graph& g, const d3::tensor& input,
               double peak_per_thread) {
  const auto [first, last] = parse_tile_run(g, o.tile_run);
  auto made = d3::make_tiled_run(g, first, last);
  if (!made) fail(exit_bad_input, made.message());
  const d3::tiled_run& run = made.value();
  const d3::tensor_shape& run_out = g.layers[run.output].output_shape;
  auto grid = d3::tile_grid::parse(o.tiles, run_out.h, run_out.w);
  if (!grid) fail(exit_bad_input, grid.message() + " (the run's output '" + g.layers[run.output].name + "' is " +
                                      run_out.to_string() + ")");
  auto tiles = d3::plan_tiles(g, run, *grid);
  if (!tiles) fail(exit_bad_input, tiles.message());
  const d3::tiling_cost cost = d3::cost_of_tiling(g, run, *tiles);

  // The computed layers before and after the run, by topological position.
  std::vector<int> before, after;
  bool seen_run = false;
  for (int i : topological(g)) {
    if (g.layers[i].kind == d3::layer_kind::input) continue;
    const bool in_run = std::find(run.layers.begin(), run.layers.end(), i) != run.layers.end();
    if (in_run) seen_run = true;
    else (seen_run ? after : before).push_back(i);
  }
  d3::executor_options eo;
  eo.threads = o.threads;
  std::unique_ptr<d3::executor> head, tail;
  if (!before.empty()) {
    auto e = d3::executor::create(g, before, eo);
    if (!e) fail(exit_runtime_error, e.message());
    head = std::move(e.value());
  }
  auto tiled = d3::tile_executor::create(g, run, *tiles, {}, eo);
  if (!tiled) fail(exit_runtime_error, tiled.message());
  d3::tile_executor& tiler = **tiled;
  if (!after.empty()) {
    auto e = d3::executor::create(g, after, eo);
    if (!e) fail(exit_runtime_error, e.message());
    tail = std::move(e.value());
  }

  const std::string input_name = g.layers[g.input_layers().at(0)].name;
  const std::string run_output_name = g.layers[run.output].name;
  std::map<std::string, d3::tensor> available;
  available[input_name] = input;
  auto pipeline = [&]() {
    if (head) {
      auto out = head->run(available);
      if (!out) fail(exit_runtime_error, out.message());
      for (auto& [name, t] : out.value()) available[name] = std::move(t);
    }
    std::vector<const d3::tensor*> run_inputs;
    for (const std::string& name : tiler.input_names()) {
      auto it = available.find(name);
      if (it == available.end()) fail(exit_runtime_error, "tiled run: input tensor '" + name + "' was not computed");
      run_inputs.push_back(&it->second);
    }
    auto out = tiler.run(run_inputs);
    if (!out) fail(exit_runtime_error, out.message());
    available[run_output_name] = std::move(out.value());
    if (tail) {
      auto rest = tail->run(available);
      if (!rest) fail(exit_runtime_error, rest.message());
      for (auto& [name, t] : rest.value()) available[name] = std::move(t);
    }
  };

  pipeline();  // warm-up: touches every buffer once
  std::vector<double> times;
  for (int r = 0; r < o.repeat; ++r) {
    auto start = std::chrono::steady_clock::now();
    pipeline();
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::vector<d3::tensor> outputs;
  for (int out : g.outputs) outputs.push_back(available.at(g.layers[out].name));
  if (!o.output_file.empty()) write_output(o.output_file, outputs.at(0));

  // The untiled executor on the same input, for the bitwise check.
  auto whole = d3::executor::create(g, {}, eo);
  if (!whole) fail(exit_runtime_error, whole.message());
  auto expected = (*whole)->run({&input});
  if (!expected) fail(exit_runtime_error, expected.message());
  bool identical = expected->size() == outputs.size();
  for (size_t k = 0; identical && k < outputs.size(); ++k) identical = d3::bitwise_equal(outputs[k], expected.value()[k]);

  const double median = d3::percentile(times, 0.5), p90 = d3::percentile(times, 0.9);
  const double gflop = d3::total_flops(g) / 1e9;
  const double extra_gflop = (cost.tiled_flops - cost.untiled_flops) / 1e9;
  size_t in_min = SIZE_MAX, in_max = 0, in_sum = 0, out_sum = 0;
  for (size_t b : cost.tile_input_bytes) in_min = std::min(in_min, b), in_max = std::max(in_max, b), in_sum += b;
  for (size_t b : cost.tile_output_bytes) out_sum += b;
  const std::string first_name = g.layers[first].name, last_name = g.layers[last].name;
  if (o.json) {
    const double peak = peak_per_thread * o.threads;
    const double gflops = (gflop + extra_gflop) / (median / 1e3);
    std::printf(
        "{\"model\": \"%s\", \"threads\": %d, \"repeat\": %d, \"median_ms\": %.3f, \"p90_ms\": %.3f, "
        "\"gflop\": %.4f, \"gflop_per_s\": %.2f, \"peak_gflop_per_s\": %.2f, \"peak_fraction\": %.4f, "
        "\"tiles\": \"%dx%d\", \"tile_run\": \"%s:%s\", \"run_layers\": %zu, \"run_gflop\": %.4f, "
        "\"tiled_run_gflop\": %.4f, \"halo_flop_overhead\": %.5f, \"untiled_input_bytes\": %zu, "
        "\"tile_input_bytes_sum\": %zu, \"tile_output_bytes_sum\": %zu, \"tiled_identical\": %s}\n",
        model.c_str(), o.threads, o.repeat, median, p90, gflop, gflops, peak, peak > 0 ? gflops / peak : 0.0,
        grid->rows(), grid->cols(), first_name.c_str(), last_name.c_str(), run.layers.size(), cost.untiled_flops / 1e9,
        cost.tiled_flops / 1e9, cost.overhead(), cost.untiled_input_bytes, in_sum, out_sum,
        identical ? "true" : "false");
  } else {
    std::printf("%-14s threads %d  median %8.2f ms  p90 %8.2f ms  %.3f GFLOP (+%.3f halo)  tiles %dx%d over %s..%s\n",
                model.c_str(), o.threads, median, p90, gflop, extra_gflop, grid->rows(), grid->cols(),
                first_name.c_str(), last_name.c_str());
    std::printf("tiled output identical to untiled: %s\n", identical ? "yes" : "no");
    std::printf("%-14s run of %zu layers: %.4f GFLOP untiled, %.4f GFLOP in %d tiles, halo FLOP overhead %.2f%%\n", "",
                run.layers.size(), cost.untiled_flops / 1e9, cost.tiled_flops / 1e9, grid->tiles(),
                100 * cost.overhead());
    std::printf("%-14s bytes in per tile %zu..%zu (sum %zu vs %zu untiled), out per tile sum %zu\n", "", in_min, in_max,
                in_sum, cost.untiled_input_bytes, out_sum);
    const d3::tensor& out = outputs.at(0);
    int best = int(std::max_element(out.data(), out.data() + out.elements()) - out.data());
    std::printf("%-14s output %s, argmax %d (%.5f)\n", "", out.shape().to_string().c_str(), best, out.data()[best]);
  }
  std::fflush(stdout);
  if (!identical) fail(exit_runtime_error, "the tiled output differs from the untiled one");
}

// --dump: every requested ONNX node's tensor, from one more run that keeps every layer's output.
void dump_tensors(const options& o, const std::string& model, const d3::graph& g, d3::executor& exec,
                  const d3::tensor& input) {
  auto unprepared = d3::import_onnx_unprepared(model);  // names the layers fusion removed
  if (!unprepared) fail(exit_bad_input, unprepared.message());
  auto all = exec.run_all({&input});
  if (!all) fail(exit_runtime_error, all.message());
  for (const auto& [node, file] : o.dumps) {
    auto name = d3::surviving_layer(g, unprepared.value(), node, node);
    if (!name) fail(exit_bad_input, "--dump " + node + ": " + name.message());
    auto it = all.value().find(name.value());
    if (it == all.value().end()) fail(exit_runtime_error, "--dump " + node + ": layer '" + name.value() + "' kept no tensor");
    write_output(file, it->second);
  }
}

void run_model(const options& o, const std::string& model, double peak_per_thread) {
  d3::graph g = load(model, o.seed);
  if (!o.image_file.empty())
    if (d3::status s = d3::add_image_preprocess(g); !s) fail(exit_bad_input, s.message());
  if (o.layers) {
    print_layers(g, model);
    return;
  }
  if (!o.save_file.empty()) {
    d3::status s = d3::save_model(g, o.save_file);
    if (!s) fail(exit_runtime_error, s.message());
    std::cerr << "d3-run: wrote " << o.save_file << "\n";
    return;
  }
  std::vector<int> inputs = g.input_layers();
  if (inputs.size() != 1)
    fail(exit_bad_input, "model '" + model + "' has " + std::to_string(inputs.size()) + " inputs; d3-run needs exactly 1");
  const d3::tensor_shape shape = g.layers[inputs[0]].output_shape;
  d3::tensor input = o.input_file.empty() ? d3::random_tensor(shape, 1) : read_input(o.input_file, shape);
  if (!o.image_file.empty()) {
    auto image = d3::image_input(g, o.image_file);
    if (!image) fail(exit_bad_input, image.message());
    input = std::move(image.value());
  }
  if (!o.tiles.empty()) {
    run_tiled(o, model, g, input, peak_per_thread);
    return;
  }

  d3::executor_options eo;
  eo.threads = o.threads;
  eo.fuse_residual_adds = o.dumps.empty();  // --dump takes every tensor (run_all)
  auto created = d3::executor::create(g, {}, eo);
  if (!created) fail(exit_runtime_error, created.message());
  d3::executor& exec = **created;
  std::vector<bool> is_convolution(g.layers.size(), false);
  for (size_t i = 0; i < g.layers.size(); ++i) is_convolution[i] = g.layers[i].kind == d3::layer_kind::convolution;
  double conv_flops = 0;
  for (size_t i = 0; i < g.layers.size(); ++i)
    if (is_convolution[i]) conv_flops += d3::cost_of(g, int(i)).flops;

  auto warm = exec.run({&input});  // first run touches every buffer once
  if (!warm) fail(exit_runtime_error, warm.message());
  std::vector<double> times, conv_times;
  std::vector<std::vector<double>> layer_times(g.layers.size());
  std::vector<d3::tensor> last;
  for (int r = 0; r < o.repeat; ++r) {
    std::vector<d3::layer_timing> timings;
    auto start = std::chrono::steady_clock::now();
    auto out = exec.run({&input}, o.json || o.profile ? &timings : nullptr);
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (!out) fail(exit_runtime_error, out.message());
    times.push_back(ms);
    double conv_ms = 0;
    for (const auto& t : timings) {
      if (is_convolution[t.layer]) conv_ms += t.milliseconds;
      layer_times[t.layer].push_back(t.milliseconds);
    }
    conv_times.push_back(conv_ms);
    if (r + 1 == o.repeat) last = std::move(out.value());
  }
  if (!o.output_file.empty()) write_output(o.output_file, last.at(0));
  if (!o.dumps.empty()) dump_tensors(o, model, g, exec, input);

  if (o.profile) {
    std::printf("%-32s %-20s %-18s %10s %9s %9s\n", "layer", "kind", "output (NCHW)", "MFLOP", "ms", "GFLOP/s");
    for (size_t i = 0; i < g.layers.size(); ++i) {
      if (layer_times[i].empty()) continue;
      double ms = d3::percentile(layer_times[i], 0.5);
      double mflop = d3::cost_of(g, int(i)).flops / 1e6;
      std::printf("%-32s %-20s %-18s %10.2f %9.3f %9.1f\n", g.layers[i].name.c_str(), d3::to_string(g.layers[i].kind),
                  g.layers[i].output_shape.to_string().c_str(), mflop, ms, ms > 0 ? mflop / ms : 0.0);
    }
  }
  const double median = d3::percentile(times, 0.5), p90 = d3::percentile(times, 0.9);
  const double gflop = exec.flops() / 1e9;
  const double gflops = gflop / (median / 1e3);
  const double peak = peak_per_thread * o.threads;
  if (o.json) {
    const double conv_ms = d3::percentile(conv_times, 0.5);
    const double conv_gflops = conv_flops / 1e9 / (conv_ms / 1e3);
    std::printf(
        "{\"model\": \"%s\", \"threads\": %d, \"repeat\": %d, \"median_ms\": %.3f, \"p90_ms\": %.3f, "
        "\"gflop\": %.4f, \"gflop_per_s\": %.2f, \"peak_gflop_per_s\": %.2f, \"peak_fraction\": %.4f, "
        "\"conv_gflop_per_s\": %.2f, \"conv_peak_fraction\": %.4f}\n",
        model.c_str(), o.threads, o.repeat, median, p90, gflop, gflops, peak, peak > 0 ? gflops / peak : 0.0,
        conv_gflops, peak > 0 ? conv_gflops / peak : 0.0);
  } else {
    std::printf("%-14s threads %d  median %8.2f ms  p90 %8.2f ms  %.3f GFLOP  %.1f GFLOP/s\n", model.c_str(),
                o.threads, median, p90, gflop, gflops);
    const d3::tensor& out = last.at(0);
    int best = int(std::max_element(out.data(), out.data() + out.elements()) - out.data());
    std::printf("%-14s output %s, argmax %d (%.5f)\n", "", out.shape().to_string().c_str(), best, out.data()[best]);
    if (!o.image_file.empty()) {
      std::vector<std::string> labels;
      if (!o.labels_file.empty()) {
        auto read = d3::read_labels(o.labels_file);
        if (!read) fail(exit_bad_input, read.message());
        labels = std::move(read.value());
      }
      std::printf("%-14s %s\n", "", d3::top5(g, out, labels).c_str());
    }
  }
  std::fflush(stdout);
}

}  // namespace

int run(const options& o) {
  if (!o.convert_in.empty()) {
    d3::graph g = load(o.convert_in, o.seed);
    d3::status s = d3::save_model(g, o.convert_out);
    if (!s) fail(exit_runtime_error, s.message());
    std::cerr << "d3-run: converted " << o.convert_in << " (" << g.layers.size() << " layers) to " << o.convert_out
              << "\n";
    return 0;
  }
  double peak = o.json && !o.layers ? d3::measure_fma_peak_gflops() : 0;
  if (o.model == "all") {
    for (const auto& name : d3::builtin_model_names()) run_model(o, name, peak);
  } else {
    run_model(o, o.model, peak);
  }
  return 0;
}

int main(int argc, char** argv) {
  d3::retain_freed_memory();
  auto parsed = parse(argc, argv);
  if (auto code = d3::stop_after_parse(parsed, parsed && parsed->help, "d3-run")) {
    if (parsed && parsed->help) std::cout << usage;
    return *code;
  }
  try {
    return run(*parsed);
  } catch (const run_failure& f) {
    std::cerr << "d3-run: " << f.message << "\n";
    return f.code;
  }
}
