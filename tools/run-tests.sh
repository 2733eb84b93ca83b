#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite with CTest.
#   tools/run-tests.sh             Release build in build/
#   tools/run-tests.sh --sanitize  ASan + UBSan build in build-asan/
#   tools/run-tests.sh --fuzz      libFuzzer build (clang) in build-fuzz/, then every
#                                  fuzz target for PCLIP_FUZZ_SECONDS (default 10) from
#                                  its corpus; fails on a crash (tests/fuzz/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup-debian.sh

if [ "${1:-}" = "--fuzz" ]; then
  targets=(fuzz_safetensors fuzz_config fuzz_image_config fuzz_tokenizer_load fuzz_tokenize
           fuzz_image)
  CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPORTCLIP_FUZZ=ON
  cmake --build build-fuzz -j "$(nproc)" --target "${targets[@]}"
  exec bash tests/fuzz/run.sh build-fuzz "${PCLIP_FUZZ_SECONDS:-10}"
fi

dir=build
flags=(-DCMAKE_BUILD_TYPE=Release)
exclude=()
if [ "${1:-}" = "--sanitize" ]; then
  dir=build-asan
  flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DPORTCLIP_SANITIZE=ON)
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  # The forced-fallback Vulkan run differs from check_ops_vulkan only in the
  # shaders lavapipe executes, which the sanitizers do not see; the plain
  # build runs it.
  exclude=(-E '^check_ops_vulkan_fallbacks$')
fi

cmake -S . -B "$dir" "${flags[@]}"
cmake --build "$dir" -j "$(nproc)"
cd "$dir"
# CTest runs two tests at a time: OpenMP threads that spin while idle would
# take the cores from the other test.
export OMP_WAIT_POLICY=PASSIVE
ctest --output-on-failure -j "$(nproc)" "${exclude[@]}"
