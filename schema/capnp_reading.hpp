// Reading Cap'n Proto messages from bytes that came over the wire, shared by the decoders in
// schema/ (internal to it): the framing checks, and a tensor's fields validated against its data.
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <string>
#include <utility>

#include "base/status.hpp"
#include "schema/tensor.capnp.h"
#include "schema/tensor_message.hpp"

namespace d3 {

// Runs `read` on the message in `bytes` after the framing checks every decoder shares.
template <class Root, class Fn>
auto with_reader(const uint8_t* bytes, size_t size, const std::string& what, Fn read) -> decltype(read(
    std::declval<typename Root::Reader>())) {
  if (bytes == nullptr || size == 0) return status::error(what + ": empty");
  if (size % sizeof(capnp::word) != 0 || size < 2 * sizeof(capnp::word))
    return status::error(what + ": " + std::to_string(size) + " bytes is not a whole Cap'n Proto message (truncated?)");
  const size_t word_count = size / sizeof(capnp::word);
  kj::Array<capnp::word> aligned_copy;
  const capnp::word* words = reinterpret_cast<const capnp::word*>(bytes);
  if (reinterpret_cast<uintptr_t>(bytes) % alignof(capnp::word) != 0) {
    aligned_copy = kj::heapArray<capnp::word>(word_count);
    std::memcpy(aligned_copy.begin(), bytes, size);
    words = aligned_copy.begin();
  }
  try {
    capnp::ReaderOptions options;
    options.traversalLimitInWords = uint64_t(word_count) * 2 + 1024;
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(words, word_count), options);
    if (reader.getEnd() != words + word_count)
      return status::error(what + ": " + std::to_string((words + word_count - reader.getEnd()) * sizeof(capnp::word)) +
                           " trailing bytes after the message");
    return read(reader.getRoot<Root>());
  } catch (const kj::Exception& e) {
    return status::error(what + ": malformed Cap'n Proto message (" + e.getDescription().cStr() + ")");
  } catch (const std::exception& e) {
    return status::error(what + ": " + e.what());
  }
}

// A tensor's name, shape and data; the shape must be positive, bounded and match the data size.
// `where` prefixes errors (e.g. "tensor bundle: ").
result<named_tensor> read_tensor(schema::Tensor::Reader root, const std::string& where);

}  // namespace d3
