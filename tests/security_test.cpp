// Security with real d3-node processes: mutual TLS refuses every peer without a certificate of
// the cluster's CA (plaintext, another CA, expired), on both sides of a connection, and logs the
// refusal; bounded inputs: a node refuses what exceeds its limits and keeps serving.
#define BOOST_TEST_MODULE security_test
#include <boost/test/unit_test.hpp>

#include "tests/node_cluster.hpp"

#ifndef D3_SOURCE_DIR
#error "D3_SOURCE_DIR (for scripts/make-certs.sh) must be defined by the build"
#endif

namespace {

using namespace d3_test;

// A folder of certificates made by scripts/make-certs.sh for this test; removed at the end.
struct cert_folder {
  std::string dir;
  cert_folder() {
    char tmpl[] = "/tmp/d3-security-test-XXXXXX";
    BOOST_REQUIRE(mkdtemp(tmpl) != nullptr);
    dir = tmpl;
  }
  ~cert_folder() { std::system(("rm -rf '" + dir + "'").c_str()); }
  // scripts/make-certs.sh OPTIONS DIR NAMES, e.g. make("--expired", "app").
  void make(const std::string& options, const std::string& names) {
    const std::string command =
        std::string(D3_SOURCE_DIR) + "/scripts/make-certs.sh " + options + " '" + dir + "' " + names + " > /dev/null";
    BOOST_REQUIRE_MESSAGE(std::system(command.c_str()) == 0, command);
  }
  // The cluster's own CA, copied here with its key (to sign an expired certificate with it).
  void copy_cluster_ca() {
    const std::string command = std::string("cp '") + D3_CERT_DIR + "/ca.pem' '" + D3_CERT_DIR + "/ca.key' '" + dir + "/'";
    BOOST_REQUIRE(std::system(command.c_str()) == 0);
  }
};

// The node's log, once it holds `text` (the refusal is logged by the node's I/O thread).
std::string log_with(const node_process& n, const std::string& text) {
  std::string log;
  for (int i = 0; i < 100; ++i) {
    log = read_file(n.log);
    if (log.find(text) != std::string::npos) break;
    std::this_thread::sleep_for(20ms);
  }
  return log;
}

d3::status connect_as(const d3::tls_settings& tls, const std::vector<d3::node_endpoint>& nodes) {
  app_system app(tls);
  d3::deployment_options options;
  options.timeout = 5s;
  d3::deployment dep(*app.system, options);
  return dep.connect(nodes);
}

const cluster::layout_type one_edge = {{"edge1", "edge"}};

// The cluster's cloud restarted with `limits` (lines of its [d3] section), and a deployment
// connected to every node.
std::unique_ptr<d3::deployment> connected_with_limited_cloud(cluster& c, const std::string& limits,
                                                            size_t shipment_bytes = size_t(32) << 20) {
  c.signal("cloud", SIGKILL);
  c.restart("cloud", 1.0, limits);
  d3::deployment_options options;
  options.timeout = 20s;
  options.shipment_bytes = shipment_bytes;
  auto dep = std::make_unique<d3::deployment>(*c.system, options);
  BOOST_REQUIRE(dep->connect(c.endpoints()).is_ok());
  return dep;
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_cluster_identity_is_admitted) {
  cluster c({}, one_edge);
  const d3::status connected = connect_as(test_identity("app"), c.endpoints());
  BOOST_TEST(connected.is_ok(), connected.message());
}

BOOST_AUTO_TEST_CASE(a_plaintext_peer_is_refused_and_the_node_logs_it) {
  cluster c({}, one_edge);
  const d3::status connected = connect_as(d3::tls_settings::off(), c.endpoints());
  BOOST_REQUIRE(!connected.is_ok());
  BOOST_TEST(connected.message().find("cannot connect to node 'edge1'") != std::string::npos, connected.message());
  const std::string log = log_with(c.node("edge1"), "refused TLS peer");
  BOOST_TEST(log.find("refused TLS peer 127.0.0.1:") != std::string::npos, log);
  BOOST_TEST(log.find("does not speak TLS") != std::string::npos, log);
}

BOOST_AUTO_TEST_CASE(a_certificate_of_another_ca_is_refused_and_the_node_logs_it) {
  // The intruder knows the cluster's CA certificate (it is public) but has no certificate the
  // cluster CA signed: its own CA signed it.
  cert_folder foreign;
  foreign.make("", "app");
  d3::tls_settings intruder = d3::tls_settings::from_dir(foreign.dir, "app");
  intruder.ca_file = test_identity("app").ca_file;
  cluster c({}, one_edge);
  const d3::status connected = connect_as(intruder, c.endpoints());
  BOOST_REQUIRE(!connected.is_ok());
  BOOST_TEST(connected.message().find("TLS") != std::string::npos, connected.message());
  const std::string log = log_with(c.node("edge1"), "refused TLS peer");
  BOOST_TEST(log.find("does not verify against the cluster CA") != std::string::npos, log);
  BOOST_TEST(log.find("CN=app") != std::string::npos, log);  // the subject it presented
}

BOOST_AUTO_TEST_CASE(an_expired_certificate_of_the_cluster_ca_is_refused_and_the_node_logs_it) {
  cert_folder expired;
  expired.copy_cluster_ca();
  expired.make("--expired", "app");
  BOOST_REQUIRE(!d3::check_tls_identity(d3::tls_settings::from_dir(expired.dir, "app"), "test").is_ok());
  cluster c({}, one_edge);
  const d3::status connected = connect_as(d3::tls_settings::from_dir(expired.dir, "app"), c.endpoints());
  BOOST_REQUIRE(!connected.is_ok());
  const std::string log = log_with(c.node("edge1"), "refused TLS peer");
  BOOST_TEST(log.find("certificate has expired") != std::string::npos, log);
}

BOOST_AUTO_TEST_CASE(the_app_refuses_a_node_without_a_certificate_of_the_cluster_ca) {
  // A node of another cluster (its own CA) on the address the app expects: the app refuses it
  // (the other direction of the same check; d3-node itself does not start with a certificate its
  // CA did not sign).
  cert_folder foreign;
  foreign.make("", "edge1");
  const d3::tls_settings impostor = d3::tls_settings::from_dir(foreign.dir, "edge1");
  cluster c({}, {});
  c.start("edge1", "edge", 1.0, 0, "", impostor);
  c.wait_listening(c.nodes.back());
  const d3::status connected = connect_as(test_identity("app"), c.endpoints());
  BOOST_REQUIRE(!connected.is_ok());
  BOOST_TEST(connected.message().find("does not verify against the cluster CA") != std::string::npos, connected.message());
}

BOOST_AUTO_TEST_CASE(the_app_refuses_a_plaintext_node) {
  cluster c({}, {});
  c.start("edge1", "edge", 1.0, 0, "", d3::tls_settings::off());
  c.wait_listening(c.nodes.back());
  BOOST_TEST(read_file(c.node("edge1").log).find("WARNING: d3-node edge1 runs without TLS") != std::string::npos);
  const d3::status connected = connect_as(test_identity("app"), c.endpoints());
  BOOST_REQUIRE(!connected.is_ok());
  BOOST_TEST(connected.message().find("does not speak TLS") != std::string::npos, connected.message());
}

// Bounded inputs: a node refuses a layer shipment over its max_message_mb and a stage over its
// max_stages, with an error naming the limit, and keeps serving what fits.
BOOST_FIXTURE_TEST_CASE(a_node_refuses_what_exceeds_its_limits_and_keeps_serving, cluster) {
  auto connected = connected_with_limited_cloud(*this, "max_message_mb=1\nmax_stages=2\n");
  d3::deployment& dep = *connected;
  const d3::graph& g = resnet18();
  auto refused = dep.deploy(g, three_tier_plan(false));  // the cloud would get layer3..fc: 2-9 MB layers
  BOOST_REQUIRE(!refused.is_ok());
  BOOST_TEST(refused.message().find("max_message_mb") != std::string::npos, refused.message());
  BOOST_TEST(refused.message().find("cloud") != std::string::npos, refused.message());
  // Two weightless stages fit on the cloud; a third does not.
  d3::deployment_plan small;
  small.segments = {{"device", "conv1", "layer4.1.add"}, {"cloud", "avgpool", "flatten"}, {"edge1", "fc", "fc"}};
  auto deployed = dep.deploy(g, small);
  BOOST_REQUIRE_MESSAGE(deployed.is_ok(), deployed.message());
  auto inputs = inputs_for(g, 3, 901);
  check_answers(g, inputs, dep.run(inputs, 1));
  d3::deployment_plan more = small;
  more.segments = {{"device", "conv1", "layer4.1.add"}, {"cloud", "avgpool", "avgpool"}, {"cloud", "flatten", "flatten"},
                   {"edge1", "fc", "fc"}};
  dep.teardown();
  // The stages exit asynchronously: the count is checked at setup, after the round trip teardown waits for.
  auto too_many = dep.deploy(g, more);
  if (too_many) {  // two stages fit; the first deployment's were gone: spawn a third version next to it
    d3::deployment_plan third = more;
    third.version = 2;
    auto migrated = dep.migrate(g, third);
    BOOST_REQUIRE(!migrated.is_ok());
    BOOST_TEST(migrated.message().find("max_stages") != std::string::npos, migrated.message());
  } else {
    BOOST_TEST(too_many.message().find("max_stages") != std::string::npos, too_many.message());
  }
  auto again = dep.deploy(g, small);  // and it still serves
  BOOST_REQUIRE_MESSAGE(again.is_ok(), again.message());
  check_answers(g, inputs, dep.run(inputs, 1));
}

// A shipment listing more layers than max_layers is refused (counted before any layer is read);
// the node keeps serving shipments that fit.
BOOST_FIXTURE_TEST_CASE(a_node_refuses_a_shipment_of_too_many_layers, cluster) {
  auto connected = connected_with_limited_cloud(*this, "max_layers=4\n");
  d3::deployment& dep = *connected;
  const d3::graph& g = resnet18();
  auto refused = dep.deploy(g, three_tier_plan(false));  // the cloud would get layer3.0.conv1..fc at once
  BOOST_REQUIRE(!refused.is_ok());
  BOOST_TEST(refused.message().find("exceeds max_layers (4)") != std::string::npos, refused.message());
  d3::deployment_plan small;
  small.segments = {{"device", "conv1", "layer4.1.add"}, {"cloud", "avgpool", "fc"}};  // 3 layers on the cloud
  auto deployed = dep.deploy(g, small);
  BOOST_REQUIRE_MESSAGE(deployed.is_ok(), deployed.message());
  auto inputs = inputs_for(g, 2, 77);
  check_answers(g, inputs, dep.run(inputs, 1));
}

// A layer larger than a node's max_message_mb arrives in parts (resnet18's layer4 convolutions
// are 9.4 MB; the cloud accepts 1 MB per message): deployed, answered memcmp-equal. A node whose
// max_upload_mb is below such a layer refuses it naming the limit, and keeps serving.
BOOST_FIXTURE_TEST_CASE(a_layer_over_max_message_mb_is_shipped_in_parts_within_max_upload_mb, cluster) {
  const d3::graph& g = resnet18();
  auto inputs = inputs_for(g, 2, 4242);
  {
    auto connected = connected_with_limited_cloud(*this, "max_message_mb=1\n", size_t(768) << 10);
    auto deployed = connected->deploy(g, three_tier_plan(false));  // the cloud gets layer3..fc
    BOOST_REQUIRE_MESSAGE(deployed.is_ok(), deployed.message());
    BOOST_TEST(deployed->weight_bytes_per_node.at("cloud") > size_t(20) << 20);
    check_answers(g, inputs, connected->run(inputs, 1));
  }
  auto connected = connected_with_limited_cloud(*this, "max_message_mb=1\nmax_upload_mb=4\n", size_t(768) << 10);
  auto refused = connected->deploy(g, three_tier_plan(false));
  BOOST_REQUIRE(!refused.is_ok());
  BOOST_TEST(refused.message().find("exceeds max_upload_mb (4 MB)") != std::string::npos, refused.message());
  BOOST_TEST(refused.message().find("cloud") != std::string::npos, refused.message());
  d3::deployment_plan small;
  small.segments = {{"device", "conv1", "layer4.1.add"}, {"cloud", "avgpool", "fc"}};  // fc: 2 MB, in 3 parts
  auto deployed = connected->deploy(g, small);
  BOOST_REQUIRE_MESSAGE(deployed.is_ok(), deployed.message());
  check_answers(g, inputs, connected->run(inputs, 1));
}

// Parts that do not follow each other are refused, each naming what is wrong, and drop their
// upload; the node keeps answering (raw messages, as a peer that does not follow the protocol
// would send them).
BOOST_FIXTURE_TEST_CASE(a_node_refuses_parts_out_of_order_and_totals_over_its_limit, cluster) {
  signal("cloud", SIGKILL);
  restart("cloud", 1.0, "max_upload_mb=1\n");
  const d3::node_endpoint cloud = endpoints().back();
  BOOST_REQUIRE_EQUAL(cloud.name, "cloud");
  caf::scoped_actor self{*system};
  d3::protocol::node_handle node;
  self->request(d3::transport::connector(*system), 10s, caf::connect_atom::value, cloud.host, cloud.port)
      .receive([&](const caf::node_id&, caf::strong_actor_ptr& ptr,
                   const std::set<std::string>&) { node = caf::actor_cast<d3::protocol::node_handle>(ptr); },
               [&](caf::error& e) { BOOST_FAIL("cannot connect to the cloud: " + system->render(e)); });
  BOOST_REQUIRE(node);
  // (upload, offset, total, part size) -> the refusal's text, or "" for ok.
  auto send = [&](uint64_t upload, uint64_t offset, uint64_t total, size_t size) {
    std::string answer = "no answer";
    self->request(node, 10s, d3::protocol::ship_part_atom::value, upload, offset, total, d3::protocol::bytes(size))
        .receive([&](d3::protocol::ok_atom) { answer = ""; },
                 [&](caf::error& e) { answer = d3::protocol::describe(*system, e, 10s); });
    return answer;
  };
  BOOST_TEST(send(1, 100, 1000, 10).find("not begun") != std::string::npos);
  BOOST_TEST(send(2, 0, size_t(2) << 20, 10).find("exceeds max_upload_mb (1 MB)") != std::string::npos);
  BOOST_TEST(send(3, 0, 1000, 400) == "");
  BOOST_TEST(send(3, 500, 1000, 400).find("does not follow the 400 of 1000 bytes received") != std::string::npos);
  BOOST_TEST(send(3, 400, 1000, 400).find("not begun") != std::string::npos);  // the upload was dropped
  BOOST_TEST(send(4, 0, 1000, 600) == "");
  BOOST_TEST(send(4, 600, 1000, 500).find("does not follow") != std::string::npos);  // past the total
  // A complete upload of bytes that are no shipment: refused by the decoder, naming it.
  BOOST_TEST(send(5, 0, 64, 32) == "");
  const std::string garbage = send(5, 32, 64, 32);
  BOOST_TEST(!garbage.empty());
  BOOST_TEST(garbage.find("node cloud") != std::string::npos, garbage);
  std::string info;
  self->request(node, 10s, d3::protocol::info_atom::value)
      .receive([&](const d3::protocol::node_info& i) { info = i.name; }, [&](caf::error&) {});
  BOOST_TEST(info == "cloud");
}

