#!/usr/bin/env bash
# bf16 against fp32 portclip (issue 17), speed and loss, in one command:
#
#   bash bench/precision.sh
#
# Builds bench_clip, Release, into build-bench/ (BENCH_BUILD), writes the
# random ViT-B/32-shaped checkpoint there when it is missing or stale
# (bench/make_checkpoint.py, as bench/run.sh does), then for each workload
# (vision batch 32, vision batch 1, text with full 77-token captions batch 32)
# runs fp32 and bf16 alternately (fp32, bf16, fp32, bf16, ...), one process per
# run, on cpu device 0 with PORTCLIP_THREADS = cores, everything else
# inherited. Prints a Markdown table: per-run medians, the median over the
# rounds, and the bf16/fp32 speed ratio per round (median [min-max]), with the
# machine's load; then the loss of bf16 on the same checkpoint (bench_clip
# precision: 32 images, 64 captions, worst cosine and max |err| of the
# L2-normalised embeddings against fp32). The table and the raw records go to
# build-bench/results/precision-*.{md,jsonl}.
#
# Environment: PRECISION_ROUNDS (rounds per precision, default 5),
# PRECISION_SECONDS (timed seconds per run, default 3), BENCH_BUILD,
# BENCH_PYTHON (default /usr/bin/python3 with numpy, regex, torch, torchvision
# and PIL, for the checkpoint; bench/run.sh installs them).
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,23p' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/.."

BUILD=${BENCH_BUILD:-build-bench}
MODEL=$BUILD/clip-vit-b32-random
RESDIR=$BUILD/results
ROUNDS=${PRECISION_ROUNDS:-5}
SECS=${PRECISION_SECONDS:-3}
PY=${BENCH_PYTHON:-/usr/bin/python3}
NPROC=$(nproc)
WORKLOADS=("vision 32" "vision 1" "text-full 32")

log() { printf '[precision %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'precision.sh: %s\n' "$*" >&2; exit 1; }

log "building Release in $BUILD"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPORTCLIP_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" --target bench_clip -j "$NPROC" >/dev/null
BENCH=$BUILD/bench_clip

if "$PY" -c 'import numpy, regex, torch, torchvision, PIL' 2>/dev/null; then
  "$PY" bench/make_checkpoint.py "$MODEL" >&2 || die "writing the checkpoint into $MODEL failed"
elif [ ! -f "$MODEL/model.safetensors" ]; then
  die "$PY cannot write the checkpoint: it needs numpy, regex, torch, torchvision and PIL"
fi
cat "$MODEL/model.safetensors" >/dev/null   # warm page cache

mkdir -p "$RESDIR"
STAMP=$(date -u +%Y%m%d-%H%M%S)
RAW=$RESDIR/precision-$STAMP.jsonl
: > "$RAW"
LOAD0=$(cut -d' ' -f1 /proc/loadavg)
for w in "${WORKLOADS[@]}"; do
  set -- $w
  kind=$1 batch=$2
  args=(vision)
  [ "$kind" = text-full ] && args=(text --caption full)
  for r in $(seq 1 "$ROUNDS"); do
    for p in fp32 bf16; do
      log "$kind batch $batch round $r/$ROUNDS $p"
      PORTCLIP_THREADS=$NPROC "$BENCH" "${args[@]}" --model "$MODEL" --batch "$batch" \
        --seconds "$SECS" --min-iters 3 --precision "$p" --label "round$r" >> "$RAW"
    done
  done
done
log "loss of bf16 on $MODEL"
PORTCLIP_THREADS=$NPROC "$BENCH" precision --model "$MODEL" --batch 32 >> "$RAW"
LOAD1=$(cut -d' ' -f1 /proc/loadavg)

OUT=$RESDIR/precision-$STAMP.md
status=0
"$PY" - "$RAW" "$ROUNDS" "$SECS" "$LOAD0" "$LOAD1" "$NPROC" > "$OUT" <<'EOF' || status=$?
import json, statistics, sys
raw, rounds, secs, load0, load1, nproc = sys.argv[1:]
recs = [json.loads(l) for l in open(raw) if l.strip()]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"Command: `bash bench/precision.sh` (PRECISION_ROUNDS={rounds}, PRECISION_SECONDS={secs}); "
      f"CPU: {cpu}, {nproc} cores; load average {load0} before, {load1} after.\n")
print("| workload | batch | fp32 s/call (median of rounds) | bf16 s/call | bf16/fp32 speed, median [min-max] over rounds | others' CPU (fp32 / bf16 runs) |")
print("|---|---|---|---|---|---|")
timed = [r for r in recs if r["kind"] == "timed"]
for wl, b in [("vision", 32), ("vision", 1), ("text-full", 32)]:
    rows = [r for r in timed if r["workload"] == wl and r["batch"] == b]
    f = {r["config"]: r for r in rows if r["precision"] == "fp32"}
    h = {r["config"]: r for r in rows if r["precision"] == "bf16"}
    keys = [k for k in f if k in h]
    if not keys:
        continue
    ratios = [f[k]["median_s"] / h[k]["median_s"] for k in keys]
    fm = statistics.median(f[k]["median_s"] for k in keys)
    hm = statistics.median(h[k]["median_s"] for k in keys)
    fo = statistics.median(f[k]["others_cpu"] for k in keys)
    ho = statistics.median(h[k]["others_cpu"] for k in keys)
    print(f"| {wl} | {b} | {fm:.4f} ({b / fm:.1f}/s) | {hm:.4f} ({b / hm:.1f}/s) | "
          f"**{statistics.median(ratios):.2f}x** [{min(ratios):.2f}-{max(ratios):.2f}] | {fo:.0%} / {ho:.0%} |")
bad = False
for r in recs:
    if r["kind"] == "precision":
        bad = bad or min(r["vision_worst_cos"], r["text_worst_cos"]) < 0.9995
        print(f"\nLoss of bf16 against fp32 (L2-normalised embeddings, {r['images']} images of "
              f"deterministic random pixels, {r['texts']} captions, full and short): vision worst "
              f"cosine {r['vision_worst_cos']:.7f}, max |err| {r['vision_max_err']:.3g}; text worst "
              f"cosine {r['text_worst_cos']:.7f}, max |err| {r['text_max_err']:.3g}.")
if bad:
    print("\n**FAILED: an embedding's cosine to fp32 is below 0.9995.**")
sys.exit(1 if bad else 0)
EOF
cat "$OUT"
log "table: $OUT; records: $RAW"
exit $status
