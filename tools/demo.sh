#!/usr/bin/env bash
# Installs what is missing, builds, and runs portclip's main job on the
# default backend (PORTCLIP_BACKEND, else auto) with the project's own tiny
# checkpoint: embeds captions and images and prints their cosine similarities.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup-debian.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"

model=${MODEL:-tests/fixtures/tiny-clip}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
images=(tests/fixtures/images/j_rgb444_64x48.jpg tests/fixtures/images/p_rgba_64x48.png
        tests/fixtures/images/p_pal8_64x48.png)

echo "== devices"
build/tools/portclip devices
echo "== tokenize"
build/tools/portclip tokenize --model "$model" "a photo of a cat" "A diagram of two dogs."
echo "== embed-text"
build/tools/portclip embed-text --model "$model" --output "$out/text.npy" \
  "a photo of a cat" "a diagram of two dogs"
echo "== embed-image"
build/tools/portclip embed-image --model "$model" --output "$out/images.npy" "${images[@]}"
echo "== preprocess"
build/tools/portclip preprocess --model "$model" --output "$out/pixels.npy" "${images[@]}"
ls -l "$out"
