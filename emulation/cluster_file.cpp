#include "emulation/cluster_file.hpp"

#include <set>

#include <nlohmann/json.hpp>

#include "base/text_file.hpp"
#include "emulation/testbed_file.hpp"

namespace d3 {

namespace {

result<cluster_member> parse_node(const nlohmann::json& n, const std::string& where) {
  if (!n.is_object()) return status::error(where + " must be an object {\"name\", \"port\", ...}");
  cluster_member node;
  for (const auto& [key, value] : n.items()) {
    const std::string at = where + "." + key;
    if (key == "port") {
      if (!value.is_number_integer() || value.get<int64_t>() < 1 || value.get<int64_t>() > 65535)
        return status::error(at + " must be a port in [1, 65535]");
      node.port = uint16_t(value.get<int64_t>());
      continue;
    }
    if (!value.is_string()) return status::error(at + " must be a string");
    if (key == "name") node.name = value.get<std::string>();
    else if (key == "role") node.role = value.get<std::string>();
    else if (key == "host") node.host = value.get<std::string>();
    else if (key == "config") node.config = value.get<std::string>();
    else if (key != "comment") return status::error(where + ": unknown key '" + key + "' (name, role, host, port, config)");
  }
  if (node.name.empty()) return status::error(where + " needs a name");
  if (node.port == 0) return status::error(where + " (node '" + node.name + "') needs a port");
  if (node.host.empty()) return status::error(where + " (node '" + node.name + "'): host is empty");
  if (node.role.empty()) node.role = node.name.rfind("edge", 0) == 0 ? "edge" : node.name;
  return node;
}

result<tls_settings> parse_tls(const nlohmann::json& t, const std::string& where) {
  if (t.is_boolean()) {
    if (t.get<bool>()) return status::error(where + ": true is not enough: give {\"dir\": ...} or the files");
    return tls_settings::off();
  }
  if (!t.is_object()) return status::error(where + " must be false or an object {\"dir\", \"name\"} or {\"ca\", \"certificate\", \"key\"}");
  std::string dir, name = "app";
  tls_settings files;
  for (const auto& [key, value] : t.items()) {
    if (!value.is_string()) return status::error(where + "." + key + " must be a string");
    const std::string text = value.get<std::string>();
    if (key == "dir") dir = text;
    else if (key == "name") name = text;
    else if (key == "ca") files.ca_file = text;
    else if (key == "certificate") files.certificate_file = text;
    else if (key == "key") files.key_file = text;
    else if (key == "passphrase") files.passphrase = text;
    else if (key != "comment")
      return status::error(where + ": unknown key '" + key + "' (dir, name, ca, certificate, key, passphrase)");
  }
  if (!dir.empty()) {
    if (!files.ca_file.empty() || !files.certificate_file.empty() || !files.key_file.empty())
      return status::error(where + ": give either dir (and name) or the files ca, certificate and key, not both");
    tls_settings s = tls_settings::from_dir(dir, name);
    s.passphrase = files.passphrase;
    return s;
  }
  if (!files.configured()) return status::error(where + " needs dir, or all of ca, certificate and key");
  return files;
}

}  // namespace

result<testbed> cluster_file::emulated_testbed(const std::string& override_uplink) const {
  auto t = testbed::with_uplink(override_uplink.empty() ? uplink : override_uplink);
  if (!t) return status::error(source + ": testbed: " + t.message());
  for (const auto& [pair, link] : links)
    if (status known = t->set_link(pair, link); !known) return status::error(source + ": testbed: " + known.message());
  return t;
}

std::map<std::string, std::string> cluster_file::roles() const {
  std::map<std::string, std::string> out;
  for (const cluster_member& n : nodes) out[n.name] = n.role;
  return out;
}

result<cluster_file> parse_cluster_json(const std::string& text, const std::string& source) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return status::error(source + ": not valid JSON");
  if (!j.is_object()) return status::error(source + " must be an object {\"nodes\": [...], ...}");
  cluster_file c;
  c.source = source;
  for (const auto& [key, value] : j.items()) {
    if (key == "nodes") {
      if (!value.is_array()) return status::error(source + ": nodes must be an array");
      std::set<std::string> names;
      for (size_t i = 0; i < value.size(); ++i) {
        auto node = parse_node(value[i], source + ": nodes[" + std::to_string(i) + "]");
        if (!node) return node.error();
        if (!names.insert(node->name).second) return status::error(source + ": node '" + node->name + "' is named twice");
        c.nodes.push_back(std::move(node.value()));
      }
    } else if (key == "testbed") {
      if (!value.is_object()) return status::error(source + ": testbed must be an object {\"uplink\", \"links\"}");
      c.has_testbed = true;
      for (const auto& [tkey, tvalue] : value.items()) {
        if (tkey == "uplink") {
          if (!tvalue.is_string()) return status::error(source + ": testbed.uplink must be a string (CAT1, 3G, 4G, WiFi)");
          c.uplink = tvalue.get<std::string>();
        } else if (tkey == "links") {
          if (!tvalue.is_object()) return status::error(source + ": testbed.links must be an object of ROLE-PAIR: link");
          for (const auto& [pair, link] : tvalue.items()) {
            auto profile = parse_link_json(link, source + ": testbed.links." + pair);
            if (!profile) return profile.error();
            c.links[pair] = *profile;
          }
        } else if (tkey != "comment") {
          return status::error(source + ": testbed: unknown key '" + tkey + "' (uplink, links)");
        }
      }
    } else if (key == "tls") {
      auto tls = parse_tls(value, source + ": tls");
      if (!tls) return tls.error();
      c.has_tls = true;
      c.tls = tls.value();
    } else if (key != "comment") {
      return status::error(source + ": unknown key '" + key + "' (nodes, testbed, tls)");
    }
  }
  if (c.nodes.empty()) return status::error(source + " lists no nodes");
  if (auto t = c.emulated_testbed(); !t) return t.error();  // the uplink and role pairs are known ones
  return c;
}

result<cluster_file> load_cluster_file(const std::string& path) {
  auto text = read_text_file(path, "cluster file");
  if (!text) return text.error();
  return parse_cluster_json(*text, "cluster file '" + path + "'");
}

}  // namespace d3
