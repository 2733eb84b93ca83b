#!/usr/bin/env bash
# The OpenCL backend's benchmark in one command (bench/RESULTS.md, section
# "OpenCL backend"):
#
#   bash bench/opencl.sh [--seconds S]
#
# Builds Release into build-bench-opencl/ (bench_opencl only), then
#   1. the program cache: bench_opencl --startup with an empty program cache
#      and an empty PoCL kernel cache (first start), then again with both
#      filled (second start);
#   2. matmul GFLOP/s at ViT-B/32's layer shapes (batch 1 and 32) and the text
#      encoder's qkv, on OpenCL device PORTCLIP_DEVICE (default 0), beside the
#      CPU backend and CLBlast's SGEMM on the same device, in one process.
# Environment: BENCH_BUILD (default build-bench-opencl), PORTCLIP_DEVICE.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=2
if [ "${1:-}" = "--seconds" ]; then SECS=$2; fi
BUILD=${BENCH_BUILD:-build-bench-opencl}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$BUILD" -j"$(nproc)" --target bench_opencl > /dev/null
DEV=${PORTCLIP_DEVICE:-0}
CACHE=$BUILD/opencl-cache
rm -rf "$CACHE"
mkdir -p "$CACHE"
echo "# program cache (device $DEV)"
for start in first second; do
  printf '%s start: ' "$start"
  XDG_CACHE_HOME=$PWD/$CACHE POCL_CACHE_DIR=$PWD/$CACHE/pocl "$BUILD/bench_opencl" --startup --device "$DEV"
done
echo "# matmul"
XDG_CACHE_HOME=$PWD/$CACHE POCL_CACHE_DIR=$PWD/$CACHE/pocl OMP_WAIT_POLICY=PASSIVE \
  "$BUILD/bench_opencl" --device "$DEV" --seconds "$SECS"
