#!/usr/bin/env bash
# Installs the Debian 12 packages that portclip needs to build and test.
# Runs apt-get as root (directly, or through sudo when not root).
set -euo pipefail

packages=(
  # build
  cmake gcc pkg-config make
  # libraries
  libcjson-dev libutf8proc-dev libjpeg62-turbo-dev libpng-dev libsqlite3-dev
  # tests (Check), and clang's runtime for the fuzzers and sanitizers (libomp-dev:
  # OpenMP for the clang-built fuzz targets)
  check clang libclang-rt-14-dev libomp-dev
  # GPU backends: headers, shader compiler, and CPU devices for the tests
  libvulkan-dev libvulkan-volk-dev glslc glslang-tools spirv-tools
  mesa-vulkan-drivers vulkan-validationlayers
  ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo
  # OpenCL benchmark only: CLBlast's SGEMM beside ours (bench/bench_opencl.c opens it with dlopen)
  libclblast-dev
  # CPU matmul
  libdnnl-dev
  # the Python binding's tests (python/portclip, tests/python); PyTorch reads a
  # trained head's export in check_head_python
  python3 python3-numpy python3-pytest python3-torch
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} Debian packages are installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
