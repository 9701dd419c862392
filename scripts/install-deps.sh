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
  nlohmann-json3-dev graphviz openssl libssl-dev
  libzstd-dev libpng-dev libjpeg62-turbo-dev python3-pil
)
source "$(dirname "$0")/apt-install.sh"
apt_install "${packages[@]}"
