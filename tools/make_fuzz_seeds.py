#!/usr/bin/python3
"""Writes fuzz/seeds/onnx/tiny_swin.onnx and tiny_maxvit.onnx: torch exports (opset 13) of a
one-stage Swin (a plain and a shifted window block: partition, cyclic shift, shift masks, relative
position bias) and a one-block MaxViT (MBConv, window and grid attention, Einsum, the Tanh head),
small enough for the fuzzers' 64 KB inputs: tiny widths, node names dropped and tensors renamed
(the graph is unchanged). Run with /usr/bin/python3 (Debian's python3-torch, -torchvision, -onnx).
"""

import argparse
import contextlib
import io
import os
import warnings


def shrink(onnx, path):
    m = onnx.load(path)
    g = m.graph
    keep = {i.name for i in g.input} | {o.name for o in g.output}
    names = {}

    def short(x):
        if x == "" or x in keep:
            return x
        return names.setdefault(x, "t%x" % len(names))

    for init in g.initializer:
        init.name = short(init.name)
    for n in g.node:
        n.name = ""
        n.doc_string = ""
        for i in range(len(n.input)):
            n.input[i] = short(n.input[i])
        for i in range(len(n.output)):
            n.output[i] = short(n.output[i])
    del g.value_info[:]
    m.producer_name = "d3-seed"
    m.doc_string = ""
    onnx.save(m, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "seeds", "onnx"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import onnx
        import torch
        from torchvision.models.maxvit import MaxVit
        from torchvision.models.swin_transformer import SwinTransformer
        torch.manual_seed(1)
        models = {
            "tiny_swin": (SwinTransformer(patch_size=[2, 2], embed_dim=4, depths=[2], num_heads=[1], window_size=[2, 2],
                                          stochastic_depth_prob=0.0, num_classes=3, mlp_ratio=1.0), (1, 3, 8, 8)),
            "tiny_maxvit": (MaxVit(input_size=(16, 16), stem_channels=4, partition_size=2, block_channels=[4],
                                   block_layers=[1], head_dim=4, stochastic_depth_prob=0.0, num_classes=3, mlp_ratio=1),
                            (1, 3, 16, 16)),
        }
        for name, (model, shape) in models.items():
            path = os.path.join(args.out, name + ".onnx")
            with contextlib.redirect_stdout(io.StringIO()):
                torch.onnx.export(model.eval(), torch.rand(*shape), path, opset_version=13, do_constant_folding=True,
                                  input_names=["input"], output_names=["output"])
            shrink(onnx, path)
            print(f"{path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
