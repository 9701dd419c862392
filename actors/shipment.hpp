// Layer shipments from the app to a node: which layers go in one message, how a message larger
// than a node accepts goes in acknowledged parts, and a migration's shipments sent by a worker
// thread while the app's request loop keeps serving (wall clock: the bytes cross the real links
// for as long as they take, and no request should wait for them unless it shares those links).
#pragma once

#include <caf/all.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "actors/protocol.hpp"
#include "base/send_backlog.hpp"
#include "base/status.hpp"
#include "kernels/graph.hpp"

namespace d3 {

// `layers` in their order, cut into runs of at most `limit` weight bytes (a layer larger than
// that alone): one message each.
std::vector<std::vector<int>> weight_chunks(const graph& g, const std::vector<int>& layers, size_t limit);
size_t weight_bytes_of(const graph& g, const std::vector<int>& layers);

// One encoded shipment to `node` (named `name` in errors): one message, or, when larger than
// `part_bytes`, parts of `part_bytes` in order (upload `upload_id`), each acknowledged before the
// next, so that no message exceeds what a node accepts (max_message_mb) and the node holds one
// copy. `backlog` (optional) is told of every message sent and of its acknowledgement.
status send_shipment(caf::scoped_actor& self, const protocol::node_handle& node, const std::string& name,
                     protocol::bytes payload, size_t layers, size_t part_bytes, uint64_t upload_id,
                     std::chrono::milliseconds timeout, send_backlog* backlog = nullptr);

// What one node is shipped: the layers in chunks (weight_chunks), in order.
struct shipment_job {
  std::string node;
  protocol::node_handle handle;
  std::vector<std::vector<int>> chunks;
};

// Ships `jobs` on a thread of its own (with its own scoped actor), then tells `notify` with
// (shipped_atom, version, error: empty when every chunk was acknowledged), its parts counted in
// `backlog`. Preconditions: `g` and `backlog` outlive the shipper, `g` is not modified
// meanwhile; `notify` is a local actor. The destructor
// cancels what is not sent yet (the chunk under way finishes or times out) and joins the thread.
class background_shipper {
 public:
  background_shipper(caf::actor_system& system, const graph& g, uint64_t model_hash, std::vector<shipment_job> jobs,
                     size_t part_bytes, uint64_t upload_seed, std::chrono::milliseconds timeout, caf::actor notify,
                     int32_t version, send_backlog* backlog);
  ~background_shipper();
  background_shipper(const background_shipper&) = delete;
  background_shipper& operator=(const background_shipper&) = delete;

  // Waits for the thread (after its notice has come); the bytes of the messages it sent.
  size_t join();

 private:
  std::atomic<bool> cancelled_{false};
  size_t message_bytes_ = 0;  // written by the thread only, read after join
  std::thread worker_;
};

}  // namespace d3
