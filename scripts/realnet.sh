#!/usr/bin/env bash
# d3-bench realnet over every scenario of a testbed (run as root, after scripts/build.sh): a
# cluster in network namespaces (scripts/netns-cluster.sh up), then per scenario its links
# re-shaped with tc (netns-cluster.sh shape) and d3-bench realnet run in the device's namespace;
# the cluster is removed at the end, also when something fails.
#   scripts/realnet.sh [--testbed FILE] [--scenarios A,B,...] [--edges N] [--speed-scale X]
#                      [--no-calibrate] [--out DIR] [-- d3-bench realnet options, e.g. --requests 8]
# Writes DIR/realnet-MODEL-SCENARIO.json, DIR/realnet.md (default docs/results/realnet) and
# DIR/cluster.txt (the cluster's quotas and links). The nodes' cpu quotas are calibrated to the
# testbed's speeds (netns-cluster.sh up --calibrate; --no-calibrate keeps speed x scale) and lifted
# while the virtual clock's requests run (d3-bench realnet --quotas).
# Scenarios run fastest backbone first (by default; --scenarios keeps the order given): the nodes
# cache the layers shipped, and shipping resnet18's 47 MB to the cloud takes 20 s at 18.88 Mbit/s
# but 48 minutes at CAT1's 0.13 Mbit/s.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
testbed="$root/apps/config/testbed-d3.json" scenarios="" edges=2 scale="" out="$root/docs/results/realnet" calibrate=--calibrate
while [ $# -gt 0 ]; do
  case "$1" in
    --testbed) testbed="$2"; shift 2 ;;
    --scenarios) scenarios="$2"; shift 2 ;;
    --edges) edges="$2"; shift 2 ;;
    --speed-scale) scale="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --no-calibrate) calibrate=""; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "realnet: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
bench="$root/build/apps/d3-bench"
[ -x "$bench" ] || { echo "realnet: no $bench (run scripts/build.sh first)" >&2; exit 1; }
if [ -z "$scenarios" ]; then
  scenarios="$(python3 - "$testbed" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
base = t.get("links", {}).get("edge-cloud", {}).get("mbit_per_s", 0)
rate = lambda s: t["scenarios"][s].get("edge-cloud", {}).get("mbit_per_s", base)
print(",".join(sorted(t.get("scenarios", {}), key=rate, reverse=True)))
PY
)"
fi
mkdir -p "$out"
cluster="$(mktemp -d -t d3-realnet-XXXXXX)"
trap '"$root/scripts/netns-cluster.sh" down >/dev/null 2>&1; rm -rf "$cluster"' EXIT
first="${scenarios%%,*}"
"$root/scripts/netns-cluster.sh" up --testbed "$testbed" ${first:+--scenario "$first"} --edges "$edges" \
  ${scale:+--speed-scale "$scale"} $calibrate --out "$cluster"
scale="$(cat /run/d3-netns/speed_scale)"
cp /run/d3-netns/summary "$out/cluster.txt"
IFS=',' read -r -a list <<< "${scenarios:-base}"
for s in "${list[@]}"; do
  [ -n "$scenarios" ] && "$root/scripts/netns-cluster.sh" shape --testbed "$testbed" --scenario "$s"
  # nsenter, not ip netns exec: the bench switches the nodes' quotas in the host's cgroup tree,
  # which ip netns exec's own /sys mount hides.
  nsenter --net=/run/netns/d3-device "$bench" realnet --cluster "$cluster/cluster.json" --testbed "$testbed" \
    ${scenarios:+--scenario "$s"} --speed-scale "$scale" --quotas /run/d3-netns/quotas --out "$out" "$@"
done
echo "realnet: report $out/realnet.md"
