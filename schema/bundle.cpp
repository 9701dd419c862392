#include "schema/bundle.hpp"

#include <capnp/any.h>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>
#include <kj/io.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <map>
#include <set>

#include "schema/bundle.capnp.h"
#include "schema/capnp_reading.hpp"
#include "schema/layer_codec.hpp"
#include "codec/tensor_codec.hpp"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "messages carry little-endian float32");

namespace d3 {

namespace {

constexpr size_t word_bytes = sizeof(capnp::word);
constexpr size_t max_data_bytes = (size_t(1) << 29) - 1;  // Cap'n Proto List(UInt8) limit


size_t words_for_bytes(size_t bytes) { return (bytes + word_bytes - 1) / word_bytes; }

// Flattens a builder straight into a byte vector (one copy of the segments).
std::vector<uint8_t> flatten(capnp::MessageBuilder& builder) {
  const size_t words = capnp::computeSerializedSizeInWords(builder);
  std::vector<uint8_t> out(words * word_bytes);
  kj::ArrayOutputStream stream(kj::arrayPtr(reinterpret_cast<kj::byte*>(out.data()), out.size()));
  capnp::writeMessage(stream, builder);
  return out;
}

// ------------------------------------------------------------------ tensors

// A tensor's data as it goes on the wire: raw floats are copied straight from the tensor; other
// codecs are encoded first (and fall back to raw where they do not apply or would not shrink).
struct wire_data {
  tensor_codec codec = tensor_codec::raw;
  std::vector<uint8_t> encoded;  // codec != raw
  const uint8_t* bytes = nullptr;
  size_t size = 0;
};

wire_data wire_data_of(const tensor* value, tensor_codec codec) {
  wire_data w;
  if (!value || value->bytes() == 0) return w;
  w.bytes = reinterpret_cast<const uint8_t*>(value->data());
  w.size = value->bytes();
  if (codec == tensor_codec::raw) return w;
  auto encoded = encode_floats(codec, value->data(), value->elements());
  if (!encoded || encoded->size() >= value->bytes()) return w;
  w.codec = codec;
  w.encoded = std::move(*encoded);
  w.bytes = w.encoded.data();
  w.size = w.encoded.size();
  return w;
}

size_t tensor_words(const std::string& name, const wire_data& data) {
  constexpr size_t struct_words =
      schema::Tensor::_capnpPrivate::dataWordSize + schema::Tensor::_capnpPrivate::pointerCount;
  return struct_words + words_for_bytes(name.size() + 1) + words_for_bytes(data.size);
}

void fill_tensor(schema::Tensor::Builder t, const std::string& name, const tensor* value, const wire_data& data) {
  t.setName(capnp_text(name));
  const tensor_shape s = value ? value->shape() : tensor_shape{0, 0, 0, 0};
  t.setN(s.n);
  t.setH(s.h);
  t.setW(s.w);
  t.setC(s.c);
  t.setCodec(static_cast<uint8_t>(data.codec));
  if (data.size != 0) {
    capnp::Data::Builder bytes = t.initData(static_cast<capnp::uint>(data.size));
    std::memcpy(bytes.begin(), data.bytes, data.size);
  }
}

// ------------------------------------------------------------------ layers

void fill_layer(schema::Layer::Builder lb, const layer& l, bool with_weights) {
  write_layer_fields(lb, l);
  if (with_weights) {
    if (!l.weights.empty()) {
      auto d = lb.initWeights(static_cast<capnp::uint>(l.weights.size() * sizeof(float)));
      std::memcpy(d.begin(), l.weights.data(), d.size());
    }
    if (!l.bias.empty()) {
      auto d = lb.initBias(static_cast<capnp::uint>(l.bias.size() * sizeof(float)));
      std::memcpy(d.begin(), l.bias.data(), d.size());
    }
  }
}

// Mirrors the checks of load_model (schema/model_file.cpp) for one layer.
status read_layer(schema::Layer::Reader lr, size_t index, size_t layer_count, layer& l) {
  const std::string what = "layer " + std::to_string(index) + " '" + std_string(lr.getName()) + "'";
  D3_RETURN_IF_ERROR(read_layer_fields(lr, layer_count, what, l));
  auto blob = [&](capnp::Data::Reader d, const char* field, weight_blob& out) -> status {
    if (d.size() % sizeof(float) != 0)
      return status::error(what + ": " + field + " are " + std::to_string(d.size()) +
                           " bytes, not a whole number of float32 values");
    out = d.size() == 0 ? weight_blob()
                        : weight_blob::copy_of(reinterpret_cast<const float*>(d.begin()), d.size() / sizeof(float));
    return status::ok();
  };
  D3_RETURN_IF_ERROR(blob(lr.getWeights(), "weights", l.weights));
  D3_RETURN_IF_ERROR(blob(lr.getBias(), "bias", l.bias));
  return status::ok();
}

size_t shipment_words(const layer_shipment& s) {
  size_t words = 16 + words_for_bytes(s.fragment.name.size() + 1) + s.fragment.outputs.size() / 2 + 1 +
                 s.fragment.layers.size() / 64 + 1;
  for (size_t i = 0; i < s.fragment.layers.size(); ++i) {
    const layer& l = s.fragment.layers[i];
    words += 24 + words_for_bytes(l.name.size() + 1) + l.inputs.size() / 2 + 1;
    if (s.weights_included[i]) words += words_for_bytes(weight_bytes(l));
  }
  return words;
}

void fill_shipment(schema::LayerShipment::Builder b, const layer_shipment& s) {
  b.setModelHash(s.model_hash);
  b.setModelName(capnp_text(s.fragment.name));
  const auto& layers = s.fragment.layers;
  auto lbs = b.initLayers(static_cast<capnp::uint>(layers.size()));
  auto included = b.initWeightsIncluded(static_cast<capnp::uint>(layers.size()));
  for (size_t i = 0; i < layers.size(); ++i) {
    const bool with = i < s.weights_included.size() && s.weights_included[i];
    fill_layer(lbs[capnp::uint(i)], layers[i], with);
    included.set(capnp::uint(i), with);
  }
  auto outputs = b.initOutputs(static_cast<capnp::uint>(s.fragment.outputs.size()));
  for (size_t k = 0; k < s.fragment.outputs.size(); ++k) outputs.set(capnp::uint(k), uint32_t(s.fragment.outputs[k]));
}

result<layer_shipment> read_shipment(schema::LayerShipment::Reader r) {
  layer_shipment s;
  s.model_hash = r.getModelHash();
  s.fragment.name = std_string(r.getModelName());
  auto layers = r.getLayers();
  auto included = r.getWeightsIncluded();
  const size_t count = layers.size();
  if (count > size_t(max_layer_channels)) return status::error("too many layers");
  if (included.size() != count)
    return status::error("weightsIncluded has " + std::to_string(included.size()) + " entries for " +
                         std::to_string(count) + " layers");
  s.fragment.layers.resize(count);
  s.weights_included.resize(count);
  std::set<std::string> names;
  for (size_t i = 0; i < count; ++i) {
    D3_RETURN_IF_ERROR(read_layer(layers[capnp::uint(i)], i, count, s.fragment.layers[i]));
    s.weights_included[i] = included[capnp::uint(i)];
    if (!names.insert(s.fragment.layers[i].name).second)
      return status::error("layer name '" + s.fragment.layers[i].name + "' appears twice");
  }
  for (uint32_t o : r.getOutputs()) {
    if (o >= count) return status::error("output index " + std::to_string(o) + " is out of range");
    s.fragment.outputs.push_back(int(o));
  }
  return s;
}

// ------------------------------------------------------------------ regions

void fill_region(schema::Region::Builder b, const region& r) {
  b.setRowBegin(r.row_begin);
  b.setRowEnd(r.row_end);
  b.setColBegin(r.col_begin);
  b.setColEnd(r.col_end);
}

result<region> read_region(schema::Region::Reader r, const std::string& what) {
  region out{r.getRowBegin(), r.getRowEnd(), r.getColBegin(), r.getColEnd()};
  // Every bound in range before any size is computed: end - begin of arbitrary ints overflows.
  auto in_range = [](int v) { return v >= 0 && v <= max_layer_dimension; };
  if (!in_range(out.row_begin) || !in_range(out.row_end) || !in_range(out.col_begin) || !in_range(out.col_end) ||
      out.empty())
    return status::error(what + ": region " + out.to_string() + " is empty or out of range");
  return out;
}

}  // namespace

// ------------------------------------------------------------------ tensor bundles

std::vector<uint8_t> encode_bundle(uint64_t request_id, uint32_t plan_version, const std::vector<tensor_ref>& tensors,
                                   double virtual_ms, size_t* payload_bytes) {
  for (const tensor_ref& t : tensors)
    if ((t.value && t.value->bytes() > max_data_bytes) || t.name.size() > max_data_bytes) return {};
  try {
    std::vector<wire_data> data;
    data.reserve(tensors.size());
    for (const tensor_ref& t : tensors) data.push_back(wire_data_of(t.value, t.codec));
    if (payload_bytes) {
      *payload_bytes = 0;
      for (const wire_data& d : data) *payload_bytes += d.size;
    }
    constexpr size_t root_words = schema::TensorBundle::_capnpPrivate::dataWordSize +
                                  schema::TensorBundle::_capnpPrivate::pointerCount;
    size_t segment_words = 1 + root_words + (tensors.empty() ? 0 : 1);
    for (size_t i = 0; i < tensors.size(); ++i) segment_words += tensor_words(tensors[i].name, data[i]);
    auto fill = [&](schema::TensorBundle::Builder b) {
      b.setRequestId(request_id);
      b.setPlanVersion(plan_version);
      b.setVirtualMs(virtual_ms);
      auto list = b.initTensors(static_cast<capnp::uint>(tensors.size()));
      for (size_t i = 0; i < tensors.size(); ++i)
        fill_tensor(list[capnp::uint(i)], tensors[i].name, tensors[i].value, data[i]);
    };
    // Built in place in the returned vector (one copy of the floats): [segment table][segment].
    std::vector<uint8_t> out((1 + segment_words) * word_bytes);
    if (reinterpret_cast<uintptr_t>(out.data()) % alignof(capnp::word) == 0) {
      bool built = false;
      try {
        auto* words = reinterpret_cast<capnp::word*>(out.data());
        capnp::FlatMessageBuilder builder(kj::arrayPtr(words + 1, segment_words));
        fill(builder.initRoot<schema::TensorBundle>());
        builder.requireFilled();
        built = true;
      } catch (const kj::Exception&) {
      }
      if (built) {
        const uint32_t table[2] = {0u, static_cast<uint32_t>(segment_words)};
        std::memcpy(out.data(), table, sizeof table);
        return out;
      }
    }
    capnp::MallocMessageBuilder builder(static_cast<capnp::uint>(segment_words + 16));
    fill(builder.initRoot<schema::TensorBundle>());
    return flatten(builder);
  } catch (const kj::Exception&) {
    return {};
  } catch (const std::exception&) {
    return {};
  }
}

std::vector<uint8_t> encode_bundle(const tensor_bundle& bundle) {
  std::vector<tensor_ref> refs;
  for (const named_tensor& t : bundle.tensors) refs.push_back({t.name, &t.value});
  return encode_bundle(bundle.request_id, bundle.plan_version, refs, bundle.virtual_ms);
}

status set_bundle_virtual_ms(std::vector<uint8_t>& bytes, double virtual_ms) {
  // Where virtualMs sits in the root struct's data section: found once from a bundle that carries
  // a marker value (the schema fixes the layout; this keeps the code free of its offsets).
  static const long field_offset = [] {
    const double marker = -1234567.8125;
    std::vector<uint8_t> probe = encode_bundle(0, 0, {}, marker);
    auto found = with_reader<schema::TensorBundle>(probe.data(), probe.size(), "tensor bundle",
                                                   [&](schema::TensorBundle::Reader r) -> result<long> {
      kj::ArrayPtr<const kj::byte> data = capnp::AnyStruct::Reader(r).getDataSection();
      for (size_t at = 0; at + sizeof marker <= data.size(); at += sizeof marker)
        if (std::memcmp(data.begin() + at, &marker, sizeof marker) == 0) return long(at);
      return status::error("virtualMs not found");
    });
    return found ? found.value() : -1L;
  }();
  if (field_offset < 0) return status::error("tensor bundle: cannot locate virtualMs");
  uint8_t* begin = bytes.data();
  auto at = with_reader<schema::TensorBundle>(begin, bytes.size(), "tensor bundle",
                                              [&](schema::TensorBundle::Reader r) -> result<size_t> {
    kj::ArrayPtr<const kj::byte> data = capnp::AnyStruct::Reader(r).getDataSection();
    const uint8_t* field = data.begin() + field_offset;
    if (data.size() < size_t(field_offset) + sizeof(double) || field < begin || field + sizeof(double) > begin + bytes.size())
      return status::error("tensor bundle: virtualMs lies outside the buffer");
    return size_t(field - begin);
  });
  if (!at) return at.error();
  std::memcpy(begin + at.value(), &virtual_ms, sizeof virtual_ms);
  return status::ok();
}

result<tensor_bundle> decode_bundle(const uint8_t* bytes, size_t size) {
  return with_reader<schema::TensorBundle>(bytes, size, "tensor bundle",
                                           [&](schema::TensorBundle::Reader r) -> result<tensor_bundle> {
    tensor_bundle b;
    b.request_id = r.getRequestId();
    b.plan_version = r.getPlanVersion();
    b.virtual_ms = r.getVirtualMs();
    const std::string where = "tensor bundle of request " + std::to_string(b.request_id) + ": ";
    auto list = r.getTensors();
    std::set<std::string> names;
    for (auto t : list) {
      auto decoded = read_tensor(t, where);
      if (!decoded) return decoded.error();
      if (!names.insert(decoded->name).second)
        return status::error(where + "tensor '" + decoded->name + "' appears twice");
      b.tensors.push_back(std::move(decoded.value()));
    }
    return b;
  });
}

std::optional<uint64_t> peek_request_id(const uint8_t* bytes, size_t size) {
  auto id = with_reader<schema::TensorBundle>(bytes, size, "tensor bundle",
                                              [](schema::TensorBundle::Reader r) -> result<uint64_t> {
                                                return r.getRequestId();
                                              });
  if (!id) return std::nullopt;
  return id.value();
}

// ------------------------------------------------------------------ layer shipments

uint64_t model_hash(const graph& g) {
  // Four interleaved multiply-xor lanes over 8-byte words (fast on 46 MB of resnet18 weights),
  // then a final mix; structure is fed through the same stream.
  struct hasher {
    uint64_t lane[4] = {0x9e3779b97f4a7c15ull, 0xc2b2ae3d27d4eb4full, 0x165667b19e3779f9ull, 0x27d4eb2f165667c5ull};
    uint64_t length = 0;
    static uint64_t mix(uint64_t h, uint64_t v) {
      h ^= v * 0x87c37b91114253d5ull;
      h = (h << 31) | (h >> 33);
      return h * 0x4cf5ad432745937full;
    }
    void bytes(const void* data, size_t size) {
      const auto* p = static_cast<const uint8_t*>(data);
      size_t i = 0;
      for (; i + 32 <= size; i += 32) {
        uint64_t v[4];
        std::memcpy(v, p + i, 32);
        for (int k = 0; k < 4; ++k) lane[k] = mix(lane[k], v[k]);
      }
      for (; i + 8 <= size; i += 8) {
        uint64_t v;
        std::memcpy(&v, p + i, 8);
        lane[0] = mix(lane[0], v);
      }
      uint64_t tail = 0;
      if (size > i) std::memcpy(&tail, p + i, size - i);  // p may be null when size is 0
      lane[1] = mix(lane[1], tail ^ (uint64_t(size - i) << 56));
      length += size;
    }
    void number(int64_t v) { bytes(&v, sizeof v); }
    void text(const std::string& s) {
      number(int64_t(s.size()));
      bytes(s.data(), s.size());
    }
    uint64_t finish() const {
      uint64_t h = length;
      for (uint64_t l : lane) h = mix(h, l);
      h ^= h >> 33;
      h *= 0xff51afd7ed558ccdull;
      h ^= h >> 33;
      return h;
    }
  } h;
  h.text(g.name);
  h.number(int64_t(g.layers.size()));
  for (const layer& l : g.layers) {
    h.text(l.name);
    h.number(int64_t(l.kind));
    for (int in : l.inputs) h.number(in);
    const tensor_shape& s = l.input_shape;
    for (int v : {s.n, s.h, s.w, s.c, l.window.kernel_h, l.window.kernel_w, l.window.stride_h, l.window.stride_w,
                  l.window.dilation_h, l.window.dilation_w, l.window.pad.top, l.window.pad.left, l.window.pad.bottom,
                  l.window.pad.right, int(l.window.ceil_mode), int(l.window.count_include_pad), l.output_channels,
                  l.groups, l.channel_begin, l.channel_end, l.row_begin, l.row_end})
      h.number(v);
    h.bytes(&l.epsilon, sizeof l.epsilon);
    h.bytes(&l.scale, sizeof l.scale);
    h.bytes(&l.act.min, sizeof l.act.min);
    h.bytes(&l.act.max, sizeof l.act.max);
    h.number(int64_t(l.weights.size()));
    h.bytes(l.weights.data(), l.weights.size() * sizeof(float));
    h.number(int64_t(l.bias.size()));
    h.bytes(l.bias.data(), l.bias.size() * sizeof(float));
  }
  for (int o : g.outputs) h.number(o);
  return h.finish();
}


layer_shipment make_fragment(const graph& g, const std::vector<int>& layers, uint64_t hash,
                             const std::vector<int>& with_weights) {
  layer_shipment s;
  s.model_hash = hash;
  s.fragment.name = g.name;
  std::vector<int> computed;
  for (int l : layers)
    if (g.layers[size_t(l)].kind != layer_kind::input) computed.push_back(l);
  const subgraph_boundary b = boundary_of(g, computed);
  std::map<int, int> index;  // graph layer -> fragment layer
  for (int in : b.inputs) {
    layer stand_in;
    stand_in.name = g.layers[size_t(in)].name;
    stand_in.kind = layer_kind::input;
    stand_in.input_shape = g.layers[size_t(in)].output_shape;
    stand_in.output_shape = stand_in.input_shape;
    index[in] = int(s.fragment.layers.size());
    s.fragment.layers.push_back(std::move(stand_in));
    s.weights_included.push_back(false);
  }
  const std::set<int> keep(with_weights.begin(), with_weights.end());
  for (size_t k = 0; k < computed.size(); ++k) index[computed[k]] = int(b.inputs.size() + k);
  for (int l : computed) {
    layer copy = g.layers[size_t(l)];
    for (int& in : copy.inputs) in = index.at(in);
    const bool with = keep.count(l) != 0;
    if (!with) {
      copy.weights = weight_blob();
      copy.bias = weight_blob();
    }
    s.fragment.layers.push_back(std::move(copy));
    s.weights_included.push_back(with);
  }
  for (int out : b.outputs) s.fragment.outputs.push_back(index.at(out));
  return s;
}

std::vector<uint8_t> encode_shipment(const layer_shipment& shipment) {
  try {
    capnp::MallocMessageBuilder builder(static_cast<capnp::uint>(std::min<size_t>(shipment_words(shipment), 1u << 28)));
    fill_shipment(builder.initRoot<schema::LayerShipment>(), shipment);
    return flatten(builder);
  } catch (const kj::Exception&) {
    return {};
  } catch (const std::exception&) {
    return {};
  }
}

std::vector<uint8_t> encode_layers(const graph& g, const std::vector<int>& layers, uint64_t hash,
                                   const std::vector<int>& with_weights) {
  return encode_shipment(make_fragment(g, layers, hash, with_weights));
}

result<layer_shipment> decode_shipment(const uint8_t* bytes, size_t size, size_t max_layers) {
  return with_reader<schema::LayerShipment>(bytes, size, "layer shipment", [max_layers](schema::LayerShipment::Reader r) {
    if (r.getLayers().size() > max_layers)
      return result<layer_shipment>(status::error("layer shipment of " + std::to_string(r.getLayers().size()) +
                                                  " layers exceeds max_layers (" + std::to_string(max_layers) + ")"));
    auto s = read_shipment(r);
    if (!s) return result<layer_shipment>(status::error("layer shipment: " + s.message()));
    return s;
  });
}

// ------------------------------------------------------------------ stage specs

std::vector<uint8_t> encode_stage_spec(const stage_spec& spec) {
  try {
    capnp::MallocMessageBuilder builder(
        static_cast<capnp::uint>(std::min<size_t>(shipment_words(spec.fragment) + 256, 1u << 28)));
    auto b = builder.initRoot<schema::StageSpec>();
    b.setStageId(spec.stage_id);
    b.setKind(static_cast<schema::StageKind>(static_cast<uint16_t>(spec.type)));
    b.setPlanVersion(spec.plan_version);
    b.setModelHash(spec.model_hash);
    auto names = [](auto list, const std::vector<std::string>& from) {
      for (size_t i = 0; i < from.size(); ++i) list.set(capnp::uint(i), capnp_text(from[i]));
    };
    names(b.initInputs(capnp::uint(spec.inputs.size())), spec.inputs);
    names(b.initOutputs(capnp::uint(spec.outputs.size())), spec.outputs);
    fill_shipment(b.initFragment(), spec.fragment);
    b.setTileIndex(spec.tile_index);
    auto rows = b.initGridRowBounds(capnp::uint(spec.grid_row_bounds.size()));
    for (size_t i = 0; i < spec.grid_row_bounds.size(); ++i) rows.set(capnp::uint(i), spec.grid_row_bounds[i]);
    auto cols = b.initGridColBounds(capnp::uint(spec.grid_col_bounds.size()));
    for (size_t i = 0; i < spec.grid_col_bounds.size(); ++i) cols.set(capnp::uint(i), spec.grid_col_bounds[i]);
    auto regions = b.initTileInputRegions(capnp::uint(spec.tile_input_regions.size()));
    for (size_t i = 0; i < spec.tile_input_regions.size(); ++i) fill_region(regions[capnp::uint(i)], spec.tile_input_regions[i]);
    fill_region(b.initTileOutputRegion(), spec.tile_output_region);
    auto copies = b.initCopies(capnp::uint(spec.copies.size()));
    for (size_t i = 0; i < spec.copies.size(); ++i) {
      copies[capnp::uint(i)].setWhole(capnp_text(spec.copies[i].whole));
      copies[capnp::uint(i)].setPart(capnp_text(spec.copies[i].part));
      fill_region(copies[capnp::uint(i)].initRegion(), spec.copies[i].area);
    }
    auto shapes = b.initWholeShapes(1);
    fill_tensor(shapes[0], spec.outputs.empty() ? std::string() : spec.outputs[0], nullptr, wire_data{});
    shapes[0].setN(spec.whole_shape.n);
    shapes[0].setH(spec.whole_shape.h);
    shapes[0].setW(spec.whole_shape.w);
    shapes[0].setC(spec.whole_shape.c);
    return flatten(builder);
  } catch (const kj::Exception&) {
    return {};
  } catch (const std::exception&) {
    return {};
  }
}

result<stage_spec> decode_stage_spec(const uint8_t* bytes, size_t size) {
  return with_reader<schema::StageSpec>(bytes, size, "stage spec", [](schema::StageSpec::Reader r) -> result<stage_spec> {
    stage_spec s;
    s.stage_id = r.getStageId();
    const uint16_t kind = static_cast<uint16_t>(r.getKind());
    if (kind > uint16_t(stage_kind::gather)) return status::error("stage spec: unknown stage kind " + std::to_string(kind));
    s.type = static_cast<stage_kind>(kind);
    const std::string what = "stage spec " + std::to_string(s.stage_id) + " (" + to_string(s.type) + ")";
    s.plan_version = r.getPlanVersion();
    s.model_hash = r.getModelHash();
    for (auto t : r.getInputs()) s.inputs.push_back(std_string(t));
    for (auto t : r.getOutputs()) s.outputs.push_back(std_string(t));
    auto fragment = read_shipment(r.getFragment());
    if (!fragment) return status::error(what + ": fragment: " + fragment.message());
    s.fragment = std::move(fragment.value());
    s.tile_index = r.getTileIndex();
    for (int32_t v : r.getGridRowBounds()) s.grid_row_bounds.push_back(v);
    for (int32_t v : r.getGridColBounds()) s.grid_col_bounds.push_back(v);
    if (s.type == stage_kind::tile) {
      for (auto reg : r.getTileInputRegions()) {
        auto rr = read_region(reg, what + ": tile input");
        if (!rr) return rr.error();
        s.tile_input_regions.push_back(rr.value());
      }
      auto out = read_region(r.getTileOutputRegion(), what + ": tile output");
      if (!out) return out.error();
      s.tile_output_region = out.value();
    }
    for (auto c : r.getCopies()) {
      region_copy copy;
      copy.whole = std_string(c.getWhole());
      copy.part = std_string(c.getPart());
      auto rr = read_region(c.getRegion(), what + ": part '" + copy.part + "'");
      if (!rr) return rr.error();
      copy.area = rr.value();
      s.copies.push_back(std::move(copy));
    }
    auto shapes = r.getWholeShapes();
    if (shapes.size() > 0) {
      auto t = shapes[0];
      s.whole_shape = tensor_shape{t.getN(), t.getH(), t.getW(), t.getC()};
    }
    if (s.type == stage_kind::gather) {
      const tensor_shape& w = s.whole_shape;
      for (int d : {w.n, w.h, w.w, w.c})
        if (d <= 0 || d > max_layer_dimension * 4) return status::error(what + ": output shape " + w.to_string() + " out of range");
    }
    return s;
  });
}

}  // namespace d3
