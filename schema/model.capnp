# d3 model file: an 8-byte plain prefix "D3MODEL\0", then one Cap'n Proto message (standard
# segment table, 8-byte aligned) whose root is a Model. Weight and bias bytes are raw
# little-endian float32 in the layouts documented in kernels/graph.hpp.
@0xd4e77ae3d2dcf71a;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("d3::schema");

const modelMagic :UInt64 = 0x314c45444f4d3344;  # "D3MODEL1" read as a little-endian UInt64
const modelFormatVersion :UInt32 = 1;

# Mirrors d3::layer_kind (kernels/graph.hpp): same names, same order, same numbers.
enum LayerKind {
  input @0;
  convolution @1;
  fullyConnected @2;
  maxPool @3;
  averagePool @4;
  globalAveragePool @5;
  add @6;
  concat @7;
  softmax @8;
  flatten @9;
  batchNorm @10;
  clamp @11;
  multiply @12;
  sigmoid @13;
  channelShuffle @14;
  channelSlice @15;
  pad @16;
  layerNorm @17;
  gelu @18;
  attention @19;
  prependTokens @20;
  constantAdd @21;
  rowSlice @22;
  hardswish @23;
  preprocess @24;                   # 8-bit pixels to the input: (x / 255 - mean) / std
  windowAttention @25;              # attention within windows of window.kernelH x kernelW pixels
  roll @26;                         # cyclic shift of H and W
  spatialSlice @27;                 # strided rows and columns of a map
  tanh @28;
  silu @29;                         # x * sigmoid(x)
}

struct Layer {
  name @0 :Text;
  kind @1 :LayerKind;
  inputs @2 :List(UInt32);          # producer layer indices

  inputShape :group {               # input layers: the shape callers supply (d3::tensor_shape)
    n @3 :Int32 = 1;
    h @4 :Int32 = 1;
    w @5 :Int32 = 1;
    c @6 :Int32 = 1;
  }

  window :group {                   # convolution, maxPool, averagePool; pad uses the padding only
    kernelH @7 :Int32 = 1;
    kernelW @8 :Int32 = 1;
    strideH @9 :Int32 = 1;
    strideW @10 :Int32 = 1;
    dilationH @11 :Int32 = 1;
    dilationW @12 :Int32 = 1;
    padTop @13 :Int32;
    padLeft @14 :Int32;
    padBottom @15 :Int32;
    padRight @16 :Int32;
    ceilMode @17 :Bool = false;
    countIncludePad @18 :Bool = true;
  }

  outputChannels @19 :Int32;        # convolution, fullyConnected
  groups @20 :Int32 = 1;            # convolution, channelShuffle; attention: heads
  epsilon @21 :Float32 = 1e-5;      # batchNorm, layerNorm

  activationMin @22 :Float32 = -inf;  # output clamp; infinities mean "unbounded"
  activationMax @23 :Float32 = inf;

  weights @24 :Data;                # raw little-endian float32
  bias @25 :Data;                   # raw little-endian float32, [outputChannels] or empty

  channelBegin @26 :Int32;          # channelSlice: channels [channelBegin, channelEnd) of the input
  channelEnd @27 :Int32;

  scale @28 :Float32 = 1;           # attention: factor of q k^T before the softmax
  rowBegin @29 :Int32;              # rowSlice: rows [rowBegin, rowEnd) of the input; spatialSlice too
  rowEnd @30 :Int32;                # prependTokens: the tokens prepended; roll: rowBegin is the first row
  colBegin @31 :Int32;              # spatialSlice: columns [colBegin, colEnd); roll: the first column
  colEnd @32 :Int32;
}

struct Model {
  magic @0 :UInt64;                 # must equal modelMagic
  version @1 :UInt32;               # must equal modelFormatVersion
  name @2 :Text;
  layers @3 :List(Layer);
  outputs @4 :List(UInt32);         # layers whose tensors the model returns
}
