#!/usr/bin/env bash
# portclip's main job: zero-shot classification of a few sample images.
#
#   bash tools/demo.sh [MODEL_DIR]        (or MODEL=MODEL_DIR bash tools/demo.sh)
#
# Installs what is missing, builds the CLI quietly (the logs are shown only
# when a step fails), then asks the checkpoint which of a few labels fits each
# sample image. MODEL_DIR is a Hugging Face CLIP directory; without one the
# project's tiny test checkpoint is used: its weights are random, so its
# answers are meaningless (it only shows that everything runs).
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT
quietly() { # runs "$@" with its output in the log; shows the log if it fails
  if ! "$@" >"$log" 2>&1; then
    echo "failed: $*" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
}

echo "== setup: Debian packages, then the build (a few minutes the first time)"
quietly bash tools/setup-debian.sh
quietly cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
quietly cmake --build build -j "$(nproc)" --target portclip_cli
portclip=build/tools/portclip

model=${1:-${MODEL:-}}
if [ -z "$model" ]; then
  model=tests/fixtures/tiny-clip
  echo "== no checkpoint given: using the tiny test checkpoint ($model)."
  echo "   Its weights are random: the answers below are meaningless; they only show"
  echo "   that everything runs. Give a real one: bash tools/demo.sh DIR"
fi
images=(tests/fixtures/images/j_large_640x427.jpg tests/fixtures/images/p_large_500x375.png
        tests/fixtures/images/j_landscape_97x61.jpg)
labels="cat,dog,beach,city street,forest"

echo "== portclip classify --model $model --labels \"$labels\" --top-k 3 IMAGE..."
"$portclip" classify --model "$model" --labels "$labels" --top-k 3 "${images[@]}"

cat <<EOF

== next
  # every label's probability as JSON lines (one object per image), a whole folder
  $portclip classify --model $model --labels "$labels" --format json tests/fixtures/images
  # CLIPModel's logits_per_image for your own captions
  $portclip score --model $model --text "a photo of a cat" --text "a diagram" ${images[0]}
  # embeddings for your own code (.npy, with OUT.paths.txt naming each row's file)
  $portclip embed-image --model $model --output photos.npy --skip-bad ~/Pictures
  # a real checkpoint: any Hugging Face CLIP directory, e.g. openai/clip-vit-base-patch32
  #   (git lfs clone https://huggingface.co/openai/clip-vit-base-patch32), then
  bash tools/demo.sh clip-vit-base-patch32
  # all commands and options
  $portclip help
EOF
