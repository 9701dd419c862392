#!/usr/bin/env bash
# Installs dependencies, builds d3 and runs the built-in default model (resnet18) in one process.
# The distributed demo (device, edge and cloud node processes) arrives with the runtime.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
bin="${D3_BUILD_DIR:-$root/build}/apps"
echo "== d3-run: resnet18, 1 thread, 10 requests =="
"$bin/d3-run" --model resnet18 --threads 1 --repeat 10
echo
echo "== d3-run: all five models, JSON =="
"$bin/d3-run" --model all --threads 1 --repeat 5 --json
