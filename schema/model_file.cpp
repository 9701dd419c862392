// d3 model file layout:
//   bytes 0..7   "D3MODEL\0" (plain prefix: looks_like_model_file() needs no Cap'n Proto)
//   bytes 8..    one Cap'n Proto message in the standard stream framing (segment table, then the
//                segments), root schema::Model. Every segment starts 8-byte aligned in the file,
//                so Data blobs (weights) are 8-byte aligned inside a page-aligned mapping.
// Large weight blobs are written as their own segments straight from the graph's buffers
// (referenceExternalData + writev-like writes), so saving copies no weights either.
#include "schema/model_file.hpp"

#include <capnp/message.h>
#include <capnp/orphan.h>
#include <capnp/serialize.h>
#include <fcntl.h>
#include <kj/exception.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <exception>
#include <memory>
#include <vector>

#include "schema/layer_codec.hpp"
#include "schema/model.capnp.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "model files store little-endian float32; a big-endian host would need byte swaps");
static_assert(sizeof(float) == 4, "float32 expected");

namespace d3 {

namespace {

constexpr size_t word_bytes = sizeof(capnp::word);
constexpr char file_magic[8] = {'D', '3', 'M', 'O', 'D', 'E', 'L', '\0'};
constexpr size_t magic_bytes = sizeof(file_magic);
static_assert(magic_bytes % word_bytes == 0, "the message after the magic must stay 8-byte aligned");

constexpr size_t max_data_bytes = (size_t(1) << 29) - 1;  // Cap'n Proto List(UInt8) limit
constexpr size_t external_min_bytes = 4096;     // smaller blobs are copied into the message
constexpr size_t max_external_blobs = 256;      // keeps the segment table small
constexpr uint64_t max_segments = 1024;         // what the loader accepts


std::string quoted(const std::string& s) { return "'" + s + "'"; }
std::string errno_text(int e) { return std::strerror(e); }
size_t words_for_bytes(size_t bytes) { return (bytes + word_bytes - 1) / word_bytes; }

// ---------------------------------------------------------------- writing

bool write_all(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    size_t chunk = size < (size_t(1) << 30) ? size : (size_t(1) << 30);
    ssize_t n = ::write(fd, p, chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) {
      errno = EIO;
      return false;
    }
    p += n;
    size -= size_t(n);
  }
  return true;
}

bool referenceable(const weight_blob& b) {
  const size_t bytes = b.size() * sizeof(float);
  // referenceExternalData needs word alignment, and a size that is a whole number of words (or
  // the bytes up to the next word boundary would be read from past the buffer and written out).
  return bytes >= external_min_bytes && bytes % word_bytes == 0 &&
         reinterpret_cast<uintptr_t>(b.data()) % alignof(capnp::word) == 0;
}


// Writes the blob into `field` by reference (no copy) or by copy. Returns false when too large.
template <class Adopt, class Init>
bool put_blob(const weight_blob& b, capnp::Orphanage orphanage, size_t& external_count, Adopt adopt,
              Init init) {
  const size_t bytes = b.size() * sizeof(float);
  if (bytes == 0) return true;
  if (bytes > max_data_bytes) return false;
  if (referenceable(b) && external_count < max_external_blobs) {
    ++external_count;
    adopt(orphanage.referenceExternalData(
        capnp::Data::Reader(reinterpret_cast<const kj::byte*>(b.data()), bytes)));
  } else {
    capnp::Data::Builder d = init(static_cast<capnp::uint>(bytes));
    std::memcpy(d.begin(), b.data(), bytes);
  }
  return true;
}

// ---------------------------------------------------------------- reading

struct file_mapping {
  void* address = nullptr;
  size_t size = 0;
  file_mapping(void* a, size_t s) : address(a), size(s) {}
  file_mapping(const file_mapping&) = delete;
  file_mapping& operator=(const file_mapping&) = delete;
  ~file_mapping() {
    if (address != nullptr) ::munmap(address, size);
  }
};

struct fd_closer {
  int fd;
  ~fd_closer() {
    if (fd >= 0) ::close(fd);
  }
};


// The graph part of loading, inside the Cap'n Proto exception border. Errors lack the file prefix.
result<graph> read_graph(schema::Model::Reader root, const std::shared_ptr<const void>& owner) {
  if (root.getMagic() != schema::MODEL_MAGIC)
    return status::error("not a d3 model file (wrong magic in the model header)");
  if (root.getVersion() != schema::MODEL_FORMAT_VERSION)
    return status::error("unsupported format version " + std::to_string(root.getVersion()) +
                         " (this build reads version " + std::to_string(schema::MODEL_FORMAT_VERSION) + ")");
  graph g;
  g.name = std_string(root.getName());
  auto layers = root.getLayers();  // every getter once: the traversal limit is charged per call
  const size_t layer_count = layers.size();
  if (layer_count == 0) return status::error("the model has no layers");
  if (layer_count > size_t(max_layer_channels)) return status::error("too many layers");
  g.layers.resize(layer_count);

  std::shared_ptr<const void> keep_alive = owner;
  auto blob_of = [&](capnp::Data::Reader d, const std::string& what, weight_blob& out) -> status {
    if (d.size() % sizeof(float) != 0)
      return status::error(what + " are " + std::to_string(d.size()) +
                           " bytes, not a whole number of float32 values");
    const size_t count = d.size() / sizeof(float);
    if (count == 0) {
      out = weight_blob();
    } else if (reinterpret_cast<uintptr_t>(d.begin()) % alignof(float) == 0) {
      out = weight_blob::borrowed(reinterpret_cast<const float*>(d.begin()), count, keep_alive);
    } else {  // cannot happen for a well-formed message in an aligned mapping; copy to be safe
      std::vector<float> copy(count);
      std::memcpy(copy.data(), d.begin(), d.size());
      out = weight_blob::from_vector(std::move(copy));
    }
    return status::ok();
  };

  for (size_t i = 0; i < layer_count; ++i) {
    schema::Layer::Reader lr = layers[capnp::uint(i)];
    layer& l = g.layers[i];
    const std::string what = "layer " + std::to_string(i) + " " + quoted(std_string(lr.getName()));
    D3_RETURN_IF_ERROR(read_layer_fields(lr, layer_count, what, l));

    D3_RETURN_IF_ERROR(blob_of(lr.getWeights(), what + ": weights", l.weights));
    D3_RETURN_IF_ERROR(blob_of(lr.getBias(), what + ": bias", l.bias));
  }

  auto outputs = root.getOutputs();
  if (outputs.size() == 0) return status::error("the model has no outputs");
  for (uint32_t o : outputs) {
    if (o >= layer_count)
      return status::error("output index " + std::to_string(o) + " is out of range (the model has " +
                           std::to_string(layer_count) + " layers)");
    g.outputs.push_back(int(o));
  }
  return g;
}

// The bytes of a model file (magic, framing, message), validated and prepared; `owner` keeps them
// alive for the weights that point into them. Errors start with `prefix`.
result<graph> parse_model_image(const uint8_t* bytes, size_t size, const std::shared_ptr<const void>& owner,
                                const std::string& prefix);

}  // namespace

status save_model(const graph& g, const std::string& path) {
  const std::string tmp = path + ".tmp";
  std::vector<uint32_t> table;
  try {
    // First segment sized for everything that is copied, so the message is one segment plus one
    // per referenced weight blob.
    size_t copied_words = 64 + words_for_bytes(g.name.size() + 1) + g.outputs.size() / 2 + 1;
    size_t external = 0;
    for (const layer& l : g.layers) {
      copied_words += 32 + words_for_bytes(l.name.size() + 1) + l.inputs.size() / 2 + 1;
      for (const weight_blob* b : {&l.weights, &l.bias}) {
        if (referenceable(*b) && external < max_external_blobs)
          ++external;
        else
          copied_words += words_for_bytes(b->size() * sizeof(float));
      }
    }
    if (copied_words > (size_t(1) << 28)) copied_words = size_t(1) << 28;

    capnp::MallocMessageBuilder builder(static_cast<capnp::uint>(copied_words));
    capnp::Orphanage orphanage = builder.getOrphanage();
    schema::Model::Builder model = builder.initRoot<schema::Model>();
    model.setMagic(schema::MODEL_MAGIC);
    model.setVersion(schema::MODEL_FORMAT_VERSION);
    model.setName(capnp_text(g.name));
    auto layers = model.initLayers(static_cast<capnp::uint>(g.layers.size()));
    size_t external_count = 0;
    for (size_t i = 0; i < g.layers.size(); ++i) {
      const layer& l = g.layers[i];
      schema::Layer::Builder lb = layers[capnp::uint(i)];
      for (int in : l.inputs)
        if (in < 0)
          return status::error("cannot save model to " + quoted(path) + ": layer " + quoted(l.name) +
                               " has a negative input index " + std::to_string(in));
      write_layer_fields(lb, l);
      const std::string too_large = "cannot save model to " + quoted(path) + ": layer " + quoted(l.name) + " ";
      if (!put_blob(
              l.weights, orphanage, external_count,
              [&](capnp::Orphan<capnp::Data>&& o) { lb.adoptWeights(kj::mv(o)); },
              [&](capnp::uint n) { return lb.initWeights(n); }))
        return status::error(too_large + "weights exceed the 512 MiB a model file holds per blob");
      if (!put_blob(
              l.bias, orphanage, external_count,
              [&](capnp::Orphan<capnp::Data>&& o) { lb.adoptBias(kj::mv(o)); },
              [&](capnp::uint n) { return lb.initBias(n); }))
        return status::error(too_large + "bias exceeds the 512 MiB a model file holds per blob");
    }
    auto outputs = model.initOutputs(static_cast<capnp::uint>(g.outputs.size()));
    for (size_t k = 0; k < g.outputs.size(); ++k) {
      if (g.outputs[k] < 0)
        return status::error("cannot save model to " + quoted(path) + ": negative output index " +
                             std::to_string(g.outputs[k]));
      outputs.set(capnp::uint(k), uint32_t(g.outputs[k]));
    }

    // Stream framing: (segment count - 1), each segment's size in words, padded to a word.
    auto segments = builder.getSegmentsForOutput();
    table.assign((segments.size() + 2) & ~size_t(1), 0);
    table[0] = static_cast<uint32_t>(segments.size() - 1);
    for (size_t s = 0; s < segments.size(); ++s) table[s + 1] = static_cast<uint32_t>(segments[s].size());

    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return status::error("cannot create " + quoted(tmp) + ": " + errno_text(errno));
    auto fail = [&](const std::string& step) {
      const int e = errno;
      if (fd >= 0) ::close(fd);
      ::unlink(tmp.c_str());
      return status::error("cannot " + step + " " + quoted(path) + ": " + errno_text(e));
    };
    if (!write_all(fd, file_magic, magic_bytes)) return fail("write");
    if (!write_all(fd, table.data(), table.size() * sizeof(uint32_t))) return fail("write");
    for (auto segment : segments)
      if (!write_all(fd, segment.begin(), segment.size() * word_bytes)) return fail("write");
    if (::fsync(fd) != 0) return fail("flush");
    const int closed = ::close(fd);
    fd = -1;
    if (closed != 0) return fail("write");
    if (::rename(tmp.c_str(), path.c_str()) != 0) return fail("rename " + quoted(tmp) + " to");
    return status::ok();
  } catch (const kj::Exception& e) {
    ::unlink(tmp.c_str());
    return status::error("cannot save model to " + quoted(path) + ": " + e.getDescription().cStr());
  } catch (const std::exception& e) {
    ::unlink(tmp.c_str());
    return status::error("cannot save model to " + quoted(path) + ": " + e.what());
  }
}

result<graph> load_model(const std::string& path) {
  const std::string prefix = "model file " + quoted(path) + ": ";
  fd_closer file{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK)};  // a FIFO must not block
  if (file.fd < 0) return status::error("cannot open model file " + quoted(path) + ": " + errno_text(errno));
  struct stat st;
  if (::fstat(file.fd, &st) != 0) return status::error(prefix + "cannot stat: " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) return status::error(prefix + "not a regular file");
  const size_t size = size_t(st.st_size);
  if (size == 0) return status::error(prefix + "the file is empty");

  void* address = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, file.fd, 0);
  if (address == MAP_FAILED) return status::error(prefix + "cannot map: " + errno_text(errno));
  auto mapping = std::make_shared<const file_mapping>(address, size);
  ::close(file.fd);
  file.fd = -1;
  return parse_model_image(static_cast<const uint8_t*>(address), size, mapping, prefix);
}

result<graph> parse_model(const uint8_t* bytes, size_t size, const std::string& source) {
  const std::string prefix = source + ": ";
  if (size == 0) return status::error(prefix + "empty");
  // Word-aligned, as a mapping is: the weights may point into it.
  std::shared_ptr<uint64_t[]> copy(new uint64_t[(size + 7) / 8]);
  std::memcpy(copy.get(), bytes, size);
  return parse_model_image(reinterpret_cast<const uint8_t*>(copy.get()), size, std::shared_ptr<const void>(copy, copy.get()),
                           prefix);
}

namespace {

result<graph> parse_model_image(const uint8_t* bytes, size_t size, const std::shared_ptr<const void>& owner,
                                const std::string& prefix) {
  if (size < magic_bytes) {
    if (std::memcmp(bytes, file_magic, size) == 0)
      return status::error(prefix + "truncated (" + std::to_string(size) + " bytes)");
    return status::error(prefix + "not a d3 model file (wrong magic)");
  }
  if (std::memcmp(bytes, file_magic, magic_bytes) != 0)
    return status::error(prefix + "not a d3 model file (wrong magic)");
  if (size % word_bytes != 0)
    return status::error(prefix + "truncated or corrupt (size " + std::to_string(size) +
                         " is not a multiple of 8 bytes)");
  if (size < magic_bytes + 2 * word_bytes)
    return status::error(prefix + "truncated (" + std::to_string(size) + " bytes: no model after the magic)");

  // Check the stream framing here, so a cut file reports "truncated" rather than a parser message.
  const auto* words = reinterpret_cast<const capnp::word*>(bytes + magic_bytes);
  const size_t word_count = (size - magic_bytes) / word_bytes;
  const auto* table = reinterpret_cast<const uint32_t*>(words);
  const uint64_t segment_count = uint64_t(table[0]) + 1;
  if (segment_count > max_segments)
    return status::error(prefix + "malformed Cap'n Proto message (segment table claims " +
                         std::to_string(segment_count) + " segments)");
  const uint64_t table_words = (segment_count + 2) / 2;
  if (table_words > word_count)
    return status::error(prefix + "truncated (the segment table does not fit in " + std::to_string(size) +
                         " bytes)");
  uint64_t message_words = table_words;
  for (uint64_t s = 0; s < segment_count; ++s) message_words += table[1 + s];
  if (message_words > word_count)
    return status::error(prefix + "truncated (the file has " + std::to_string(size) + " bytes, its model needs " +
                         std::to_string(magic_bytes + message_words * word_bytes) + ")");
  if (message_words < word_count)
    return status::error(prefix + "corrupt (" + std::to_string((word_count - message_words) * word_bytes) +
                         " unexpected bytes after the model)");

  result<graph> loaded = status::error("unreachable");
  try {
    capnp::ReaderOptions options;
    options.traversalLimitInWords = uint64_t(word_count) * 2 + 1024;  // each blob is read once
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(words, word_count), options);
    loaded = read_graph(reader.getRoot<schema::Model>(), owner);
  } catch (const kj::Exception& e) {
    return status::error(prefix + "malformed Cap'n Proto message (" + e.getDescription().cStr() + ")");
  } catch (const std::exception& e) {
    return status::error(prefix + "cannot read: " + e.what());
  }
  if (!loaded) return status::error(prefix + loaded.message());
  try {
    graph& g = loaded.value();
    status s = infer_shapes(g);
    if (!s) return status::error(prefix + s.message());
    s = prepare_for_inference(g);
    if (!s) return status::error(prefix + s.message());
  } catch (const std::exception& e) {
    return status::error(prefix + "cannot prepare the model: " + e.what());
  }
  return loaded;
}

}  // namespace

bool looks_like_model_file(const std::string& path) {
  fd_closer file{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK)};  // a FIFO must not block
  if (file.fd < 0) return false;
  char head[magic_bytes];
  size_t got = 0;
  while (got < magic_bytes) {
    ssize_t n = ::read(file.fd, head + got, magic_bytes - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += size_t(n);
  }
  return std::memcmp(head, file_magic, magic_bytes) == 0;
}

}  // namespace d3
