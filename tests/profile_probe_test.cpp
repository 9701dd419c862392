// A node's profile probe (profiling/profile_probe.hpp): a fragment sent without weights is timed
// layer by layer, with the message costs, and the answer is cached per model.
#define BOOST_TEST_MODULE profile_probe
#include <boost/test/unit_test.hpp>

#include <nlohmann/json.hpp>

#include "kernels/model_zoo.hpp"
#include "profiling/profile_probe.hpp"
#include "schema/bundle.hpp"

using namespace d3;

BOOST_AUTO_TEST_CASE(every_layer_is_timed_and_the_answer_cached) {
  auto g = builtin_model("mobilenet_v2");
  BOOST_REQUIRE(g.is_ok());
  std::vector<int> computed;
  for (size_t l = 0; l < g->layers.size(); ++l)
    if (g->layers[l].kind != layer_kind::input) computed.push_back(int(l));
  const std::vector<uint8_t> payload = encode_layers(*g, computed, model_hash(*g), {});  // no weights
  const std::string answer = profile_fragment(payload, 2);
  const nlohmann::json j = nlohmann::json::parse(answer);
  BOOST_REQUIRE_MESSAGE(!j.contains("error"), answer);
  for (int l : computed) {
    const std::string& name = g->layers[size_t(l)].name;
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
