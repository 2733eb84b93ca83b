#!/usr/bin/env bash
# The OpenCL backend's benchmark in one command (bench/RESULTS.md, section
# "OpenCL backend"):
#
#   bash bench/opencl.sh [--seconds S]
#
# Builds Release into build-bench-opencl/ (bench_opencl and the CLI), then
#   1. the program cache: bench_opencl --startup with an empty program cache
#      and an empty PoCL kernel cache (first start), then again with both
#      filled (second start);
#   2. matmul GFLOP/s at ViT-B/32's layer shapes (batch 1 and 32) and the text
#      encoder's qkv, on OpenCL device PORTCLIP_DEVICE (default 0), beside the
#      CPU backend and CLBlast's SGEMM on the same device, in one process.
#   3. embed-image throughput on the benchmark checkpoint, OpenCL against the CPU.
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

# 3. embed throughput: portclip embed-image on the ViT-B/32-shaped benchmark
#    checkpoint (bench/make_checkpoint.py), OpenCL against the CPU backend, in
#    images/s from the difference of a 1-image and a (1 + N)-image run (start-up,
#    weight upload and the program cache hit cancel out).
N=${EMBED_IMAGES:-16}
MODEL=build-bench/clip-vit-b32-random
/usr/bin/python3 bench/make_checkpoint.py "$MODEL" > /dev/null
cmake --build "$BUILD" -j"$(nproc)" --target portclip_cli > /dev/null
IMG=tests/fixtures/images/j_large_640x427.jpg
many=()
for _ in $(seq 0 "$N"); do many+=("$IMG"); done
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }
echo "# embed-image, $N images of 640x427 (ViT-B/32 shape)"
for be in cpu opencl; do
  run() { XDG_CACHE_HOME=$PWD/$CACHE POCL_CACHE_DIR=$PWD/$CACHE/pocl OMP_WAIT_POLICY=PASSIVE \
          PORTCLIP_BACKEND=$be "$BUILD/tools/portclip" embed-image --model "$MODEL" \
          --output "$BUILD/bench-embed.npy" "$@"; }
  run "$IMG" # warms the program cache
  t1=$(secs run "$IMG")
  tn=$(secs run "${many[@]}")
  printf '%-7s %.2f images/s\n' "$be" "$(echo "$N / ($tn - $t1)" | bc -l)"
done
