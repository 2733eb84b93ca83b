#!/usr/bin/env bash
# fp16 against fp32 portclip on Vulkan (issue 17), speed and loss, in one
# command:
#
#   bash bench/vulkan_fp16.sh
#
# Builds bench_clip, Release, into build-bench/ (BENCH_BUILD), writes the
# random ViT-B/32-shaped checkpoint there when it is missing or stale
# (bench/make_checkpoint.py, as bench/precision.sh does), then runs
# embed-image (the vision encoder, batch VK_FP16_BATCH, default 8) on vulkan
# device 0 at fp32, fp16 storage only (PORTCLIP_VK_FP16_ARITH=0: fp16
# weights, fp32 arithmetic) and, where the device has shaderFloat16, fp16
# arithmetic (fp16 products, fp32 sums) in turn, one process per run. Prints
# a Markdown table: per-run medians, the median over the rounds and each fp16
# path's speed against fp32 per round (median [min-max]), with the device and
# the machine's load; then the loss of each fp16 path on the same checkpoint
# (bench_clip precision --backend vulkan --precision fp16: VK_FP16_BATCH
# images, twice as many captions, full and short; worst cosine and max |err|
# of the L2-normalised embeddings against fp32 on cpu device 0). The table
# and the raw records go to build-bench/results/vulkan-fp16-*.
#
# On a CPU implementation of Vulkan (lavapipe) this checks correctness; its
# speed says little about a GPU.
#
# Environment: VK_FP16_ROUNDS (rounds per precision, default 3),
# VK_FP16_RUN (PORTCLIP_VK_FP16_RUN for the arithmetic path, default 4),
# VK_FP16_SECONDS (timed seconds per run, default 5), VK_FP16_BATCH,
# BENCH_BUILD, BENCH_PYTHON (as bench/precision.sh).
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,30p' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/.."

BUILD=${BENCH_BUILD:-build-bench}
MODEL=$BUILD/clip-vit-b32-random
RESDIR=$BUILD/results
ROUNDS=${VK_FP16_ROUNDS:-3}
SECS=${VK_FP16_SECONDS:-5}
BATCH=${VK_FP16_BATCH:-8}
FRUN=${VK_FP16_RUN:-4}
PY=${BENCH_PYTHON:-/usr/bin/python3}
NPROC=$(nproc)

log() { printf '[vulkan_fp16 %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'vulkan_fp16.sh: %s\n' "$*" >&2; exit 1; }

log "building Release in $BUILD"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPORTCLIP_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" --target bench_clip portclip_cli -j "$NPROC" >/dev/null
BENCH=$BUILD/bench_clip
# the fp16 paths this device has (`portclip devices`: fp16-arithmetic)
PATHS="storage"
if "$BUILD/tools/portclip" devices 2>/dev/null | awk '/^vulkan +0 /{v=1; next} /^[a-z]/{v=0} v' |
    grep -q 'fp16-arithmetic'; then
  PATHS="storage arith"
else
  log "vulkan device 0 has no fp16 arithmetic (shaderFloat16): the storage-only path alone"
fi

if "$PY" -c 'import numpy, regex, torch, torchvision, PIL' 2>/dev/null; then
  "$PY" bench/make_checkpoint.py "$MODEL" >&2 || die "writing the checkpoint into $MODEL failed"
elif [ ! -f "$MODEL/model.safetensors" ]; then
  die "$PY cannot write the checkpoint: it needs numpy, regex, torch, torchvision and PIL"
fi
cat "$MODEL/model.safetensors" >/dev/null   # warm page cache

mkdir -p "$RESDIR"
STAMP=$(date -u +%Y%m%d-%H%M%S)
RAW=$RESDIR/vulkan-fp16-$STAMP.jsonl
: > "$RAW"
LOAD0=$(cut -d' ' -f1 /proc/loadavg)
# each record gets "path": fp32, storage or arith (the fp16 path)
tag() { sed "s/^{/{\"path\":\"$1\",/" >> "$RAW"; }
arith_env() { if [ "$1" = arith ]; then echo 1; else echo 0; fi; }
for r in $(seq 1 "$ROUNDS"); do
  for p in fp32 $PATHS; do
    log "vision batch $BATCH round $r/$ROUNDS $p"
    prec=fp16; [ "$p" = fp32 ] && prec=fp32
    PORTCLIP_VK_FP16_ARITH=$(arith_env "$p") PORTCLIP_VK_FP16_RUN=$FRUN \
      "$BENCH" vision --backend vulkan --model "$MODEL" --batch "$BATCH" --seconds "$SECS" \
      --min-iters 3 --precision "$prec" --label "round$r" | tag "$p"
  done
done
for p in $PATHS; do
  log "loss of fp16 ($p) on $MODEL"
  PORTCLIP_VK_FP16_ARITH=$(arith_env "$p") PORTCLIP_VK_FP16_RUN=$FRUN \
    "$BENCH" precision --backend vulkan --precision fp16 --model "$MODEL" --batch "$BATCH" | tag "$p"
done
LOAD1=$(cut -d' ' -f1 /proc/loadavg)

OUT=$RESDIR/vulkan-fp16-$STAMP.md
status=0
"$PY" - "$RAW" "$ROUNDS" "$SECS" "$BATCH" "$LOAD0" "$LOAD1" "$NPROC" "$FRUN" > "$OUT" <<'PYEOF' || status=$?
import json, statistics, sys
raw, rounds, secs, batch, load0, load1, nproc, frun = sys.argv[1:]
recs = [json.loads(l) for l in open(raw) if l.strip()]
timed = [r for r in recs if r["kind"] == "timed"]
dev = timed[0]["device"] if timed else "?"
print(f"Command: `bash bench/vulkan_fp16.sh` (VK_FP16_ROUNDS={rounds}, VK_FP16_SECONDS={secs}, "
      f"VK_FP16_BATCH={batch}, VK_FP16_RUN={frun}); vulkan device 0: {dev}; {nproc} cores; "
      f"load average {load0} before, {load1} after.\n")
print("| workload | batch | fp16 path | fp32 s/call (median of rounds) | fp16 s/call | fp16/fp32 speed, median [min-max] over rounds | others' CPU (fp32 / fp16 runs) | peak RSS (fp32 / fp16) |")
print("|---|---|---|---|---|---|---|---|")
names = {"storage": "storage only (fp16 weights, fp32 arithmetic)",
         "arith": f"arithmetic (fp16 products, runs of {frun}, fp32 sums)"}
f = {r["config"]: r for r in timed if r["path"] == "fp32"}
for path in ("storage", "arith"):
    h = {r["config"]: r for r in timed if r["path"] == path}
    keys = [k for k in f if k in h]
    if not keys:
        continue
    b = int(batch)
    ratios = [f[k]["median_s"] / h[k]["median_s"] for k in keys]
    fm = statistics.median(f[k]["median_s"] for k in keys)
    hm = statistics.median(h[k]["median_s"] for k in keys)
    fo = statistics.median(f[k]["others_cpu"] for k in keys)
    ho = statistics.median(h[k]["others_cpu"] for k in keys)
    fr = statistics.median(f[k]["maxrss_kb"] for k in keys) / 1024
    hr = statistics.median(h[k]["maxrss_kb"] for k in keys) / 1024
    print(f"| vision | {b} | {names[path]} | {fm:.4f} ({b / fm:.2f}/s) | {hm:.4f} ({b / hm:.2f}/s) | "
          f"**{statistics.median(ratios):.2f}x** [{min(ratios):.2f}-{max(ratios):.2f}] | "
          f"{fo:.0%} / {ho:.0%} | {fr:.0f} / {hr:.0f} MiB |")
bad = False
for r in recs:
    if r["kind"] == "precision":
        bad = bad or min(r["vision_worst_cos"], r["text_worst_cos"]) < 0.9995
        print(f"\nLoss of fp16, {names[r['path']]} ({r['device']}), against fp32 (cpu device 0), L2-normalised "
              f"embeddings, {r['images']} images of deterministic random pixels, {r['texts']} "
              f"captions, full and short: vision worst cosine {r['vision_worst_cos']:.7f}, max "
              f"|err| {r['vision_max_err']:.3g}; text worst cosine {r['text_worst_cos']:.7f}, max "
              f"|err| {r['text_max_err']:.3g}.")
if bad:
    print("\n**FAILED: an embedding's cosine to fp32 is below 0.9995.**")
sys.exit(1 if bad else 0)
PYEOF
cat "$OUT"
log "table: $OUT; records: $RAW"
exit $status
