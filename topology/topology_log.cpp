#include "topology/topology_log.hpp"

#include <chrono>
#include <ctime>
#include <map>
#include <algorithm>
#include <sstream>

#include "base/json_integer.hpp"

namespace d3 {

namespace {

// Actors are keyed by (plan version, actor id): stage ids restart at 0 in every plan version,
// and versions live side by side during a migration or a failover.
// Actor keys are version * versions_apart + id in an int: ids and versions beyond these bounds are
// malformed events (ignored like any other malformed field).
constexpr int versions_apart = 1000000;
constexpr int max_version = 2000;
int actor_key(int version, int id) { return version * versions_apart + id; }
int actor_id(int key) { return key % versions_apart; }

struct live_actor {
  topology_event spawned;
  bool exited = false;
};

struct live_node {
  std::string role, address, since;
  bool up = false;
  std::vector<int> actors;  // spawn order
};

struct deployment_state {
  std::map<std::string, live_node> nodes;  // by name
  std::map<int, live_actor> actors;        // by id
  std::vector<std::string> node_order;
  std::string plan;                        // "version V (strategy S) of model M"
};

std::string text(const topology_event& e, const char* key) {
  if (!e.contains(key)) return "";
  const auto& v = e.at(key);
  return v.is_string() ? v.get<std::string>() : v.dump();
}

live_node& node_named(deployment_state& s, const std::string& name) {
  if (!s.nodes.count(name)) s.node_order.push_back(name);
  return s.nodes[name];
}

deployment_state replay(const std::vector<topology_event>& events) {
  deployment_state s;
  for (const topology_event& e : events) {
    const std::string kind = text(e, "event");
    if (kind == "node_up") {
      live_node& n = node_named(s, text(e, "node"));
      n.up = true;
      n.role = text(e, "role");
      n.address = text(e, "address");
      n.since = text(e, "time");
    } else if (kind == "node_down") {
      node_named(s, text(e, "node")).up = false;
    } else if (kind == "node_rejoined") {
      node_named(s, text(e, "node")).up = true;
    } else if (kind == "plan_retired" && e.contains("version") && json_integer(e.at("version"), 0, max_version)) {
      const int version = int(*json_integer(e.at("version"), 0, max_version));
      for (auto& [key, actor] : s.actors)
        if (key / versions_apart == version) actor.exited = true;
    } else if (kind == "plan_deployed") {
      s.plan = "plan version " + text(e, "version") + " (" + text(e, "strategy") + ") of " + text(e, "model");
    } else if (kind == "actor_spawned" && e.contains("actor") && json_integer(e.at("actor"), 0, versions_apart - 1)) {
      const int version = e.contains("plan_version") ? int(json_integer(e.at("plan_version"), 0, max_version).value_or(0)) : 0;
      const int key = actor_key(version, int(*json_integer(e.at("actor"), 0, versions_apart - 1)));
      s.actors[key] = {e, false};
      node_named(s, text(e, "node")).actors.push_back(key);
    } else if (kind == "actor_exited" && e.contains("actor") && json_integer(e.at("actor"), 0, versions_apart - 1)) {
      // Its version when logged, else the newest live actor with this id.
      const int id = int(*json_integer(e.at("actor"), 0, versions_apart - 1));
      if (e.contains("plan_version") && json_integer(e.at("plan_version"), 0, max_version)) {
        auto it = s.actors.find(actor_key(int(*json_integer(e.at("plan_version"), 0, max_version)), id));
        if (it != s.actors.end()) it->second.exited = true;
      } else {
        for (auto it = s.actors.rbegin(); it != s.actors.rend(); ++it)
          if (actor_id(it->first) == id && !it->second.exited) {
            it->second.exited = true;
            break;
          }
      }
    }
  }
  return s;
}

std::string describe_actor(int id, const topology_event& e) {
  std::ostringstream out;
  out << "actor " << id << " " << text(e, "kind");
  if (e.contains("tile")) out << " " << text(e, "tile");
  if (e.contains("layers") && e.at("layers").is_array() && !e.at("layers").empty()) {
    const auto& layers = e.at("layers");
    // Names as written, anything else as its JSON (a malformed log still renders).
    auto name = [](const topology_event& v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
    out << ": " << name(layers.front());
    if (layers.size() > 1) out << ".." << name(layers.back());
  }
  if (e.contains("region")) out << ", " << text(e, "region");
  return out.str();
}

std::string dot_quote(const std::string& s) {
  std::string q = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') q += '\\';
    q += c;
  }
  return q + "\"";
}

}  // namespace

std::string utc_now_iso8601() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const long millis = long(std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buffer[40];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%S", &utc);
  char result[48];
  std::snprintf(result, sizeof result, "%s.%03ldZ", buffer, millis);
  return result;
}

result<std::unique_ptr<topology_log>> topology_log::open(const std::string& path) {
  std::unique_ptr<topology_log> log(new topology_log);
  log->out_.open(path, std::ios::app);
  if (!log->out_) return status::error("cannot open topology log '" + path + "' for writing");
  return log;
}

void topology_log::write(topology_event event) {
  if (!event.contains("time")) event["time"] = utc_now_iso8601();
  std::lock_guard<std::mutex> lock(mutex_);
  out_ << event.dump() << '\n';
  out_.flush();
}

result<std::vector<topology_event>> read_topology_log(const std::string& path) {
  std::ifstream in(path);
  if (!in) return status::error("cannot open topology log '" + path + "'");
  return read_topology_log(in, path);
}

result<std::vector<topology_event>> read_topology_log(std::istream& in, const std::string& path) {
  std::vector<topology_event> events;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      topology_event e = topology_event::parse(line);
      if (!e.is_object() || !e.contains("event"))
        return status::error("topology log '" + path + "' line " + std::to_string(number) + ": not an event object");
      events.push_back(std::move(e));
    } catch (const std::exception& e) {
      return status::error("topology log '" + path + "' line " + std::to_string(number) + ": malformed JSON (" + e.what() + ")");
    }
  }
  return events;
}

std::vector<topology_event> as_deployed(const std::vector<topology_event>& events) {
  size_t last_plan = events.size();
  for (size_t i = 0; i < events.size(); ++i)
    if (text(events[i], "event") == "plan_deployed") last_plan = i;
  if (last_plan == events.size()) return events;
  size_t end = last_plan;
  while (end < events.size() && text(events[end], "event") != "actor_exited") ++end;
  return std::vector<topology_event>(events.begin(), events.begin() + long(end));
}

std::string render_topology_tree(const std::vector<topology_event>& events) {
  deployment_state s = replay(events);
  std::ostringstream out;
  if (!s.plan.empty()) out << s.plan << "\n";
  for (const std::string& name : s.node_order) {
    const live_node& n = s.nodes.at(name);
    out << "node " << name;
    if (!n.role.empty()) out << " (" << n.role << (n.address.empty() ? "" : ", " + n.address) << ")";
    out << (n.up ? "" : " [down]");
    if (!n.since.empty()) out << " up since " << n.since;
    out << "\n";
    std::vector<int> live;
    for (int id : n.actors)
      if (!s.actors.at(id).exited) live.push_back(id);
    if (live.empty()) out << "  (no actors)\n";
    for (size_t i = 0; i < live.size(); ++i) {
      const topology_event& e = s.actors.at(live[i]).spawned;
      out << (i + 1 == live.size() ? "  └─ " : "  ├─ ") << describe_actor(actor_id(live[i]), e) << "  since " << text(e, "time");
      if (e.contains("plan_version")) out << " (plan v" << text(e, "plan_version") << ")";
      out << "\n";
    }
  }
  return out.str();
}

std::string render_topology_dot(const std::vector<topology_event>& events) {
  deployment_state s = replay(events);
  // DOT names: "a<id>" for the newest version's actors, "a<id>_v<version>" for older ones still live.
  int newest = 0;
  for (const auto& [key, actor] : s.actors) newest = std::max(newest, key / versions_apart);
  auto dot_name = [&](int key) {
    const int version = key / versions_apart;
    return "a" + std::to_string(actor_id(key)) + (version == newest ? "" : "_v" + std::to_string(version));
  };
  std::ostringstream out;
  out << "digraph d3 {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\", fontsize=10];\n";
  if (!s.plan.empty()) out << "  label=" << dot_quote(s.plan) << ";\n";
  int cluster = 0;
  for (const std::string& name : s.node_order) {
    const live_node& n = s.nodes.at(name);
    out << "  subgraph cluster_" << cluster++ << " {\n    label=" << dot_quote(name + (n.role.empty() ? "" : " (" + n.role + ")"))
        << ";\n";
    for (int id : n.actors)
      if (!s.actors.at(id).exited)
        out << "    " << dot_name(id) << " [label=" << dot_quote(describe_actor(actor_id(id), s.actors.at(id).spawned)) << "];\n";
    out << "  }\n";
  }
  for (const auto& [id, actor] : s.actors) {
    if (actor.exited || !actor.spawned.contains("sends_to")) continue;
    for (const auto& to : actor.spawned.at("sends_to")) {
      auto to_id = json_integer(to, 0, versions_apart - 1);
      if (!to_id) continue;
      const int target = actor_key(id / versions_apart, int(*to_id));  // sends stay within a version
      auto it = s.actors.find(target);
      if (it != s.actors.end() && !it->second.exited) out << "  " << dot_name(id) << " -> " << dot_name(target) << ";\n";
    }
  }
  out << "}\n";
  return out.str();
}

}  // namespace d3
