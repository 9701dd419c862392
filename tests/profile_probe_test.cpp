// A node's profile probe (profiling/profile_probe.hpp): a fragment sent without weights is timed
// layer by layer, with the message costs, and the answer is cached per model.
#define BOOST_TEST_MODULE profile_probe
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>
#include <map>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "kernels/model_zoo.hpp"
#include "profiling/cpu_limit.hpp"
#include "profiling/message_costs.hpp"
#include "profiling/profile_probe.hpp"
#include "profiling/tile_overhead.hpp"
#include "kernels/tiling.hpp"
#include "schema/bundle.hpp"

using namespace d3;

namespace {

// A built-in model's computed layers, and the probe's payload: all of them, without weights.
struct probe_input {
  graph g;
  std::vector<int> computed;
  std::vector<uint8_t> payload;
};

probe_input probe_input_of(const std::string& model) {
  auto g = builtin_model(model);
  BOOST_REQUIRE(g.is_ok());
  probe_input in{std::move(g.value()), {}, {}};
  for (size_t l = 0; l < in.g.layers.size(); ++l)
    if (in.g.layers[l].kind != layer_kind::input) in.computed.push_back(int(l));
  in.payload = encode_layers(in.g, in.computed, model_hash(in.g), {});
  return in;
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_layer_is_timed_and_the_answer_cached) {
  const auto [g, computed, payload] = probe_input_of("mobilenet_v2");
  const std::string answer = profile_fragment(payload, 2);
  const nlohmann::json j = nlohmann::json::parse(answer);
  BOOST_REQUIRE_MESSAGE(!j.contains("error"), answer);
  for (int l : computed) {
    const std::string& name = g.layers[size_t(l)].name;
    BOOST_REQUIRE_MESSAGE(j.at("layers").contains(name), name);
    BOOST_TEST(j.at("layers").at(name).get<double>() >= 0.0, name);
  }
  double total = 0;
  for (const auto& [name, ms] : j.at("layers").items()) total += ms.get<double>();
  BOOST_TEST(total > 0.0);
  for (const char* key : {"encode_ms", "encode_ms_per_mb", "decode_ms", "decode_ms_per_mb", "copy_ms_per_mb"})
    BOOST_TEST(j.at("messages").at(key).get<double>() >= 0.0, key);
  BOOST_TEST(j.at("messages").at("copy_ms_per_mb").get<double>() > 0.0);  // a copy of 1 MB takes time
  BOOST_TEST(profile_fragment(payload, 2) == answer);                      // cached, not measured again
}

BOOST_AUTO_TEST_CASE(a_corrupt_fragment_gets_an_error_answer) {
  const std::vector<uint8_t> junk(64, 0x5a);
  const nlohmann::json j = nlohmann::json::parse(profile_fragment(junk, 2));
  BOOST_REQUIRE(j.contains("error"));
  BOOST_TEST(j.at("error").get<std::string>().find("profile probe") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(rounds_are_answered_apart_and_bounded) {
  const auto [g, computed, payload] = probe_input_of("resnet18");
  std::vector<std::string> answers;
  for (int round = 0; round < 3; ++round) {
    answers.push_back(profile_fragment(payload, 1, round, 3));
    const nlohmann::json j = nlohmann::json::parse(answers.back());
    BOOST_REQUIRE_MESSAGE(!j.contains("error"), answers.back());
    BOOST_TEST(j.at("layers").size() == computed.size());
  }
  BOOST_TEST(answers[0] != answers[1]);  // each round measured on its own (times never repeat exactly)
  BOOST_TEST(profile_fragment(payload, 1, 1, 3) == answers[1]);  // and cached per round
  for (auto [repeats, round, rounds] : {std::tuple{0, 0, 1}, {1, 3, 3}, {1, -1, 3}, {1, 0, 0}, {max_probe_repeats + 1, 0, 1},
                                        {1, 0, max_probe_repeats + 1}}) {
    const nlohmann::json j = nlohmann::json::parse(profile_fragment(payload, repeats, round, rounds));
    BOOST_TEST(j.contains("error"), repeats << " " << round << " " << rounds);
  }
}

BOOST_AUTO_TEST_CASE(layer_times_are_medians_scaled_to_the_median_run) {
  // Layer 0 is slow in one run, layer 1 in another: the medians (1, 2, 3) drop both, and the
  // median run (totals 6, 15, 12: 12) sets their sum, so each doubles.
  const std::vector<std::vector<double>> runs = {{1, 2, 3}, {10, 2, 3}, {1, 8, 3}};
  const std::vector<double> t = median_layer_times(runs);
  BOOST_REQUIRE(t.size() == 3u);
  BOOST_TEST(t[0] == 2.0, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(t[1] == 4.0, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(t[2] == 6.0, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(median_layer_times({}).empty());
}

BOOST_AUTO_TEST_CASE(message_costs_take_each_fields_median) {
  std::vector<message_costs> samples(3);
  samples[0].encode_ms = 1, samples[1].encode_ms = 9, samples[2].encode_ms = 2;
  samples[0].copy_ms_per_mb = 5, samples[1].copy_ms_per_mb = 4, samples[2].copy_ms_per_mb = 6;
  samples[0].codec_decode_ms_per_mb[1] = 3, samples[1].codec_decode_ms_per_mb[1] = 1, samples[2].codec_decode_ms_per_mb[1] = 2;
  const message_costs m = median_of(samples);
  BOOST_TEST(m.encode_ms == 2.0);
  BOOST_TEST(m.copy_ms_per_mb == 5.0);
  BOOST_TEST(m.codec_decode_ms_per_mb[1] == 2.0);
  BOOST_TEST(median_of({}).encode_ms == 0.0);
}

BOOST_AUTO_TEST_CASE(a_pooled_profile_takes_each_layers_median_over_the_nodes) {
  // Three nodes alike; the second was slow on layer 0 and the third on layer 1 while probed.
  std::vector<layer_profile> probes(3);
  probes[0].milliseconds = {0, 2, 4};
  probes[1].milliseconds = {0, 9, 4};
  probes[2].milliseconds = {0, 2, 11};
  probes[0].messages.decode_ms = 1, probes[1].messages.decode_ms = 3, probes[2].messages.decode_ms = 2;
  const layer_profile pooled = pooled_profile(probes);
  BOOST_TEST(pooled.milliseconds == std::vector<double>({0, 2, 4}), boost::test_tools::per_element());
  BOOST_TEST(pooled.messages.decode_ms == 2.0);
  BOOST_TEST(pooled_profile({}).milliseconds.empty());
  probes.pop_back();  // two nodes: the mean of the middle two
  BOOST_TEST(pooled_profile(probes).milliseconds == std::vector<double>({0, 5.5, 4}), boost::test_tools::per_element());
}

namespace {

// A fake cgroup tree under a temporary directory: `files` maps paths below it to contents.
struct fake_cgroups {
  std::filesystem::path root;
  explicit fake_cgroups(const std::map<std::string, std::string>& files) {
    root = std::filesystem::temp_directory_path() / ("d3-cgroup-test-" + std::to_string(::getpid()));
    std::filesystem::remove_all(root);
    for (const auto& [path, text] : files) {
      std::filesystem::create_directories((root / path).parent_path());
      std::ofstream(root / path) << text;
    }
  }
  ~fake_cgroups() { std::filesystem::remove_all(root); }
};

}  // namespace

BOOST_AUTO_TEST_CASE(a_cgroup_v1_quota_is_read_with_its_ancestors) {
  fake_cgroups c({{"cpu,cpuacct/d3-device/cpu.cfs_quota_us", "1000\n"},
                  {"cpu,cpuacct/d3-device/cpu.cfs_period_us", "11111\n"},
                  {"cpu,cpuacct/cpu.cfs_quota_us", "-1\n"},
                  {"cpu,cpuacct/cpu.cfs_period_us", "100000\n"}});
  const std::string self = "4:memory:/x\n2:cpu,cpuacct:/d3-device\n0::/\n";
  auto limit = cpu_limit_cores(self, c.root.string());
  BOOST_TEST_REQUIRE(limit.has_value());
  BOOST_TEST(*limit == 1000.0 / 11111, boost::test_tools::tolerance(1e-9));
  // A parent's tighter quota binds the child.
  std::ofstream(c.root / "cpu,cpuacct/cpu.cfs_quota_us") << "5000\n";
  std::ofstream(c.root / "cpu,cpuacct/cpu.cfs_period_us") << "100000\n";
  BOOST_TEST(*cpu_limit_cores(self, c.root.string()) == 0.05, boost::test_tools::tolerance(1e-9));
  // Unlimited (-1) and unreadable: no limit.
  BOOST_TEST(!cpu_limit_cores("1:cpu:/elsewhere\n", (c.root / "missing").string()).has_value());
}

BOOST_AUTO_TEST_CASE(a_cgroup_v2_cpu_max_is_read) {
  fake_cgroups c({{"svc/cpu.max", "25000 100000\n"}, {"cpu.max", "max 100000\n"}});
  auto limit = cpu_limit_cores("0::/svc\n", c.root.string());
  BOOST_TEST_REQUIRE(limit.has_value());
  BOOST_TEST(*limit == 0.25, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(!cpu_limit_cores("0::/\n", c.root.string()).has_value());
}

BOOST_AUTO_TEST_CASE(a_burst_under_a_quota_is_timed_at_the_sustained_rate) {
  // 1.3 ms of CPU that ran on the quota's burst in 1.4 ms at 9% of a core: 14.4 ms sustained.
  BOOST_TEST(sustained_ms(1.4, 1.3, 0.09) == 1.3 / 0.09, boost::test_tools::tolerance(1e-9));
  // Throttled already, or no quota, or a quota over one core (one thread): the wall time.
  BOOST_TEST(sustained_ms(20.0, 1.3, 0.09) == 20.0);
  BOOST_TEST(sustained_ms(1.4, 1.3, std::nullopt) == 1.4);
  BOOST_TEST(sustained_ms(1.4, 1.3, 2.0) == 1.4);
}

// Every layer of a tileable run gets its run's overhead, within its bounds; layers no tile can
// compute get none; a profile of another model is refused by name. (The values are timings:
// what they must be on this machine is for d3-bench tiling, not for a test.)
BOOST_AUTO_TEST_CASE(tile_overheads_cover_the_tileable_runs) {
  auto g = builtin_model("resnet18");
  BOOST_REQUIRE(g.is_ok());
  auto profile = measure_local_profile(*g, 2);
  BOOST_REQUIRE_MESSAGE(profile.is_ok(), profile.message());
  BOOST_REQUIRE(profile->tile_overhead.size() == g->layers.size());
  int measured = 0;
  for (size_t l = 0; l < g->layers.size(); ++l) {
    const double a = profile->tile_overhead[l];
    BOOST_TEST((a >= -0.5 && a <= 0.9), g->layers[l].name << ": " << a);
    if (!tileable_layer(*g, int(l)) || g->layers[l].kind == layer_kind::input)
      BOOST_TEST(a == 0.0, g->layers[l].name << " is not tileable but has overhead " << a);
    measured += a != 0.0;
  }
  BOOST_TEST(measured >= 20, measured << " layers measured");  // conv1..layer4, 20 convolutions among them
  layer_profile other;
  other.milliseconds.assign(3, 1.0);
  auto tensors = tensors_of_sample_run(*g);
  BOOST_REQUIRE(tensors.is_ok());
  const status refused = measure_tile_overheads(*g, *tensors, other, 1);
  BOOST_TEST(!refused.is_ok());
  BOOST_TEST(refused.message().find("3 layers") != std::string::npos, refused.message());
}

