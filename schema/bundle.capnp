# Messages of the distributed runtime (schema/bundle.hpp): tensors travelling between stages,
# layers shipped to nodes, and the spec a node builds a stage actor from.
@0x89b52ceb7404b9c1;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("d3::schema");

using import "model.capnp".Layer;
using import "tensor.capnp".Tensor;

# The tensors one stage sends to one destination for one request.
struct TensorBundle {
  requestId @0 :UInt64;
  planVersion @1 :UInt32;
  tensors @2 :List(Tensor);         # name, n, h, w, c, NHWC float32 data
  virtualMs @3 :Float64;            # virtual clock (emulation): arrival time at the destination, ms
}

# A fragment of a prepared graph: the selected layers plus one input layer per tensor they read
# from outside (named after its producer, inputShape = the producer's output shape), edges
# renumbered within the fragment. Layers whose weights are left out carry empty weights and bias
# and weightsIncluded = false (their weights come from a node's layer cache).
struct LayerShipment {
  modelHash @0 :UInt64;
  modelName @1 :Text;
  layers @2 :List(Layer);
  weightsIncluded @3 :List(Bool);   # per layer
  outputs @4 :List(UInt32);         # fragment layers whose tensors leave the fragment
}

struct Region {
  rowBegin @0 :Int32;
  rowEnd @1 :Int32;
  colBegin @2 :Int32;
  colEnd @3 :Int32;
}

enum StageKind {
  segment @0;
  scatter @1;
  tile @2;
  gather @3;
}

# A tensor cut out of (scatter) or put into (gather) a whole tensor.
struct RegionCopy {
  whole @0 :Text;                   # the whole tensor's name
  part @1 :Text;                    # the part's name ("T@tile<k>")
  region @2 :Region;
}

# What a node builds one stage actor from.
struct StageSpec {
  stageId @0 :Int32;
  kind @1 :StageKind;
  planVersion @2 :UInt32;
  modelHash @3 :UInt64;
  inputs @4 :List(Text);
  outputs @5 :List(Text);
  fragment @6 :LayerShipment;       # segment, tile: the layers (weights from the node's cache)
  # tile: the run is every computed layer of the fragment; the grid cuts the run output.
  tileIndex @7 :Int32;
  gridRowBounds @8 :List(Int32);
  gridColBounds @9 :List(Int32);
  tileInputRegions @10 :List(Region);  # tile: expected region of each input (order of inputs)
  tileOutputRegion @11 :Region;
  # scatter: parts cut from inputs; gather: parts put into the output.
  copies @12 :List(RegionCopy);
  wholeShapes @13 :List(Tensor);    # gather: the output's shape (data empty)
}
