# A tensor on the wire between d3 nodes (schema/tensor_message.hpp).
@0xa46b7d39c2540617;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("d3::schema");

struct Tensor {
  name @0 :Text;
  n @1 :Int32;
  h @2 :Int32;
  w @3 :Int32;
  c @4 :Int32;
  data @5 :Data;                    # NHWC float32 elements, little-endian, encoded by `codec`
  codec @6 :UInt8;                  # codec/tensor_codec.hpp: 0 raw (n*h*w*c*4 bytes), 1 u8,
                                    # 2 sparse (bitmap + nonzero values), 3 zstd (byte planes),
                                    # 4 sparse_zstd (bitmap + nonzero values as zstd planes)
}
