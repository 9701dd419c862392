#!/usr/bin/env bash
# Installs what the benchmarks need beyond the build: ONNX Runtime's CPU build from the npm package
# onnxruntime-node (tools/ort/package.json), with --ignore-scripts: its CPU binary ships inside the
# package and the install scripts would only fetch GPU extras; node/npm from Debian if absent; and
# Debian's gnuplot-nox, which draws d3-bench grid's PNG charts (without it the grid skips them).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
packages=()
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then packages+=(nodejs npm); fi
if ! command -v gnuplot >/dev/null; then packages+=(gnuplot-nox); fi
if [ "${#packages[@]}" -gt 0 ]; then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi
if [ ! -f "$root/tools/ort/node_modules/onnxruntime-node/package.json" ]; then
  (cd "$root/tools/ort" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
