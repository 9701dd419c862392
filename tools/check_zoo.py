#!/usr/bin/python3
"""Imports every classification model of the installed torchvision into d3 and checks it against
PyTorch: the zoo's status, as a new user would meet it.

For each model: export with tools/export_models.py's seeded unit-scale weights (opset 13), run
`d3-run --model M.onnx --input M.input.bin --output OUT` and compare the logits with PyTorch's
(largest |difference| over the largest |logit|), and the same for the intermediates the exporter
recorded (up to four module outputs spread over the forward pass, d3's read with d3-run --dump):
"matches" when the output and at least three intermediates are within 1e-4. Prints one line per model
and a summary; --json writes the rows too. Models over --max-params (default 200 M parameters)
are skipped and listed (regnet_y_128gf, vit_h_14, vit_l_*: export time and disk), unless --all.
--distributed also runs each model over real node processes (d3-node device, edge1, cloud of
apps/config/cluster.json, started per model, mutual TLS with certs/ made by scripts/make-certs.sh
if missing): a three-tier plan cutting the layers' topological order into thirds (device, edge1,
cloud), two requests checked memcmp-equal with one process (d3-infer --verify).
--float64 also runs each model in double precision and prints PyTorch's own float32 error and d3's
against it: on a deep, badly conditioned model the 1e-4 bound can be below what float32 can hold.
Needs Debian's python3-torch, python3-torchvision, python3-onnx; run with /usr/bin/python3.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_models  # noqa: E402


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODES = ["device", "edge1", "cloud"]


def relative_difference(actual, expected):
    """max |actual - expected| / max |expected| (inf when the sizes differ): the measure the 1e-4
    bound applies to."""
    if actual.shape != expected.shape:
        return float("inf")
    return float(abs(actual.astype("float64") - expected).max() / max(abs(expected).max(), 1e-300))


def three_tier_plan(bin_dir, onnx_path):
    """A plan cutting the model's layers (topological order, as d3-run --layers lists them) into
    thirds: device, edge1, cloud. Every edge of a DAG points forward in that order, so each third
    is a valid segment whatever the model's branches."""
    out = subprocess.run([os.path.join(bin_dir, "d3-run"), "--model", onnx_path, "--layers"], capture_output=True,
                         text=True, check=True).stdout
    names = []
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 3 and cols[0].isdigit() and cols[2] != "input":
            names.append(cols[1])
    if len(names) < 3:
        raise RuntimeError(f"{len(names)} layers: too few for three tiers")
    cuts = [0, len(names) // 3, 2 * len(names) // 3, len(names)]
    return {"version": 1, "strategy": "file",
            "segments": [{"node": NODES[i], "first": names[cuts[i]], "last": names[cuts[i + 1] - 1]} for i in range(3)]}


def run_distributed(bin_dir, onnx_path, tmp):
    """Runs the three-tier plan over fresh node processes; "bit-identical" or what went wrong."""
    try:
        plan = three_tier_plan(bin_dir, onnx_path)
    except (RuntimeError, subprocess.CalledProcessError) as e:
        return f"no plan: {e}"
    plan_path = os.path.join(tmp, "three-tier.plan.json")
    with open(plan_path, "w") as f:
        json.dump(plan, f)
    nodes, logs = [], []
    try:
        for n in NODES:
            log = open(os.path.join(tmp, n + ".node.log"), "w+")
            logs.append(log)
            nodes.append(subprocess.Popen([os.path.join(bin_dir, "d3-node"), f"--config-file=apps/config/{n}.ini"],
                                          stdout=log, stderr=subprocess.STDOUT))
        for n, log in zip(NODES, logs):
            for _ in range(100):
                with open(log.name) as f:
                    if "listening" in f.read():
                        break
                time.sleep(0.1)
            else:
                return f"node {n} did not start"
        with open("apps/config/cluster.json") as f:
            cluster = json.load(f)
        cluster["nodes"] = [n for n in cluster["nodes"] if n["name"] in NODES]
        cluster_path = os.path.join(tmp, "cluster.json")
        with open(cluster_path, "w") as f:
            json.dump(cluster, f)
        run = subprocess.run([os.path.join(bin_dir, "d3-infer"), "--cluster", cluster_path, "--model", onnx_path,
                              "--plan", plan_path, "--requests", "2", "--verify", "--timeout-ms", "600000"],
                             capture_output=True, text=True)
        if run.returncode != 0:
            return "failed: " + ((run.stderr.strip().splitlines() or ["?"])[-1][:300])
        if "verify: 2 of 2 answers memcmp-equal" not in run.stdout:
            return "not verified: " + " ".join(l for l in run.stdout.splitlines() if l.startswith(("verify", "requests")))
        return "bit-identical"
    finally:
        for p in nodes:
            p.terminate()
        for p in nodes:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in logs:
            log.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--d3-run", default="build/apps/d3-run", help="d3-node and d3-infer are beside it")
    parser.add_argument("--models", default="", help="comma-separated (default: every classification model)")
    parser.add_argument("--max-params", type=float, default=200e6)
    parser.add_argument("--all", action="store_true", help="no size limit")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--distributed", action="store_true",
                        help="also run each model over device, edge1 and cloud node processes, checked bit for bit")
    parser.add_argument("--float64", action="store_true", help="also compare both with a float64 run of PyTorch")
    args = parser.parse_args()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch
        import torchvision
        import onnx
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    bin_dir = os.path.dirname(os.path.abspath(args.d3_run))
    if args.distributed:
        # The node INI files name their certificates relative to the repository root.
        os.chdir(REPO)
        if not os.path.isfile("certs/app.pem"):
            subprocess.run(["scripts/make-certs.sh", "certs", "device", "edge1", "edge2", "edge3", "edge4", "cloud",
                            "app"], check=True, stdout=subprocess.DEVNULL)
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
                    meta = export_models.export(torch, torchvision, onnx, tmp, name, args.seed, 13, args.float64)
                row["sensitivity"] = meta["output"]["sensitivity"]
            except Exception as e:  # the export itself failed (torch's exporter)
                row["status"] = "export failed"
                row["error"] = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
                rows.append(row)
                print(f"{name:24s} export failed: {row['error']}", flush=True)
                continue
            onnx_path = os.path.join(tmp, name + ".onnx")
            out_path = os.path.join(tmp, name + ".d3.bin")
            dumps = []
            for i in meta["intermediates"]:
                dumps += ["--dump", f"{i['onnx_node'] or i['onnx_output']}={os.path.join(tmp, i['file'] + '.d3')}"]
            run = subprocess.run([os.path.join(bin_dir, "d3-run"), "--model", onnx_path, "--input",
                                  os.path.join(tmp, name + ".input.bin"), "--output", out_path, "--repeat", "1"] + dumps,
                                 capture_output=True, text=True)
            if run.returncode != 0:
                row["status"] = "d3 failed"
                row["error"] = (run.stderr.strip().splitlines() or ["?"])[-1][:300]
            else:
                import numpy as np
                a = np.fromfile(out_path, dtype=np.float32)
                b = np.fromfile(os.path.join(tmp, name + ".output.bin"), dtype=np.float32)
                rel = relative_difference(a, b)
                row["relative_difference"] = rel
                # The intermediates (module outputs, tools/export_models.py): the same measure each.
                row["intermediates"] = {}
                for i in meta["intermediates"]:
                    ia = np.fromfile(os.path.join(tmp, i["file"] + ".d3"), dtype=np.float32)
                    ib = np.fromfile(os.path.join(tmp, i["file"]), dtype=np.float32)
                    if len(i["shape"]) == 3 and ia.size == ib.size:
                        # d3 holds tokens [N, T, C] as a map of T pixels: --dump wrote them channel-major.
                        n, t, c = i["shape"]
                        ia = ia.reshape(n, c, t).transpose(0, 2, 1).ravel()
                    row["intermediates"][i["module"]] = relative_difference(ia, ib)
                worst = max([rel] + list(row["intermediates"].values()))
                row["status"] = "matches" if worst <= 1e-4 and len(row["intermediates"]) >= 3 else "differs"
                if args.float64 and a.shape == b.shape:
                    c = np.fromfile(os.path.join(tmp, name + ".output64.bin"), dtype=np.float64)
                    row["torch_float32_vs_float64"] = meta["output"]["float32_error"]
                    row["d3_vs_float64"] = relative_difference(a, c)
                ms = [l for l in run.stdout.splitlines() if "median" in l]
                row["d3_run"] = ms[0].strip() if ms else ""
                if args.distributed:
                    row["distributed"] = run_distributed(bin_dir, onnx_path, tmp)
                    if row["distributed"] != "bit-identical":
                        row["status"] = "differs"
            rows.append(row)
            detail = row.get("error") or (
                f"rel {row['relative_difference']:.2e}, sensitivity {row['sensitivity']:.3f}, "
                f"{len(row['intermediates'])} intermediates worst "
                f"{max(row['intermediates'].values(), default=float('nan')):.2e}")
            if "distributed" in row:
                detail += f"; three-tier over nodes: {row['distributed']}"
            if "d3_vs_float64" in row:
                detail += (f"; against float64: PyTorch {row['torch_float32_vs_float64']:.2e}, "
                           f"d3 {row['d3_vs_float64']:.2e}")
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
