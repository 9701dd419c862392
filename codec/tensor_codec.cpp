#include "codec/tensor_codec.hpp"

#include <zstd.h>

#include <cstring>

namespace d3 {

namespace {

uint32_t bits_of(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

// The bit pattern of the float of each integer 0..255 ((float)i), for the exact test of u8.
bool is_u8(float v, uint8_t& byte) {
  if (!(v >= 0.0f && v <= 255.0f)) return false;  // NaN fails both
  const uint8_t i = static_cast<uint8_t>(v);
  if (bits_of(static_cast<float>(i)) != bits_of(v)) return false;  // fractions, -0.0
  byte = i;
  return true;
}

size_t bitmap_bytes(size_t elements) { return (elements + 7) / 8; }

std::string codec_error(tensor_codec codec, const std::string& what) {
  return std::string("tensor codec ") + to_string(codec) + ": " + what;
}

// Shuffles n floats into 4 byte planes: plane k holds byte k of every float.
void shuffle(const uint8_t* in, size_t n, uint8_t* out) {
  for (size_t i = 0; i < n; ++i)
    for (size_t k = 0; k < 4; ++k) out[k * n + i] = in[4 * i + k];
}
void unshuffle(const uint8_t* in, size_t n, uint8_t* out) {
  for (size_t i = 0; i < n; ++i)
    for (size_t k = 0; k < 4; ++k) out[4 * i + k] = in[k * n + i];
}

// n floats as byte planes compressed by zstd level 1, appended to `out`; false when zstd fails.
bool append_zstd_planes(const uint8_t* floats, size_t n, std::vector<uint8_t>& out) {
  const size_t raw_bytes = n * sizeof(float);
  std::vector<uint8_t> planes(raw_bytes);
  shuffle(floats, n, planes.data());
  const size_t at = out.size();
  out.resize(at + ZSTD_compressBound(raw_bytes));
  const size_t written = ZSTD_compress(out.data() + at, out.size() - at, planes.data(), raw_bytes, 1);
  if (ZSTD_isError(written)) return false;
  out.resize(at + written);
  return true;
}

// Whether a zstd frame declares exactly n floats (read from its header).
status check_zstd_frame(tensor_codec codec, const uint8_t* bytes, size_t size, size_t n) {
  const size_t raw_bytes = n * sizeof(float);
  const unsigned long long content = ZSTD_getFrameContentSize(bytes, size);
  if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN || content != raw_bytes)
    return status::error(codec_error(codec, "frame does not declare the " + std::to_string(raw_bytes) + " bytes of " +
                                                std::to_string(n) + " float32 values"));
  return status::ok();
}

// Decodes append_zstd_planes' frame of exactly n floats into `floats`.
status read_zstd_planes(tensor_codec codec, const uint8_t* bytes, size_t size, size_t n, uint8_t* floats) {
  const size_t raw_bytes = n * sizeof(float);
  D3_RETURN_IF_ERROR(check_zstd_frame(codec, bytes, size, n));
  std::vector<uint8_t> planes(raw_bytes);
  const size_t got = ZSTD_decompress(planes.data(), planes.size(), bytes, size);
  if (ZSTD_isError(got)) return status::error(codec_error(codec, ZSTD_getErrorName(got)));
  if (got != raw_bytes)
    return status::error(codec_error(codec, "decompressed " + std::to_string(got) + " bytes, " +
                                                std::to_string(raw_bytes) + " expected"));
  unshuffle(planes.data(), n, floats);
  return status::ok();
}

// The bitmap of encode's sparse codecs: checks its size and padding, returns the set count.
result<size_t> read_bitmap(tensor_codec codec, const uint8_t* bytes, size_t size, size_t elements) {
  const size_t map = bitmap_bytes(elements);
  if (size < map)
    return status::error(codec_error(codec, std::to_string(size) + " bytes, shorter than the bitmap of " +
                                                std::to_string(elements) + " elements"));
  if (elements % 8 != 0 && (bytes[map - 1] >> (elements % 8)) != 0)
    return status::error(codec_error(codec, "bitmap bits set past the last element"));
  size_t set = 0;
  for (size_t i = 0; i < map; ++i) set += size_t(__builtin_popcount(bytes[i]));
  return set;
}

// Scatters `values` (the set elements in order) into out by the bitmap; zeros elsewhere.
void scatter_by_bitmap(const uint8_t* bitmap, const uint8_t* values, float* out, size_t elements) {
  for (size_t i = 0; i < elements; ++i) {
    if (bitmap[i / 8] & (1u << (i % 8))) {
      std::memcpy(out + i, values, sizeof(float));
      values += sizeof(float);
    } else {
      out[i] = 0.0f;
    }
  }
}

// check_encoded's checks; the number of element values the bytes carry (the set bits of the
// sparse codecs).
result<size_t> stored_values(tensor_codec codec, const uint8_t* bytes, size_t size, size_t elements) {
  switch (codec) {
    case tensor_codec::raw:
      if (size != elements * sizeof(float))
        return status::error(codec_error(codec, std::to_string(size) + " bytes for " + std::to_string(elements) +
                                                    " float32 elements"));
      return elements;
    case tensor_codec::u8:
      if (size != elements)
        return status::error(codec_error(codec, std::to_string(size) + " bytes for " + std::to_string(elements) +
                                                    " 8-bit elements"));
      return elements;
    case tensor_codec::sparse: {
      const size_t map = bitmap_bytes(elements);
      D3_ASSIGN_OR_RETURN(const size_t set, read_bitmap(codec, bytes, size, elements));
      if (size != map + set * sizeof(float))
        return status::error(codec_error(codec, std::to_string(size) + " bytes for a bitmap of " + std::to_string(set) +
                                                    " values (" + std::to_string(map + set * sizeof(float)) + " expected)"));
      return set;
    }
    case tensor_codec::zstd:
      D3_RETURN_IF_ERROR(check_zstd_frame(codec, bytes, size, elements));
      return elements;
    case tensor_codec::sparse_zstd: {
      const size_t map = bitmap_bytes(elements);
      D3_ASSIGN_OR_RETURN(const size_t set, read_bitmap(codec, bytes, size, elements));
      D3_RETURN_IF_ERROR(check_zstd_frame(codec, bytes + map, size - map, set));
      return set;
    }
  }
  return status::error("tensor codec " + std::to_string(int(codec)) + " is unknown");
}

}  // namespace

const char* to_string(tensor_codec codec) {
  switch (codec) {
    case tensor_codec::raw: return "raw";
    case tensor_codec::u8: return "u8";
    case tensor_codec::sparse: return "sparse";
    case tensor_codec::zstd: return "zstd";
    case tensor_codec::sparse_zstd: return "sparse_zstd";
  }
  return "unknown";
}

std::optional<tensor_codec> parse_tensor_codec(const std::string& name) {
  for (int c = 0; c < tensor_codec_count; ++c)
    if (name == to_string(tensor_codec(c))) return tensor_codec(c);
  return std::nullopt;
}

std::optional<size_t> encoded_size(tensor_codec codec, const float* values, size_t elements) {
  switch (codec) {
    case tensor_codec::raw: return elements * sizeof(float);
    case tensor_codec::u8: {
      uint8_t b;
      for (size_t i = 0; i < elements; ++i)
        if (!is_u8(values[i], b)) return std::nullopt;
      return elements;
    }
    case tensor_codec::sparse: {
      size_t set = 0;
      for (size_t i = 0; i < elements; ++i) set += bits_of(values[i]) != 0;
      return bitmap_bytes(elements) + set * sizeof(float);
    }
    case tensor_codec::zstd:
    case tensor_codec::sparse_zstd: {
      auto bytes = encode_floats(codec, values, elements);
      if (!bytes) return std::nullopt;
      return bytes->size();
    }
  }
  return std::nullopt;
}

std::optional<std::vector<uint8_t>> encode_floats(tensor_codec codec, const float* values, size_t elements) {
  const auto* in = reinterpret_cast<const uint8_t*>(values);
  switch (codec) {
    case tensor_codec::raw:
      return std::vector<uint8_t>(in, in + elements * sizeof(float));
    case tensor_codec::u8: {
      std::vector<uint8_t> out(elements);
      for (size_t i = 0; i < elements; ++i)
        if (!is_u8(values[i], out[i])) return std::nullopt;
      return out;
    }
    case tensor_codec::sparse: {
      const size_t map = bitmap_bytes(elements);
      std::vector<uint8_t> out(map + elements * sizeof(float));  // shrunk below
      uint8_t* bitmap = out.data();
      uint8_t* next = out.data() + map;
      for (size_t i = 0; i < elements; ++i) {
        const uint32_t b = bits_of(values[i]);
        if (b == 0) continue;
        bitmap[i / 8] |= uint8_t(1u << (i % 8));
        std::memcpy(next, &b, sizeof b);
        next += sizeof b;
      }
      out.resize(size_t(next - out.data()));
      return out;
    }
    case tensor_codec::zstd: {
      std::vector<uint8_t> out;
      if (!append_zstd_planes(in, elements, out)) return std::nullopt;
      return out;
    }
    case tensor_codec::sparse_zstd: {
      const size_t map = bitmap_bytes(elements);
      std::vector<uint8_t> out(map);
      std::vector<uint8_t> set_values;
      set_values.reserve(elements * sizeof(float) / 2);
      for (size_t i = 0; i < elements; ++i) {
        const uint32_t b = bits_of(values[i]);
        if (b == 0) continue;
        out[i / 8] |= uint8_t(1u << (i % 8));
        const auto* p = reinterpret_cast<const uint8_t*>(&b);
        set_values.insert(set_values.end(), p, p + sizeof b);
      }
      if (!append_zstd_planes(set_values.data(), set_values.size() / sizeof(float), out)) return std::nullopt;
      return out;
    }
  }
  return std::nullopt;
}

status check_encoded(tensor_codec codec, const uint8_t* bytes, size_t size, size_t elements) {
  return stored_values(codec, bytes, size, elements).error();
}

status decode_floats(tensor_codec codec, const uint8_t* bytes, size_t size, float* out, size_t elements) {
  D3_ASSIGN_OR_RETURN(const size_t stored, stored_values(codec, bytes, size, elements));
  auto* dst = reinterpret_cast<uint8_t*>(out);
  switch (codec) {
    case tensor_codec::raw:
      if (size != 0) std::memcpy(dst, bytes, size);
      return status::ok();
    case tensor_codec::u8:
      for (size_t i = 0; i < elements; ++i) out[i] = static_cast<float>(bytes[i]);
      return status::ok();
    case tensor_codec::sparse:
      scatter_by_bitmap(bytes, bytes + bitmap_bytes(elements), out, elements);
      return status::ok();
    case tensor_codec::zstd:
      return read_zstd_planes(codec, bytes, size, elements, dst);
    case tensor_codec::sparse_zstd: {
      const size_t map = bitmap_bytes(elements);
      std::vector<uint8_t> set_values(stored * sizeof(float));
      D3_RETURN_IF_ERROR(read_zstd_planes(codec, bytes + map, size - map, stored, set_values.data()));
      scatter_by_bitmap(bytes, set_values.data(), out, elements);
      return status::ok();
    }
  }
  return status::error("tensor codec " + std::to_string(int(codec)) + " is unknown");
}

}  // namespace d3
