#!/usr/bin/env bash
# Installs the Debian 12 packages d3 builds and runs with. Does nothing when all are present.
set -euo pipefail
packages=(
  build-essential cmake pkg-config
  libxnnpack-dev libpthreadpool-dev libcpuinfo-dev
  libcapnp-dev capnproto
  libcaf-dev
  libboost-test-dev
  libonnx-dev libprotobuf-dev protobuf-compiler libonnx-testdata
  python3-torch python3-torchvision python3-onnx
  nlohmann-json3-dev graphviz
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
