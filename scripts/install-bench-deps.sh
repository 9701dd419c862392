#!/usr/bin/env bash
# Installs what the benchmarks compare against: ONNX Runtime's CPU build from the npm package
# onnxruntime-node (tools/ort/package.json), with --ignore-scripts: its CPU binary ships inside the
# package and the install scripts would only fetch GPU extras. Also node/npm from Debian if absent.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends nodejs npm
fi
if [ ! -f "$root/tools/ort/node_modules/onnxruntime-node/package.json" ]; then
  (cd "$root/tools/ort" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
