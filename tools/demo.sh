#!/usr/bin/env bash
# portclip's main jobs: zero-shot classification of a few sample images, then
# an image index over them and a text search in it.
#
#   bash tools/demo.sh [MODEL_DIR]        (or MODEL=MODEL_DIR bash tools/demo.sh)
#
# Installs what is missing, builds the CLI quietly (the logs are shown only
# when a step fails), then asks the checkpoint which of a few labels fits each
# sample image, indexes the sample images and searches them by text.
# MODEL_DIR is a Hugging Face CLIP directory; without one the
# project's tiny test checkpoint is used: its weights are random, so its
# answers are meaningless (it only shows that everything runs).
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
work=$(mktemp -d)
trap 'rm -rf "$log" "$work"' EXIT
quietly() { # runs "$@" with its output in the log; shows the log if it fails
  if ! "$@" >"$log" 2>&1; then
    echo "failed: $*" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
}

echo "== setup: Debian packages, then the build (a few minutes the first time)"
start=$SECONDS
quietly bash tools/setup-debian.sh
quietly cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
# only the CLI: the library, the tests and benchmarks are not built here
quietly cmake --build build -j "$(nproc)" --target portclip_cli
portclip=build/tools/portclip
echo "   built $portclip ($("$portclip" --version | head -n1)) in $((SECONDS - start)) s"

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

# an index over the sample images, then a text query against it
index=$work/photos.index
echo
echo "== portclip index --model $model --output INDEX tests/fixtures/images"
quietly "$portclip" index --model "$model" --output "$index" tests/fixtures/images
echo "== portclip search --index INDEX --top-k 3 \"a photo of a beach\""
"$portclip" search --index "$index" --top-k 3 "a photo of a beach"

cat <<EOF

== next
  # every label's probability as JSON lines (one object per image), a whole folder
  $portclip classify --model $model --labels "$labels" --format json tests/fixtures/images
  # CLIPModel's logits_per_image for your own captions
  $portclip score --model $model --text "a photo of a cat" --text "a diagram" ${images[0]}
  # search your own photos: build (or update: only new files are embedded) an index
  $portclip index --model $model --output photos.index ~/Pictures
  $portclip search --index photos.index --top-k 5 "a dog on a beach"
  # embeddings for your own code (.npy, with OUT.paths.txt naming each row's file)
  $portclip embed-image --model $model --output photos.npy --skip-bad ~/Pictures
  # a real checkpoint: any Hugging Face CLIP directory (README: Getting a model), e.g.
  #   git lfs install && git clone https://huggingface.co/openai/clip-vit-base-patch32
  bash tools/demo.sh clip-vit-base-patch32
  # all commands and options (or: man build/tools/portclip.1)
  $portclip help
EOF
