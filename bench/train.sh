#!/usr/bin/env bash
# Training benchmark (issue 15), in one command:
#
#   bash bench/train.sh
#
# 1. Steps per second from cached features at batch 256 with the ViT-B/32
#    head sizes (768 -> 512 image, 512 -> 512 text, linear heads; then the
#    mlp heads), portclip (bench_train, CPU backend) against the same step in
#    PyTorch (bench/torch_train.py: loss, backward, AdamW, clamp) under each
#    of its thread/allocator settings below, alternating runs, one process
#    per run. The PyTorch figure is its best setting's median.
# 2. Feature extraction against the encoders alone: `portclip train --head mlp
#    --steps 1` (a cache miss: every image and caption through the frozen
#    towers; one step of a small head, whose result is two small files, where
#    a linear head would write the whole model directory) against
#    `portclip embed-image` + `portclip embed-text` on the same files, on the
#    random ViT-B/32-shaped checkpoint (bench/make_checkpoint.py) and
#    photo-sized JPEGs (bench/make_photos.py).
# Prints Markdown; raw records in build-bench/results/train-*.jsonl.
#
# Environment: TRAIN_ROUNDS (default 5), TRAIN_SECONDS (per run, default 3),
# TRAIN_IMAGES (feature part, default 64), BENCH_BUILD (default build-bench).
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,21p' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/.."

BUILD=${BENCH_BUILD:-build-bench}
ROUNDS=${TRAIN_ROUNDS:-5}
SECS=${TRAIN_SECONDS:-3}
NIMG=${TRAIN_IMAGES:-64}
PY=/usr/bin/python3
NPROC=$(nproc)
LIBDIR=/usr/lib/x86_64-linux-gnu
MODEL=$BUILD/clip-vit-b32-random
RESDIR=$BUILD/results
log() { printf '[train-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

log "building Release in $BUILD"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPORTCLIP_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" --target bench_train portclip_cli -j "$NPROC" >/dev/null
mkdir -p "$RESDIR"
RAW=$RESDIR/train-$(date -u +%Y%m%d-%H%M%S).jsonl
: > "$RAW"

# PyTorch: bench/torch_train.py's tuned settings (OpenBLAS's OpenMP flavour,
# the kernels OpenBLAS picks for this CPU, glibc keeping freed memory) and
# its plain environment. OpenBLAS is unpacked into $BUILD (apt-get download,
# nothing installed) when Debian's libopenblas0-openmp is not installed, so
# the system's BLAS alternatives stay as they are. Which BLAS and which
# kernels ran is in each JSON line ("blas").
OBDIR=
if [ ! -d "$LIBDIR/openblas-openmp" ]; then
  OBDIR=$BUILD/openblas-openmp
  if [ ! -d "$OBDIR/usr/lib" ]; then
    log "unpacking libopenblas0-openmp into $OBDIR"
    mkdir -p "$OBDIR" && (cd "$OBDIR" && apt-get download libopenblas0-openmp >/dev/null 2>&1 &&
      dpkg -x libopenblas0-openmp_*.deb .) || log "no OpenBLAS: PyTorch runs on the reference BLAS"
  fi
  OBDIR=$(realpath "$OBDIR")/usr/lib/x86_64-linux-gnu/openblas-openmp
fi
OBARG=(); [ -n "$OBDIR" ] && [ -d "$OBDIR" ] && OBARG=(--openblas-dir "$OBDIR")
SETTINGS=("tuned|--env tuned" "plain|--env plain")

median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

LOAD0=$(cut -d' ' -f1 /proc/loadavg)
for head in linear mlp; do
  flag=; [ $head = mlp ] && flag=--mlp
  for r in $(seq "$ROUNDS"); do
    "$BUILD/bench_train" --head $head --batch 256 --seconds "$SECS" | sed "s/^{/{\"round\": $r, /" >> "$RAW"
    for s in "${SETTINGS[@]}"; do
      name=${s%%|*} args=${s#*|}
      "$PY" bench/torch_train.py --seconds "$SECS" $flag $args "${OBARG[@]}" |
        sed "s/^{/{\"round\": $r, \"setting\": \"$name\", /" >> "$RAW"
    done
  done
done
LOAD1=$(cut -d' ' -f1 /proc/loadavg)

echo "## Training steps/s from cached features, batch 256 (768->512 image, 512->512 text)"
echo
echo "$(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), load $LOAD0 -> $LOAD1; $ROUNDS rounds of $SECS s, alternating"
echo
echo "| head | portclip steps/s (median) | PyTorch best setting | PyTorch steps/s (median) | ratio |"
echo "|---|---|---|---|---|"
for head in linear mlp; do
  pc=$(grep '"impl": "portclip"' "$RAW" | grep "\"head\": \"$head\"" | sed 's/.*"steps_per_s": \([0-9.e+-]*\).*/\1/' | median)
  best=0 bestname=
  for s in "${SETTINGS[@]}"; do
    name=${s%%|*}
    m=$(grep '"impl": "pytorch"' "$RAW" | grep "\"setting\": \"$name\"" | grep "\"head\": \"$head\"" | sed 's/.*"steps_per_s": \([0-9.e+-]*\).*/\1/' | median)
    if awk -v a="$m" -v b="$best" 'BEGIN {exit !(a > b)}'; then best=$m bestname=$name; fi
  done
  ratio=$(awk -v a="$pc" -v b="$best" 'BEGIN {printf "%.2f", a / b}')
  echo "| $head | $pc | $bestname | $best | ${ratio}x |"
done
echo
blas=$("$PY" -c 'import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("impl") == "pytorch" and r.get("setting") == "tuned":
        print(json.dumps(r.get("blas"))); break' "$RAW")
echo "PyTorch $("$PY" -c 'import torch; print(torch.__version__)'); BLAS of the tuned setting: $blas"
echo

# ---- 2. feature extraction against the encoders alone ----
if "$PY" -c 'import numpy, regex, torch, torchvision, PIL' 2>/dev/null; then
  "$PY" bench/make_checkpoint.py "$MODEL" >&2
fi
PHOTOS=$BUILD/train-photos
[ -d "$PHOTOS" ] && [ "$(ls "$PHOTOS" | wc -l)" -ge "$NIMG" ] || "$PY" bench/make_photos.py "$PHOTOS" "$NIMG" >&2
DATA=$BUILD/train-pairs.tsv
{
  printf 'image\tcaption\n'
  i=0
  for f in $(ls "$PHOTOS" | sed -n "1,${NIMG}p"); do
    printf '%s\ta photo number %d of a random colour field with fine noise\n' "$(realpath "$PHOTOS/$f")" "$i"
    i=$((i + 1))
  done
} > "$DATA"
CAPS=$BUILD/train-captions.txt
tail -n +2 "$DATA" | cut -f2 > "$CAPS"
CLI=$BUILD/tools/portclip
ft=() et=()
for r in $(seq 3); do
  rm -rf "$BUILD/train-out"
  t0=$(date +%s.%N)
  PORTCLIP_BACKEND=cpu "$CLI" train --model "$MODEL" --data "$DATA" --output "$BUILD/train-out" --head mlp --steps 1 --val-fraction 0 --quiet
  t1=$(date +%s.%N)
  PORTCLIP_BACKEND=cpu "$CLI" embed-image --model "$MODEL" --output "$BUILD/train-i.npy" $(tail -n +2 "$DATA" | cut -f1)
  PORTCLIP_BACKEND=cpu "$CLI" embed-text --model "$MODEL" --output "$BUILD/train-t.npy" --texts-file "$CAPS"
  t2=$(date +%s.%N)
  ft+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')")
  et+=("$(awk -v a="$t1" -v b="$t2" 'BEGIN {print b - a}')")
  echo "{\"feature_round\": $r, \"train_features_s\": ${ft[-1]}, \"embed_s\": ${et[-1]}}" >> "$RAW"
done
fm=$(printf '%s\n' "${ft[@]}" | median)
em=$(printf '%s\n' "${et[@]}" | median)
echo "## Feature extraction ($NIMG photos 1600x1200 + $NIMG captions, ViT-B/32-shaped checkpoint, CPU)"
echo
echo "| portclip train, features (s) | embed-image + embed-text (s) | train / encoders |"
echo "|---|---|---|"
echo "| $fm | $em | $(awk -v a="$em" -v b="$fm" 'BEGIN {printf "%.2f", a / b}')x |"
echo
echo "Raw records: $RAW"
