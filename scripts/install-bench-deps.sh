#!/usr/bin/env bash
# Installs what the benchmarks need beyond the build: ONNX Runtime's CPU build from the npm package
# onnxruntime-node (tools/ort/package.json), with --ignore-scripts: its CPU binary ships inside the
# package and the install scripts would only fetch GPU extras; node/npm from Debian if absent; and
# Debian's gnuplot-nox, which draws d3-bench grid's PNG charts (without it the grid skips them).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
source "$root/scripts/apt-install.sh"
packages=(gnuplot-nox)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then packages+=(nodejs npm); fi
apt_install "${packages[@]}"
if [ ! -f "$root/tools/ort/node_modules/onnxruntime-node/package.json" ]; then
  echo "install: onnxruntime-node from npm (tools/ort)"
  (cd "$root/tools/ort" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
fi
