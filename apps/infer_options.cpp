#include "apps/infer_options.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "apps/app_support.hpp"
#include "apps/options.hpp"
#include "base/json_integer.hpp"
#include "base/text_file.hpp"
#include "emulation/emulation.hpp"
#include "planner/strategies.hpp"

namespace d3 {

const char* const infer_usage = R"(usage: d3-infer [--config FILE] (--nodes LIST | --cluster FILE) --plan FILE [options]

Deploys a model over running d3-node processes and runs requests through it. The app connects
to every node, ships each node only the layers it lacks (nodes cache layers by model hash and
layer name), spawns the plan's stages (segments, scatter, tiles, gather) on their nodes with
remote_spawn, wires them node to node, sends seeded random inputs with request ids, and collects
the answers by id.

  --config FILE       an inference config (JSON, e.g. apps/config/resnet18-demo.infer.json): the
                      options below as keys (cluster, nodes, model, plan, requests, in_flight,
                      clock, uplink, verify, log, timeout_ms, silence_ms, seed, input, images, labels,
                      codecs), paths relative to it;
                      the command line overrides it
  --nodes LIST        NAME=HOST:PORT,... e.g. device=127.0.0.1:4301,edge1=127.0.0.1:4302
  --cluster FILE      the nodes from a cluster file (apps/config/cluster.json)
  --model NAME|FILE   built-in model (alexnet, vgg16, resnet18, googlenet, mobilenet_v2), a d3
                      model file or an ONNX file (default resnet18)
  --plan FILE         deployment plan (JSON, see apps/config/*.plan.json)
  --strategy NAME     instead of a plan file, the plan a strategy chooses on the planner's cost
                      model: hpa (D3: device|edge|cloud with the edge's leading run tiled over
                      K edge nodes; never predicted behind a baseline), neurosurgeon (best single
                      device|cloud split), dads (min cut device|cloud split of the DAG),
                      neurosurgeon-edge and dads-edge (the same with the fastest edge node as
                      the server), ftp (DeepThings: all on the edge cluster, the first layers
                      tiled over every edge node), device, edge, cloud (everything on device,
                      the fastest edge node or cloud), three-tier (best untiled
                      device|edge|cloud partition, exhaustive). It prices plans with per-layer
                      times (see --profile) and the evaluation testbed's links (the cluster's
                      uplink, else WiFi); the nodes must include device, edge1 and cloud
  --profile nodes|local  with --strategy, the per-layer compute times the cost model uses:
                      nodes (default) probes every node after connecting (each runs every layer
                      a few times with stand-in weights and reports what its clock charges: with
                      --clock virtual, thread CPU time / its speed; the node caches the result
                      per model); local measures here once (speed 1) and divides by the role's
                      testbed speed
  --requests N        requests to run (default 10)
  --in-flight K       requests in flight at once (default 1)
  --seed S            seed of the inputs (request i uses S + i; default 1)
  --model-seed S      seed of the built-in models' weights (default 2021)
  --verify            checks every answer memcmp-equal to a local single-process run, and
                      reports the single-process median latency of the same inputs
  --same-arithmetic   refuses a node whose kernels' fingerprint (printed by d3-node at start)
                      differs from this process's: another CPU family or ISA may sum in another
                      order, so its outputs would not be bit-identical (default: a warning)
  --timeout-ms T      timeout of every connect, deployment step and answer (default 10000)
  --silence-ms T      a node (or a link between two nodes) that answers no heartbeat for T ms is
                      down (default 1250; raise it for nodes under tight cpu quotas)
  --log FILE          appends the topology log (JSON Lines) to FILE
  --redeploy          deploys the plan a second time and runs the requests again (the second
                      deployment should ship no weights)
  --clock wall|virtual  the clock of the emulated testbed (emulation, not real links or devices;
                      default wall):
                      wall: real time; sends between nodes are delayed per link (latency +
                        bytes / bandwidth, queued per link); compute is real (speed not applied);
                      virtual: every tensor bundle carries a virtual time; a node computes one
                        thing at a time and advances by its thread CPU time / its speed (INI
                        `speed`); links add latency + bytes / bandwidth. Latencies are emulated
                        times, independent of how many nodes share this machine's cores.
                      Requests start at the virtual time of the latest answer (with --in-flight 1
                      the previous answer: node clocks never run ahead); with more in flight they
                      share start times and queue on the node and link clocks.
  --uplink NAME       the device uplink of the testbed: CAT1 (0.13 Mbit/s), 3G (1.1), 4G (5.85),
                      WiFi (18.88), each 5 ms; edge<->edge 1 Gbit/s 0.2 ms, edge<->cloud 100 Mbit/s
                      20 ms (device<->cloud: uplink then backbone); `none`: unshaped links.
                      Default: none with --clock wall; with --clock virtual the cluster file's
                      "testbed" entry ({"uplink": "WiFi", "links": {"device-edge": {"mbit_per_s":
                      B, "latency_ms": L}, "edge-edge": ..., "edge-cloud": ...}}), else WiFi.
                      --uplink overrides the cluster file's uplink (its "links" still apply).
                      The app sits on the node named "device" (requests start, answers return).
  --trace FILE        the emulated links and node speeds follow a trace (JSON: {"steps": [{"at_ms":
                      0, "uplink": "WiFi"}, {"at_ms": 6000, "uplink": "3G", "speeds": {"edge2":
                      0.25}}, ...]}, e.g. apps/config/wifi-3g-wifi.trace.json): a step applies to
                      the requests that start after its time (virtual ms with --clock virtual)
  --adapt             with --strategy hpa: the planner actor watches the transfers and compute
                      times the stages report (virtual times, or under --clock wall real times,
                      each node's clock mapped onto the app's through the heartbeats), plus light
                      probes of links and nodes idle for 3 answers, and migrates, while requests keep flowing, when a plan
                      is faster by 5% (10% under --clock wall) with every estimate at its
                      pessimistic bound and the gain over 1000 requests pays for the weights it
                      ships; a verdict must hold on two answers in a row (three under --clock
                      wall: real times are noisier); only layers a node lacks are shipped; the migrations
                      are printed and logged ("layers_migrated"); with --codecs auto (not the
                      default under --adapt) every candidate carries the codecs predicted faster
  --standby on|off    with --adapt under --clock virtual: standby copies of weights (each node's
                      part off the device copied onto the other edge nodes, up to 256 MB each;
                      planner/standby.hpp)
                      sent as background traffic in the emulated links' idle time after the
                      deployment and every migration, so that a later move onto them ships
                      nothing (default off; refused under --clock wall: real links here have no
                      background priority, the copies would compete with the requests)
  --input FILE        input tensor of every request: raw little-endian float32 NCHW (like d3-run),
                      exactly the model's input size (default: seeded random inputs)
  --image FILE        a PNG or JPEG image as the input (repeat for several: request i uses image
                      i modulo their count), through torchvision's ImageNet transform as d3-run
                      --image does; the model gains its `preprocess` layer, so the device sends
                      8-bit pixels (codec u8) and the first stage that computes normalises them.
                      Prints each answer's top-5. Without --image, a model with a preprocess
                      layer gets seeded random 8-bit images
  --labels FILE       class names, one per line, for the top-5 of --image
  --codecs auto|none  with --strategy: auto (default; none with --adapt, where it is opt-in: on
                      real links the planner actor flapped between close plans) lets the planner encode a tensor on a link
                      (u8 for 8-bit images, sparse bitmaps for post-ReLU maps, zstd over byte
                      planes) where its measured ratio and codec cost predict it faster, lossless;
                      none sends every tensor raw. A plan file lists its own "codecs"
  --tls DIR|false     the app's TLS identity: DIR/ca.pem (the cluster CA), DIR/app.pem and
                      DIR/app.key (scripts/make-certs.sh DIR app ...); overrides the cluster
                      file's "tls". TLS is on by default: every connection to and between nodes
                      is mutually authenticated against the cluster CA. false: plaintext (the
                      nodes must run with tls=false too), with a warning
  --tls-name NAME     whose files in the --tls folder the app presents (default app)
  --help              this text

Faults: the app pings every node while requests run; a node whose connection is lost, or that
answers no ping for 1.25 s (frozen), is down: the plan is recomputed on the nodes left (the
strategy again with --strategy, else the plan file's plan with the lost node's work moved to a node
of the same role and its tiles re-split), deployed next to the running one, and every request not
yet answered is re-sent under its id (the first answer per id counts). A node that answers again
or is restarted on its address is used again. Losing the node the emulation puts the app on ends
the run with an error naming it.

Exit codes: 0 every answer arrived once (and verified with --verify); 1 a request failed, was
missing, duplicated or differs, or the deployment failed; 2 bad input or a node that cannot be
reached (the error names it and its address).
)";

namespace {

// An inference config (JSON): the options as keys (cluster or nodes, model, plan, requests,
// in_flight, clock, uplink, verify, log, timeout_ms, silence_ms, seed, input, trace, adapt, standby, strategy);
// relative paths are relative to the config file.
status read_config(const std::string& path, infer_options& o) {
  auto text = read_text_file(path, "config");
  if (!text) return text.error();
  return parse_infer_config_json(*text, path, o);
}

}  // namespace

status parse_infer_config_json(const std::string& text, const std::string& path, infer_options& o) {
  const std::string where = "config '" + path + "'";
  const std::string folder = path.find('/') == std::string::npos ? "" : path.substr(0, path.rfind('/') + 1);
  auto relative = [&](const std::string& file) { return file.empty() || file[0] == '/' ? file : folder + file; };
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  // Thrown (std::invalid_argument) so the catch below names the config like the other errors.
  auto integer = [&](const nlohmann::json& v, const std::string& key, int64_t min, int64_t max) {
    auto n = json_integer(v, min, max);
    if (!n)
      throw std::invalid_argument(key + " must be an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]");
    return *n;
  };
  if (j.is_discarded() || !j.is_object()) return status::error(where + ": not a JSON object");
  try {
    for (const auto& [key, value] : j.items()) {
      if (key == "cluster") o.cluster = relative(value.get<std::string>());
      else if (key == "nodes") o.nodes = value.get<std::string>();
      else if (key == "model") {
        o.model = value.get<std::string>();
        if (o.model.find('.') != std::string::npos) o.model = relative(o.model);
      } else if (key == "plan") o.plan = relative(value.get<std::string>());
      else if (key == "strategy") o.strategy = value.get<std::string>();
      else if (key == "requests") o.requests = int(integer(value, key, 1, 10000000));
      else if (key == "in_flight") o.in_flight = int(integer(value, key, 1, 100000));
      else if (key == "clock") o.clock = value.get<std::string>();
      else if (key == "uplink") o.uplink = value.get<std::string>();
      else if (key == "verify") o.verify = value.get<bool>();
      else if (key == "log") o.log = relative(value.get<std::string>());
      else if (key == "timeout_ms") o.timeout_ms = long(integer(value, key, 1, 3600000));
      else if (key == "silence_ms") o.silence_ms = long(integer(value, key, 250, 3600000));
      else if (key == "seed") o.seed = uint64_t(integer(value, key, 0, INT64_MAX));
      else if (key == "input") o.input = relative(value.get<std::string>());
      else if (key == "images") {
        o.images.clear();
        for (const auto& image : value) o.images.push_back(relative(image.get<std::string>()));
      } else if (key == "labels") o.labels = relative(value.get<std::string>());
      else if (key == "codecs") o.codecs = value.get<std::string>();
      else if (key == "trace") o.trace = relative(value.get<std::string>());
      else if (key == "adapt") o.adapt = value.get<bool>();
      else if (key == "same_arithmetic") o.same_arithmetic = value.get<bool>();
      else if (key == "standby") o.standby = value.get<bool>();
      else if (key == "tls") o.tls = value.is_boolean() && !value.get<bool>() ? "false" : relative(value.get<std::string>());
      else if (key == "tls_name") o.tls_name = value.get<std::string>();
      else if (key != "comment") return status::error(where + ": unknown key '" + key + "'");
    }
  } catch (const nlohmann::json::exception& e) {
    return status::error(where + ": " + e.what());
  } catch (const std::invalid_argument& e) {
    return status::error(where + ": " + e.what());
  }
  if (o.requests < 1 || o.in_flight < 1 || o.timeout_ms < 1)
    return status::error(where + ": requests, in_flight and timeout_ms must be positive");
  return status::ok();
}

namespace {

status check(const infer_options& o) {
  if (o.nodes.empty() == o.cluster.empty()) return status::error("give the nodes with --nodes or --cluster (see --help)");
  if (o.plan.empty() == o.strategy.empty())
    return status::error("give a plan with --plan FILE or --strategy NAME, not both (see --help)");
  const std::vector<std::string>& strategies = strategy_names();
  if (!o.strategy.empty() && std::find(strategies.begin(), strategies.end(), o.strategy) == strategies.end())
    return status::error("--strategy expects one of " + join(strategies, ", ") + "; got '" + o.strategy + "'");
  if (o.clock != "wall" && o.clock != "virtual")
    return status::error("--clock expects wall or virtual, got '" + o.clock + "'");
  if (!o.uplink.empty() && o.uplink != "none" && !testbed::with_uplink(o.uplink))
    return status::error("--uplink expects CAT1, 3G, 4G, WiFi or none, got '" + o.uplink + "'");
  if (o.profile_source != "nodes" && o.profile_source != "local")
    return status::error("--profile expects nodes or local, got '" + o.profile_source + "'");
  if (o.adapt && o.strategy != "hpa") return status::error("--adapt needs --strategy hpa");
  if (o.standby && (!o.adapt || o.clock != "virtual"))
    return status::error("--standby on needs --adapt and --clock virtual (real links have no background priority here)");
  if (!o.images.empty() && !o.input.empty()) return status::error("--image and --input both give the input");
  if (!o.labels.empty() && o.images.empty()) return status::error("--labels names the classes of --image");
  if (!o.codecs.empty() && o.codecs != "auto" && o.codecs != "none") return status::error("--codecs expects auto or none, got '" + o.codecs + "'");
  return status::ok();
}

}  // namespace

result<infer_options> parse_infer_options(int argc, char** argv) {
  infer_options o;
  // The config first, so that the command line overrides it.
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::string path;
    if (arg == "--config" && i + 1 < argc) path = argv[i + 1];
    else if (arg.rfind("--config=", 0) == 0) path = arg.substr(std::strlen("--config="));
    else continue;
    D3_RETURN_IF_ERROR(read_config(path, o));
  }
  auto parsed = parse_options<infer_options>([&] {
    option_reader in(argc, argv, 1, "see --help");
    while (in.next()) {
      if (in.is("--help", "-h")) {
        o.help = true;
        return o;
      }
      if (in.is("--config")) in.value();  // read above
      else if (in.is("--nodes")) o.nodes = in.value();
      else if (in.is("--cluster")) o.cluster = in.value();
      else if (in.is("--model")) o.model = in.value();
      else if (in.is("--plan")) o.plan = in.value();
      else if (in.is("--strategy")) o.strategy = in.value();
      else if (in.is("--requests")) o.requests = int(in.integer(1, 10000000));
      else if (in.is("--in-flight")) o.in_flight = int(in.integer(1, 100000));
      else if (in.is("--seed")) o.seed = uint64_t(in.integer(0, 0x7fffffffffffffffL));
      else if (in.is("--model-seed")) o.model_seed = uint64_t(in.integer(0, 0x7fffffffffffffffL));
      else if (in.is("--timeout-ms")) o.timeout_ms = in.integer(1, 3600000);
      else if (in.is("--silence-ms")) o.silence_ms = in.integer(250, 3600000);
      else if (in.is("--log")) o.log = in.value();
      else if (in.is("--clock")) o.clock = in.choice({"wall", "virtual"});
      else if (in.is("--uplink")) o.uplink = in.value();
      else if (in.is("--input")) o.input = in.value();
      else if (in.is("--image")) o.images.push_back(in.value());
      else if (in.is("--labels")) o.labels = in.value();
      else if (in.is("--codecs")) o.codecs = in.choice({"auto", "none"});
      else if (in.is("--verify")) o.verify = true;
      else if (in.is("--redeploy")) o.redeploy = true;
      else if (in.is("--trace")) o.trace = in.value();
      else if (in.is("--adapt")) o.adapt = true;
      else if (in.is("--same-arithmetic")) o.same_arithmetic = true;
      else if (in.is("--standby")) o.standby = in.choice({"on", "off"}) == "on";
      else if (in.is("--profile")) o.profile_source = in.choice({"nodes", "local"});
      else if (in.is("--tls")) o.tls = in.value();
      else if (in.is("--tls-name")) o.tls_name = in.value();
      else in.unknown();
    }
    return o;
  });
  if (!parsed || parsed->help) return parsed;
  D3_RETURN_IF_ERROR(check(*parsed));
  return parsed;
}

}  // namespace d3
