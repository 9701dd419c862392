#include "actors/shipment.hpp"

#include <algorithm>
#include <random>

#include "actors/ask.hpp"
#include "schema/bundle.hpp"

namespace d3 {

std::vector<std::vector<int>> weight_chunks(const graph& g, const std::vector<int>& layers, size_t limit) {
  std::vector<std::vector<int>> chunks;
  size_t bytes = 0;
  for (int l : layers) {
    const size_t b = weight_bytes(g.layers[size_t(l)]);
    if (chunks.empty() || (!chunks.back().empty() && bytes + b > limit)) {
      chunks.emplace_back();
      bytes = 0;
    }
    chunks.back().push_back(l);
    bytes += b;
  }
  return chunks;
}

size_t weight_bytes_of(const graph& g, const std::vector<int>& layers) {
  size_t bytes = 0;
  for (int l : layers) bytes += weight_bytes(g.layers[size_t(l)]);
  return bytes;
}

status send_shipment(caf::scoped_actor& self, const protocol::node_handle& node, const std::string& name,
                     protocol::bytes payload, size_t layers, size_t part_bytes, uint64_t upload_id,
                     std::chrono::milliseconds timeout, send_backlog* backlog) {
  const std::string what = "shipping " + std::to_string(layers) + " layers to node '" + name + "'";
  part_bytes = std::max<size_t>(1, part_bytes);
  if (backlog) backlog->sent(name, std::min(part_bytes, payload.size()));
  auto acknowledged = [&](status done) {
    if (done && backlog) backlog->arrived(name);
    return done;
  };
  if (payload.size() <= part_bytes)
    return acknowledged(command(self, node, timeout, what, protocol::ship_atom::value, std::move(payload)));
  const size_t parts = (payload.size() + part_bytes - 1) / part_bytes;
  for (size_t k = 0, offset = 0; offset < payload.size(); ++k, offset += part_bytes) {
    const size_t n = std::min(part_bytes, payload.size() - offset);
    protocol::bytes part(payload.begin() + ptrdiff_t(offset), payload.begin() + ptrdiff_t(offset + n));
    if (backlog && k > 0) backlog->sent(name, n);
    D3_RETURN_IF_ERROR(acknowledged(command(self, node, timeout,
                                            what + " (part " + std::to_string(k + 1) + " of " + std::to_string(parts) +
                                                ", " + std::to_string(payload.size()) + " bytes in all)",
                                            protocol::ship_part_atom::value, uint64_t(upload_id), uint64_t(offset),
                                            uint64_t(payload.size()), std::move(part))));
  }
  return status::ok();
}

background_shipper::background_shipper(caf::actor_system& system, const graph& g, uint64_t model_hash,
                                       std::vector<shipment_job> jobs, size_t part_bytes, uint64_t upload_seed,
                                       std::chrono::milliseconds timeout, caf::actor notify, int32_t version,
                                       send_backlog* backlog) {
  worker_ = std::thread([this, &system, &g, model_hash, jobs = std::move(jobs), part_bytes, upload_seed, timeout,
                         notify = std::move(notify), version, backlog] {
    std::string error;
    {
      caf::scoped_actor self{system};
      std::mt19937_64 upload_ids(upload_seed);
      for (const shipment_job& job : jobs) {
        for (const std::vector<int>& chunk : job.chunks) {
          if (cancelled_) {
            error = "cancelled";
            break;
          }
          protocol::bytes payload = encode_layers(g, chunk, model_hash, chunk);
          if (payload.empty()) {
            error = "cannot encode the layers shipped to node '" + job.node + "'";
            break;
          }
          message_bytes_ += payload.size();
          status sent = send_shipment(self, job.handle, job.node, std::move(payload), chunk.size(), part_bytes,
                                      upload_ids(), timeout, backlog);
          if (!sent) {
            error = sent.message();
            break;
          }
        }
        if (!error.empty()) break;
      }
    }
    caf::anon_send(notify, protocol::shipped_atom::value, version, error);
  });
}

background_shipper::~background_shipper() {
  cancelled_ = true;
  if (worker_.joinable()) worker_.join();
}

size_t background_shipper::join() {
  if (worker_.joinable()) worker_.join();
  return message_bytes_;
}

}  // namespace d3
