#!/usr/bin/python3
"""Imports every classification model of the installed torchvision into d3 and checks it against
PyTorch: the zoo's status, as a new user would meet it.

For each model: export with tools/export_models.py's seeded unit-scale weights (opset 13), run
`d3-run --model M.onnx --input M.input.bin --output OUT` and compare the logits with PyTorch's
(largest |difference| over the largest |logit|; "matches" within 1e-4). Prints one line per model
and a summary; --json writes the rows too. Models over --max-params (default 200 M parameters)
are skipped and listed (regnet_y_128gf, vit_h_14, vit_l_*: export time and disk), unless --all.
Needs Debian's python3-torch, python3-torchvision, python3-onnx; run with /usr/bin/python3.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_models  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--d3-run", default="build/apps/d3-run")
    parser.add_argument("--models", default="", help="comma-separated (default: every classification model)")
    parser.add_argument("--max-params", type=float, default=200e6)
    parser.add_argument("--all", action="store_true", help="no size limit")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--seed", type=int, default=2021)
    args = parser.parse_args()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch
        import torchvision
        import onnx
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    names = [n for n in args.models.split(",") if n] or torchvision.models.list_models(module=torchvision.models)
    rows = []
    with tempfile.TemporaryDirectory(prefix="d3-zoo-") as tmp:
        for name in names:
            row = {"model": name}
            try:
                model = export_models.build_model(torchvision, name)
                params = sum(p.numel() for p in model.parameters())
                row["params"] = params
                if params > args.max_params and not args.all:
                    row["status"] = "skipped (size)"
                    rows.append(row)
                    print(f"{name:24s} skipped: {params / 1e6:.0f} M parameters", flush=True)
                    continue
                del model
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    meta = export_models.export(torch, torchvision, onnx, tmp, name, args.seed, 13)
                row["sensitivity"] = meta["output"]["sensitivity"]
            except Exception as e:  # the export itself failed (torch's exporter)
                row["status"] = "export failed"
                row["error"] = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
                rows.append(row)
                print(f"{name:24s} export failed: {row['error']}", flush=True)
                continue
            onnx_path = os.path.join(tmp, name + ".onnx")
            out_path = os.path.join(tmp, name + ".d3.bin")
            run = subprocess.run([args.d3_run, "--model", onnx_path, "--input", os.path.join(tmp, name + ".input.bin"),
                                  "--output", out_path, "--repeat", "1"], capture_output=True, text=True)
            if run.returncode != 0:
                row["status"] = "d3 failed"
                row["error"] = (run.stderr.strip().splitlines() or ["?"])[-1][:300]
            else:
                import numpy as np
                a = np.fromfile(out_path, dtype=np.float32)
                b = np.fromfile(os.path.join(tmp, name + ".output.bin"), dtype=np.float32)
                rel = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)) if a.shape == b.shape else float("inf")
                row["relative_difference"] = rel
                row["status"] = "matches" if rel <= 1e-4 else "differs"
                ms = [l for l in run.stdout.splitlines() if "median" in l]
                row["d3_run"] = ms[0].strip() if ms else ""
            rows.append(row)
            detail = row.get("error") or f"rel {row['relative_difference']:.2e}, sensitivity {row['sensitivity']:.3f}"
            print(f"{name:24s} {row['status']}: {detail}", flush=True)
            for f in os.listdir(tmp):
                os.remove(os.path.join(tmp, f))
    counts = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    print("summary: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + f" of {len(rows)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
