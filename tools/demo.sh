#!/usr/bin/env bash
# Installs what is missing, builds, and runs portclip's main job on the
# default backend with the project's own tiny checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup-debian.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"

model=tests/fixtures/tiny-clip
out=$(mktemp -d)
echo "== tokenize"
build/tools/portclip tokenize --model "$model" "a photo of a cat" "A diagram of two dogs."
echo "== preprocess"
build/tools/portclip preprocess --model "$model" --output "$out/pixels.npy" \
  tests/fixtures/images/*.jpg
ls -l "$out/pixels.npy"
rm -rf "$out"
