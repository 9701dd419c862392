#!/usr/bin/python3
"""Exports torchvision models to ONNX with seeded unit-scale weights, plus PyTorch's own results.

For each model NAME this writes into OUT_DIR:
  NAME.onnx              the model, torch.onnx.export at --opset (default 13), constants folded
                         (a model over 2 GB keeps its weights beside it in NAME.onnx.data)
  NAME.input.bin         a seeded uniform [-1, 1) 1x3x224x224 input, float32 NCHW little-endian
  NAME.output.bin        PyTorch's output for it (1x1000 logits), same encoding
  NAME.<module>.bin      the output of a few modules (forward hooks), same encoding (channels-last
                         maps [N, H, W, C], as Swin keeps them, written NCHW like the others)
  NAME.output64.bin      (export(..., float64=True) only: check_zoo --float64) the output of a
                         double-precision run on the same input, float64
  NAME.json              what the files are: seed, opset, shapes, the output's sensitivity to the
                         input (rms of y(x) - y(x') over rms of y(x)), and for every intermediate the
                         torch module path, its NCHW shape and the ONNX node that computes it (the
                         last node of the module's scope in the exported graph) with its output

Weights are re-initialised so activations keep unit scale through depth (untrained torchvision
weights make some models' logits nearly independent of the input): Kaiming-normal (fan in, ReLU
gain) convolution and linear weights, gain 1 where no ReLU follows (the final classifier, the
projection and shortcut convolutions of residual blocks), small uniform biases in [-0.05, 0.05),
batch norms with gamma in [0.8, 1.2) (times 1/sqrt(2) on a branch added to an identity
shortcut), beta and running mean in [-0.1, 0.1), running var in [0.8, 1.2); all drawn after
torch.manual_seed(seed). Then every convolution and linear layer is rescaled to unit output
deviation on a seeded calibration input (calibrate_scale). The models are exported in eval() mode.

Needs Debian's python3-torch, python3-torchvision and python3-onnx (run with /usr/bin/python3).
Idempotent: a model whose files exist and were written by this same script with the same seed
and opset is skipped (--force re-exports). Prints one line per model.
"""

import argparse
import contextlib
import copy
import hashlib
import io
import json
import math
import os
import sys
import tempfile
import warnings

MODELS = ["alexnet", "resnet18", "googlenet", "mobilenet_v2", "vgg16", "densenet121", "mobilenet_v3_small",
          "convnext_tiny", "vit_b_32", "swin_t", "maxvit_t"]
DEFAULT_MODELS = ["alexnet", "resnet18", "googlenet", "mobilenet_v2", "densenet121", "mobilenet_v3_small",
                  "convnext_tiny", "vit_b_32", "swin_t", "maxvit_t"]

# Modules whose outputs are saved and matched to ONNX nodes (torch module paths).
INTERMEDIATES = {
    "alexnet": ["features.2", "features.5", "features.9", "features.12"],
    "vgg16": ["features.4", "features.16", "features.30"],
    "resnet18": ["maxpool", "layer1", "layer2", "layer3.0", "layer4", "avgpool"],
    "googlenet": ["maxpool2", "inception3b", "inception4a.branch2", "inception4e", "inception5b"],
    "mobilenet_v2": ["features.2", "features.6", "features.13", "features.17", "features.18"],
    # Pre-activation blocks: every block starts with a batch norm that no convolution precedes.
    "densenet121": ["features.denseblock1", "features.transition2", "features.denseblock3", "features.denseblock4"],
    # HardSwish (Mul(x, HardSigmoid(x)) at opset 13) and squeeze-excitation gates (HardSigmoid).
    "mobilenet_v3_small": ["features.1", "features.4", "features.9", "features.12"],
    # Channels-last islands: Transpose, LayerNorm (decomposed at opset 13), Linear as MatMul on the
    # last axis, GELU (Erf), Transpose back, layer scale.
    "convnext_tiny": ["features.1", "features.3", "features.5", "features.7"],
    # Token tensors: patch embedding, class token, position embedding, multi-head attention.
    "vit_b_32": ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_5",
                 "encoder.layers.encoder_layer_11"],
    # Windowed attention on channels-last maps: window partition (6-D Reshape and Transpose), cyclic
    # shift (Slice and Concat), relative position bias, shift masks, patch merging (strided Slice).
    "swin_t": ["features.1", "features.3", "features.5", "features.7"],
    # MBConv blocks, window and grid attention (NCHW maps partitioned into windows, and the grid:
    # one pixel of every window), relative position bias, Einsum, the classifier's Tanh.
    "maxvit_t": ["blocks.0", "blocks.1", "blocks.2", "blocks.3"],
}

# Models whose 4-D module outputs are channels-last maps [N, H, W, C] (Swin keeps its maps so).
def channels_last(name):
    return name.startswith("swin_")


# A model without an INTERMEDIATES entry (check_zoo's whole zoo) gets up to GENERIC_INTERMEDIATES
# modules spread over its forward pass, chosen among the modules of depth 1 to 3 (`layer2`,
# `features.7`, `encoder.layers.encoder_layer_3`) called once, each ONNX tensor once, whose output
# is a map or token tensor that d3 keeps: not a convolution, linear layer or norm whose output d3
# fuses with what follows (a batch norm into its convolution, an activation into either), not a
# dropout, identity or flatten.
GENERIC_INTERMEDIATES = 4
UNKEPT_LEAVES = ("Conv2d", "Linear", "BatchNorm2d", "Dropout", "Identity", "Flatten", "StochasticDepth")


def generic_candidates(model):
    out = []
    for path, mod in model.named_modules():
        if not path or path.count(".") > 2:
            continue
        if not list(mod.children()) and type(mod).__name__ in UNKEPT_LEAVES:
            continue
        out.append(path)
    return out

FORMAT_VERSION = 1


def script_digest():
    """Changes whenever this script does (weights, inputs or intermediates may have changed)."""
    with open(os.path.abspath(__file__), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def build_model(torchvision, name):
    m = torchvision.models
    if name == "googlenet":
        # init_weights=False: the weights are re-initialised below anyway (and torchvision's own
        # initialisation of GoogLeNet needs scipy).
        return m.googlenet(weights=None, aux_logits=False, transform_input=False, init_weights=False)
    return getattr(m, name)(weights=None)


def reinitialise(torch, torchvision, model, seed):
    """Seeded unit-scale weights (see the module docstring)."""
    nn = torch.nn
    # Convolutions whose output reaches a ReLU only after a residual add (or never) get gain 1, not
    # the ReLU gain sqrt(2): the projection of a residual branch and its shortcut convolution.
    # The last batch norm of a branch added to an identity shortcut has its gamma scaled by
    # 1/sqrt(2), so the sum keeps the scale of its terms (as d3's built-in models do).
    linear_convs = set()
    residual_bns = set()
    for mod in model.modules():
        if isinstance(mod, torchvision.models.resnet.BasicBlock):
            linear_convs.add(mod.conv2)
            if mod.downsample is not None:
                linear_convs.add(mod.downsample[0])
            else:
                residual_bns.add(mod.bn2)
        elif isinstance(mod, torchvision.models.mobilenetv2.InvertedResidual):
            linear_convs.add(mod.conv[-2])
            if mod.use_res_connect:
                residual_bns.add(mod.conv[-1])
        elif isinstance(mod, torchvision.models.mobilenetv3.InvertedResidual):
            projection = mod.block[-1]  # Conv2dNormActivation without activation: conv, bn
            linear_convs.add(projection[0])
            if mod.use_res_connect:
                residual_bns.add(projection[1])
        elif isinstance(mod, (torchvision.models.efficientnet.MBConv, torchvision.models.efficientnet.FusedMBConv)):
            # The block ends in a Conv2dNormActivation: conv, bn and (only in a fused block without
            # expansion) an activation. Without this EfficientNet's residual stream grew through its
            # deep stages (b7's activations reached rms 57 on one input and 3.4 on another).
            last = mod.block[-1]
            if len(last) == 2:
                linear_convs.add(last[0])
            if mod.use_res_connect:
                residual_bns.add(last[1])
        elif isinstance(mod, torchvision.ops.SqueezeExcitation):
            linear_convs.add(mod.fc2)  # feeds the gate's HardSigmoid/Sigmoid, not a ReLU
    linears = [mod for mod in model.modules() if isinstance(mod, nn.Linear)]
    last_linear = linears[-1] if linears else None

    torch.manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                linear = mod in linear_convs or mod is last_linear
                nn.init.kaiming_normal_(mod.weight, mode="fan_in", nonlinearity="linear" if linear else "relu")
                if mod.bias is not None:
                    mod.bias.uniform_(-0.05, 0.05)
            elif isinstance(mod, torchvision.models.convnext.CNBlock):
                # torchvision starts the residual branch's scale at 1e-6: the branch would not count.
                mod.layer_scale.uniform_(0.4, 0.8)
            elif isinstance(mod, torchvision.models.vision_transformer.VisionTransformer):
                # torchvision starts the class token at zero and the position embedding at 0.02.
                mod.class_token.normal_(0.0, 1.0)
                mod.encoder.pos_embedding.normal_(0.0, 0.5)
            elif isinstance(mod, nn.MultiheadAttention):
                nn.init.kaiming_normal_(mod.in_proj_weight, mode="fan_in", nonlinearity="linear")
                mod.in_proj_bias.uniform_(-0.05, 0.05)
            elif isinstance(mod, (torchvision.models.swin_transformer.ShiftedWindowAttention,
                                  torchvision.models.maxvit.RelativePositionalMultiHeadAttention)):
                # torchvision draws the relative position bias with std 0.02: it would not count.
                # (Swin V2's attention computes its bias with an MLP and has no table.)
                if hasattr(mod, "relative_position_bias_table"):
                    mod.relative_position_bias_table.normal_(0.0, 1.0)
            elif isinstance(mod, nn.LayerNorm):
                mod.weight.uniform_(0.8, 1.2)
                mod.bias.uniform_(-0.1, 0.1)
            elif isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.8, 1.2)
                if mod in residual_bns:
                    mod.weight.mul_(1.0 / math.sqrt(2.0))
                mod.bias.uniform_(-0.1, 0.1)
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.8, 1.2)
    model.eval()
    calibrate_scale(torch, model, seed)


def calibrate_scale(torch, model, seed):
    """Rescales every convolution and linear layer so its output has unit standard deviation on a
    seeded calibration input (one forward pass: each layer is rescaled as the pass reaches it, so
    the layers after it see the corrected tensor). Kaiming's gain assumes ReLU; this keeps unit
    scale through HardSwish, GELU, gates and whatever else a family puts between layers."""
    nn = torch.nn
    done = set()

    def hook(mod, inputs, output):
        if mod in done:
            return output
        done.add(mod)
        std = float(output.std())
        if not math.isfinite(std) or std < 1e-12:
            return output
        mod.weight.div_(std)
        if mod.bias is not None:
            mod.bias.div_(std)
        return output / std

    handles = [mod.register_forward_hook(hook) for mod in model.modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]
    generator = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(2, 3, 224, 224, generator=generator, dtype=torch.float32) * 2.0 - 1.0
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()


def scope_prefix(module_path):
    """torch 1.13's ONNX node-name scope of a module, e.g. "layer2.0.downsample.0" ->
    "/layer2/layer2.0/downsample/downsample.0/": one level per module, each named like the
    exporter's _unqualified_variable_name (the qualified name from its last non-numeric atom)."""
    parts = module_path.split(".")
    levels = []
    for i in range(len(parts)):
        start = i
        while start > 0 and parts[start].isnumeric():
            start -= 1
        levels.append(".".join(parts[start: i + 1]))
    return "/" + "/".join(levels) + "/"


def find_module_node(graph, module_path):
    """The last node (in the exported topological order) inside the module's scope."""
    found = None
    # (A ModuleList's children are scoped by their path alone: MaxViT's "/blocks.0/".)
    for prefix in (scope_prefix(module_path), "/" + module_path + "/"):
        for node in graph.node:
            if node.name.startswith(prefix):
                found = node
        if found is not None:
            return found
    return found


def write_tensor(path, t, double=False):
    torch = __import__("torch")
    data = t.detach().contiguous().to(dtype=torch.float64 if double else torch.float32).numpy()
    if sys.byteorder != "little":
        data = data.byteswap()
    with open(path, "wb") as f:
        f.write(data.tobytes())


def up_to_date(out_dir, name, seed, opset):
    meta_path = os.path.join(out_dir, name + ".json")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return False
    if (meta.get("format") != FORMAT_VERSION or meta.get("seed") != seed or meta.get("opset") != opset
            or meta.get("script") != script_digest()):
        return False
    files = [meta.get("onnx"), meta.get("input", {}).get("file"), meta.get("output", {}).get("file")]
    files += [meta["onnx_data"]] if "onnx_data" in meta else []
    files += [i.get("file") for i in meta.get("intermediates", [])]
    return all(f and os.path.isfile(os.path.join(out_dir, f)) for f in files)


def export(torch, torchvision, onnx, out_dir, name, seed, opset, float64=False):
    """float64: also run the model in double precision on the same input and record PyTorch's own
    float32 error against it (meta["output"]["float32_error"]; the double output in
    NAME.output64.bin): the precision a float32 engine can be held to on this model."""
    model = build_model(torchvision, name)
    reinitialise(torch, torchvision, model, seed)

    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, 224, 224, generator=generator, dtype=torch.float32) * 2.0 - 1.0

    modules = dict(model.named_modules())
    generic = name not in INTERMEDIATES
    wanted = generic_candidates(model) if generic else INTERMEDIATES[name]
    captured = {}
    calls = {}
    order = []
    hooks = []
    for path in wanted:
        if path not in modules:
            raise RuntimeError(f"{name}: no module '{path}'")

        def hook(mod, inputs, output, path=path):
            calls[path] = calls.get(path, 0) + 1
            if path not in order:
                order.append(path)
            if isinstance(output, torch.Tensor):
                captured[path] = output.detach().clone()

        hooks.append(modules[path].register_forward_hook(hook))
    with torch.no_grad():
        y = model(x)
    for h in hooks:
        h.remove()
    if generic:
        # Finished (hook) order is inner before outer; the last one is the model's output.
        wanted = [p for p in order if calls[p] == 1 and p in captured and captured[p].dim() >= 3]
    # How much the output depends on the input: rms(y(x) - y(x')) / rms(y(x)) for a second input.
    # Near 0 the comparisons prove little (a model whose logits ignore the input matches anything).
    x2 = torch.rand(1, 3, 224, 224, generator=generator, dtype=torch.float32) * 2.0 - 1.0
    with torch.no_grad():
        y2 = model(x2)
    sensitivity = float((y - y2).pow(2).mean().sqrt() / y.pow(2).mean().sqrt().clamp_min(1e-30))
    float32_error = None
    if float64:
        with torch.no_grad():
            y64 = copy.deepcopy(model).double()(x.double())
        float32_error = float((y.double() - y64).abs().max() / y64.abs().max().clamp_min(1e-300))
        write_tensor(os.path.join(out_dir, name + ".output64.bin"), y64, double=True)
        del y64

    onnx_file = name + ".onnx"
    onnx_path = os.path.join(out_dir, onnx_file)
    data_file = None
    # A model over protobuf's 2 GB limit (regnet_y_128gf) is exported with its weights in external
    # data, which torch writes as one file per tensor beside the model: export into a private
    # directory and gather them into one NAME.onnx.data.
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp_dir:
        tmp_path = os.path.join(tmp_dir, onnx_file)
        # The exporter is chatty (warnings, diagnostics); keep the tool's output to one line a model.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(model, x, tmp_path, opset_version=opset, do_constant_folding=True,
                              input_names=["input"], output_names=["output"], verbose=False)
        proto = onnx.load(tmp_path, load_external_data=False)
        if any(onnx.external_data_helper.uses_external_data(t) for t in proto.graph.initializer):
            onnx.load_external_data_for_model(proto, tmp_dir)
            data_file = onnx_file + ".data"
            onnx.save_model(proto, tmp_path, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_file, size_threshold=1024)
            os.replace(os.path.join(tmp_dir, data_file), os.path.join(out_dir, data_file))
        os.replace(tmp_path, onnx_path)
    del model

    # (Shapes and node names only: the weights stay on disk, and a model over 2 GB could not be
    # serialised for shape inference with them.)
    proto = onnx.load(onnx_path, load_external_data=False)
    inferred = onnx.shape_inference.infer_shapes(proto)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]

    write_tensor(os.path.join(out_dir, name + ".input.bin"), x)
    write_tensor(os.path.join(out_dir, name + ".output.bin"), y)

    intermediates = []
    usable = []
    for path in wanted:
        t = captured[path]
        node = find_module_node(proto.graph, path)
        if node is None:
            if generic:
                continue
            raise RuntimeError(f"{name}: no ONNX node in scope {scope_prefix(path)}")
        # A module that ends in layout ops (MaxViT's departition: Reshape, Transpose, Reshape) holds
        # the values of the node before them in another order; d3 keeps that node's tensor (the
        # layout ops are views of it), so compare there.
        viewed = False
        producers = {o: n for n in proto.graph.node for o in n.output}
        while node.op_type in ("Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze") and node.input[0] in producers:
            node = producers[node.input[0]]
            viewed = True
        out = node.output[0]
        # (ONNX shape inference leaves some shapes unknown, [], behind Swin's reshapes.)
        if not viewed and out in shapes and shapes[out] and shapes[out] != list(t.shape):
            if generic:
                continue
            raise RuntimeError(f"{name}: ONNX node {node.name} output {out} has shape {shapes[out]}, "
                               f"module {path} output {list(t.shape)}")
        if generic and (viewed or out == proto.graph.output[0].name or any(u[3] == out for u in usable)):
            continue
        usable.append((path, t, node, out))
    if generic and len(usable) > GENERIC_INTERMEDIATES:
        # Spread over the forward pass: the k-th of GENERIC_INTERMEDIATES evenly spaced picks.
        n = len(usable)
        usable = [usable[(k + 1) * n // (GENERIC_INTERMEDIATES + 1)] for k in range(GENERIC_INTERMEDIATES)]
    for path, t, node, out in usable:
        if channels_last(name) and t.dim() == 4:
            t = t.permute(0, 3, 1, 2)  # [N, H, W, C] maps written as every other 4-D tensor: NCHW
        file = f"{name}.{path}.bin"
        write_tensor(os.path.join(out_dir, file), t)
        intermediates.append({
            "module": path,
            "file": file,
            "shape": list(t.shape),
            "onnx_node": node.name,
            "onnx_op": node.op_type,
            "onnx_output": out,
            "rms": float(t.pow(2).mean().sqrt()),
        })

    meta = {
        "format": FORMAT_VERSION,
        "model": name,
        "seed": seed,
        "opset": opset,
        "script": script_digest(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "onnx": onnx_file,
        **({"onnx_data": data_file} if data_file else {}),
        "nodes": len(proto.graph.node),
        "input": {"file": name + ".input.bin", "name": "input", "shape": list(x.shape)},
        "output": {"file": name + ".output.bin", "name": proto.graph.output[0].name, "shape": list(y.shape),
                   "rms": float(y.pow(2).mean().sqrt()), "sensitivity": sensitivity,
                   **({"float32_error": float32_error} if float64 else {})},
        "intermediates": intermediates,
    }
    meta_path = os.path.join(out_dir, name + ".json")
    with open(meta_path + ".tmp", "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    os.replace(meta_path + ".tmp", meta_path)  # written last: its presence marks a complete export
    return meta


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output directory (created)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="comma-separated: " + ",".join(MODELS) + " (default: all but vgg16)")
    parser.add_argument("--with-vgg16", action="store_true", help="also export vgg16 (553 MB of weights)")
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--opset", type=int, default=13)
    parser.add_argument("--force", action="store_true", help="re-export even when the files are up to date")
    args = parser.parse_args()

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if args.with_vgg16 and "vgg16" not in names:
        names.append("vgg16")
    for n in names:
        if n not in MODELS:
            parser.error(f"unknown model '{n}' (known: {', '.join(MODELS)})")
    os.makedirs(args.out, exist_ok=True)

    pending = [n for n in names if args.force or not up_to_date(args.out, n, args.seed, args.opset)]
    for n in names:
        if n not in pending:
            print(f"{n}: up to date in {args.out}")
    if not pending:
        return 0

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch
        import torchvision
        import onnx
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    for n in pending:
        meta = export(torch, torchvision, onnx, args.out, n, args.seed, args.opset)
        rms = ", ".join(f"{i['module']} {i['rms']:.2f}" for i in meta["intermediates"])
        print(f"{n}: {meta['onnx']} ({meta['nodes']} nodes, opset {args.opset}, seed {args.seed}); "
              f"rms {rms}, output {meta['output']['rms']:.2f}, sensitivity {meta['output']['sensitivity']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
