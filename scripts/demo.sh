#!/usr/bin/env bash
# The d3 demo: installs what is missing, builds, starts a local cluster of node processes (device,
# edge1, edge2, cloud on 127.0.0.1:4301-4304), runs resnet18 over it with a three-tier plan whose
# layer1..layer2 run is tiled over both edge nodes, checks every answer against one process,
# prints the latencies and the actor topology, and stops the nodes.
# Links are real loopback here (no emulated bandwidth or latency yet): the latencies show the
# runtime's overhead over one process, not a device/edge/cloud network. Every connection is mutual
# TLS against the cluster CA in certs/ (made here on the first run by scripts/make-certs.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
bin="${D3_BUILD_DIR:-$root/build}/apps"
# The INI and cluster files name their certificates relative to the repository root.
cd "$root"
if [ ! -s certs/app.pem ]; then
  echo "== making the cluster's certificates (certs/: a cluster CA, one key and certificate per node and the app) =="
  scripts/make-certs.sh certs device edge1 edge2 edge3 edge4 cloud app
fi
config="$root/apps/config"
work="$(mktemp -d -t d3-demo-XXXXXX)"
pids=()
stop_nodes() {
  if [ ${#pids[@]} -gt 0 ]; then
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap stop_nodes EXIT

echo "== starting the local cluster (logs in $work) =="
for node in device edge1 edge2 cloud; do
  "$bin/d3-node" --config-file="$config/$node.ini" > "$work/$node.log" 2>&1 &
  pids+=($!)
done
for node in device edge1 edge2 cloud; do
  for _ in $(seq 100); do
    grep -q "listening" "$work/$node.log" 2>/dev/null && break
    sleep 0.1
  done
  if ! grep -q "listening" "$work/$node.log"; then
    echo "demo: node $node did not start:" >&2
    cat "$work/$node.log" >&2
    exit 1
  fi
  cat "$work/$node.log"
done

echo
echo "== one process: d3-run resnet18 =="
"$bin/d3-run" --model resnet18 --threads 1 --repeat 10

echo
echo "== distributed: resnet18, device -> edge1+edge2 (layer1..layer2 tiled 2x1) -> cloud =="
# apps/config/resnet18-demo.infer.json: the cluster, model, plan, 20 requests, --verify
"$bin/d3-infer" --config "$config/resnet18-demo.infer.json" --log "$work/topology.jsonl"

echo
echo "== topology while deployed (d3-topology; log: $work/topology.jsonl) =="
"$bin/d3-topology" "$work/topology.jsonl" --as-deployed --dot "$work/topology.dot"
if command -v dot >/dev/null; then
  "$bin/d3-topology" "$work/topology.jsonl" --as-deployed --png "$work/topology.png" >/dev/null
  echo "picture: $work/topology.png"
fi
