#!/usr/bin/env bash
# portclip on a busy machine (issue 17), in one command:
#
#   bash bench/busy.sh [--quick]
#
# Each workload runs quiet and then beside one busy process per core
# (`sh -c 'while :; do :; done'`, not pinned; started before the run and
# killed right after it), alternately, BUSY_ROUNDS times, one process per run,
# for each OpenMP setting in BUSY_SETTINGS. It prints a Markdown table of
# throughput (items/s, median over the rounds) quiet and busy, and busy/quiet:
# the share of its quiet speed a workload keeps beside the busy processes (an
# equal share of the cores would be 50 %). Only the ratios mean something: they
# are taken in one run, so a machine that is not idle (see "load" in the
# header) affects both columns alike.
#
# Workloads, on the random ViT-B/32-shaped checkpoint of bench/run.sh
# (bench/make_checkpoint.py, reused from BENCH_BUILD when there):
#   vision b1, vision b32, text-full b32   bench_clip (random pixels, encode only)
#   py-b1, py-b32 (not in the default     the Python module (bench/py_embed.py):
#     list)                                Model.embed_images on 640x480 arrays,
#                                          preprocessing and encoding
#   embed-image b1, embed-image b32        the CLI on BUSY_PHOTOS JPEGs of
#                                          1600x1200 (bench/make_photos.py):
#                                          load, decode, resize and encode,
#                                          timed as the whole process
# Settings (BUSY_SETTINGS, space-separated): `default` runs the CLI with no
# OpenMP variable set (it then runs itself again with GOMP_SPINCOUNT=3000,
# see README "Backends and environment") and bench_clip, a program that
# embeds the library and so keeps libgomp's default unless told, with
# GOMP_SPINCOUNT=3000 as the CLI sets it, and the Python module with no
# OpenMP variable set (it sets GOMP_SPINCOUNT=3000 itself); any other entry is
# VAR=VALUE[,VAR=VALUE...] put in the environment of both runs, e.g.
# GOMP_SPINCOUNT=300000 (libgomp's default: what the CLI ran with before) or
# OMP_WAIT_POLICY=PASSIVE. Default: "GOMP_SPINCOUNT=300000 default".
#
# Peers (BUSY_PEERS=1, the default; 0 leaves them out): for each bench_clip
# workload in the list (vision-b1, vision-b32, text-b32), PyTorch and ONNX
# Runtime run the same workload quiet and busy in the same rounds, fp32, with
# their own thread settings (threads = cores) and none of BUSY_SETTINGS (the
# table's setting column says "own"): torch-<workload>, bench/torch_clip.py,
# "tuned" as in bench/peers.sh (OpenBLAS's OpenMP flavour, glibc keeping freed
# memory; libgomp's default spin); ort-<workload>, bench/ort_clip.js (npm's
# onnxruntime-node, CPU execution provider, its default spinning thread pool;
# the model exported by bench/export_onnx.py). bench/peers_lib.sh installs
# and exports what they need. Peer workloads can also be named in
# BUSY_WORKLOADS.
#
# BUSY_NICE=N (e.g. -20; root) runs the whole measurement, benchmark and busy
# processes alike, at nice N, in its own scheduling group (setsid, and
# /proc/self/autogroup where the kernel groups sessions) with that nice
# value too: on a machine that other people's work shares, they then count
# little, and "quiet" means what it says. The table's header names it.
#
# Environment: BUSY_ROUNDS (default 3; --quick: 1), BUSY_SECONDS (timed
# seconds per bench_clip run, default 2), BUSY_WORKLOADS (default all five:
# "vision-b1 vision-b32 text-b32 embed-b1 embed-b32"), BUSY_PHOTOS (default 32),
# BUSY_BUSY (busy processes, default the number of cores), BENCH_BUILD
# (the checkpoint, photos and results; default build-bench), BUSY_BUILD (the
# Release build to run, default BENCH_BUILD), BUSY_PYTHON (default
# /usr/bin/python3, with torch, numpy and PIL, for the checkpoint and photos).
# The table's header repeats every BUSY_* and BENCH_BUILD setting of the run.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${BUSY_NICE:-}" ] && [ -z "${BUSY_NICE_DONE:-}" ]; then
  export BUSY_NICE_DONE=1
  exec setsid -w sh -c 'echo "$1" >/proc/self/autogroup 2>/dev/null; shift; exec nice -n "$0" "$@"' \
    "$BUSY_NICE" "$BUSY_NICE" bash "$PWD/bench/busy.sh" "$@"
fi
ROUNDS=${BUSY_ROUNDS:-3}
case "${1:-}" in
  --quick) ROUNDS=1 ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
  "") ;;
  *) echo "busy.sh: unknown option $1" >&2; exit 2 ;;
esac
DATA=${BENCH_BUILD:-build-bench}
BUILD=${BUSY_BUILD:-$DATA}
PY=${BUSY_PYTHON:-/usr/bin/python3}
SECS=${BUSY_SECONDS:-2}
NPROC=$(nproc)
NBUSY=${BUSY_BUSY:-$NPROC}
NPHOTOS=${BUSY_PHOTOS:-32}
SETTINGS=${BUSY_SETTINGS:-GOMP_SPINCOUNT=300000 default}
WORKLOADS=${BUSY_WORKLOADS:-vision-b1 vision-b32 text-b32 embed-b1 embed-b32}
PEERS=${BUSY_PEERS:-1}
if [ "$PEERS" != 0 ]; then
  for w in $WORKLOADS; do
    case " $WORKLOADS " in *" torch-$w "*) continue ;; esac
    case $w in vision-b1|vision-b32|text-b32) WORKLOADS="$WORKLOADS torch-$w ort-$w" ;; esac
  done
fi
MODEL=$DATA/clip-vit-b32-random
PHOTOS=$DATA/busy-photos
RESDIR=$DATA/results
TMP=$(mktemp -d)
BUSY_PIDS=()

log() { printf '[busy %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
stop_busy() {
  local p
  for p in "${BUSY_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${BUSY_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  BUSY_PIDS=()
}
start_busy() {
  local i
  for ((i = 0; i < NBUSY; i++)); do
    sh -c 'while :; do :; done' &
    BUSY_PIDS+=($!)
  done
  sleep 0.5
}
cleanup() { stop_busy; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- build, checkpoint, photos ----------------------------------------------
[ -f "$BUILD/CMakeCache.txt" ] || cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" --target bench_clip portclip_cli portclip_shared -j "$NPROC" >/dev/null
if [ ! -f "$MODEL/model.safetensors" ]; then
  log "writing the checkpoint to $MODEL"
  "$PY" bench/make_checkpoint.py "$MODEL" >&2
fi
if [ "$(ls "$PHOTOS" 2>/dev/null | wc -l)" -lt "$NPHOTOS" ]; then
  log "writing $NPHOTOS photos to $PHOTOS"
  "$PY" bench/make_photos.py "$PHOTOS" "$NPHOTOS" >&2
fi
case " $WORKLOADS " in
  *" torch-"*|*" ort-"*)
    # shellcheck source=bench/peers_lib.sh
    . bench/peers_lib.sh
    OBDIR=$(peers_openblas "$DATA")
    mapfile -t TORCH_ENV < <(peers_torch_env "$OBDIR")
    ORTDIR=$(peers_ort "$DATA")
    ONNX=$(peers_onnx "$DATA" "$MODEL" "$ORTDIR")
    cat "$MODEL/model.safetensors" "$ONNX"/vision.onnx "$ONNX"/text.onnx >/dev/null
    ;;
esac
mkdir -p "$RESDIR"
RAW=$RESDIR/busy-$(date +%Y%m%d-%H%M%S).tsv

# ---- one run: prints items per second -----------------------------------------
# Every run starts from no OpenMP setting but its own.
CLEAR=(-u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u OMP_NUM_THREADS -u OMP_PROC_BIND -u OMP_PLACES)
# run SETTING WORKLOAD
run_one() {
  local setting=$1 w=$2 envs=() t0 t1 out
  if [ "$setting" != default ]; then IFS=, read -r -a envs <<<"$setting"; fi
  case $w in
    vision-b1|vision-b32|text-b32)
      local kind=vision batch=${w##*-b} extra=()
      [ "$setting" = default ] && envs=(GOMP_SPINCOUNT=3000)
      [ "$w" = text-b32 ] && kind=text extra=(--caption full)
      out=$(env "${CLEAR[@]}" PORTCLIP_THREADS="$NPROC" "${envs[@]}" "$BUILD/bench_clip" "$kind" --model "$MODEL" \
              --batch "$batch" "${extra[@]}" --seconds "$SECS" --min-iters 2)
      "$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); print("%.4f" % (r["batch"]/r["median_s"]))' "$out"
      ;;
    torch-*|ort-*)
      local base=${w#*-} kind=vision batch
      batch=${base##*-b}
      [ "${base%-b*}" = text ] && kind=text-full
      if [ "${w%%-*}" = torch ]; then
        out=$(env "${CLEAR[@]}" -u OPENBLAS_CORETYPE -u DNNL_MAX_CPU_ISA -u ONEDNN_MAX_CPU_ISA "${TORCH_ENV[@]}" \
                "$PY" bench/torch_clip.py run --model "$MODEL" --workload "$kind" --batch "$batch" \
                --seconds "$SECS" --min-iters 2 --label torch-fp32)
      else
        out=$(env "${CLEAR[@]}" node bench/ort_clip.js run --ort-dir "$ORTDIR" --onnx "$ONNX" --workload "$kind" \
                --batch "$batch" --seconds "$SECS" --min-iters 2 --threads "$NPROC" --label ort-fp32)
      fi
      "$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); print("%.4f" % (r["batch"]/r["median_s"]))' "$out"
      ;;
    py-b1|py-b32)
      # the Python module: with no OpenMP variable set (default) it sets
      # GOMP_SPINCOUNT=3000 for libgomp itself (python/portclip/_lib.py)
      out=$(env "${CLEAR[@]}" "${envs[@]}" PORTCLIP_THREADS="$NPROC" PORTCLIP_LIBRARY="$BUILD/libportclip.so" \
              "$PY" bench/py_embed.py "$MODEL" "${w##*-b}" "$SECS")
      "$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); print("%.4f" % (r["batch"]/r["median_s"]))' "$out"
      ;;
    embed-b1|embed-b32)
      local batch=${w##*-b}
      t0=$(date +%s.%N)
      env "${CLEAR[@]}" "${envs[@]}" "$BUILD/tools/portclip" embed-image --backend cpu --model "$MODEL" --batch-size "$batch" \
          --output "$TMP/e.npy" "$PHOTOS" >/dev/null
      t1=$(date +%s.%N)
      "$PY" -c 'import sys; print("%.4f" % (int(sys.argv[1])/(float(sys.argv[3])-float(sys.argv[2]))))' \
          "$NPHOTOS" "$t0" "$t1"
      ;;
    *) echo "busy.sh: unknown workload $w" >&2; exit 2 ;;
  esac
}

LOAD0=$(cat /proc/loadavg)
log "rounds $ROUNDS, $NBUSY busy processes, settings: $SETTINGS"
for ((r = 1; r <= ROUNDS; r++)); do
  for w in $WORKLOADS; do
    ws=$SETTINGS
    case $w in torch-*|ort-*) ws=own ;; esac
    for s in $ws; do
      q=$(run_one "$s" "$w")
      start_busy
      b=$(run_one "$s" "$w")
      stop_busy
      printf '%s\t%s\t%d\t%s\t%s\n' "$w" "$s" "$r" "$q" "$b" >>"$RAW"
      log "round $r $w [$s]: quiet $q/s, busy $b/s"
    done
  done
done
LOAD1=$(cat /proc/loadavg)

CMD="$(env | { grep -E '^(BUSY_[A-Z]+|BENCH_BUILD)=' || true; } | { grep -v '^BUSY_NICE_DONE=' || true; } | sort | sed 's/=\(.*\)/="\1"/' | tr '\n' ' ')bash bench/busy.sh $*"
SCHED="nice $(nice), $(cat /proc/self/autogroup 2>/dev/null || echo 'no autogroup')"
"$PY" - "$RAW" "$LOAD0" "$LOAD1" "$NBUSY" "$ROUNDS" "$CMD" "$SCHED" <<'EOF' | tee "$RESDIR/busy-latest.md"
import statistics, sys, platform, subprocess
raw, load0, load1, nbusy, rounds, cmd, sched = sys.argv[1:8]
rows = {}
order = []
settings = []
quiet = {}
for line in open(raw):
    w, s, r, q, b = line.rstrip("\n").split("\t")
    key = (w, s)
    if key not in rows:
        rows[key] = []
        order.append(key)
    if s not in settings:
        settings.append(s)
    rows[key].append((float(q), float(b)))
    quiet[(w, s, r)] = float(q)
cpu = "?"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
import os
first = settings[0]
print(f"`{cmd}` ({sched}): {cpu}, {os.cpu_count()} CPUs, {nbusy} busy processes, {rounds} round(s); "
      f"load before `{load0}`, after `{load1}`\n")
print(f"| workload | setting | quiet items/s | busy items/s | busy/quiet | per-round shares "
      f"| quiet / quiet of {first} (paired, median) |")
print("|---|---|---:|---:|---:|---|---:|")
for key in order:
    v = rows[key]
    q = statistics.median(x[0] for x in v)
    b = statistics.median(x[1] for x in v)
    per = ", ".join(f"{100 * y / x:.0f} %" for x, y in v)
    pairs = [quiet[(w, s, r)] / quiet[(w, first, r)] for (w, s, r) in quiet
             if (w, s) == key and (w, first, r) in quiet]
    rel = f"{statistics.median(pairs):.2f}" if pairs and key[1] != first else ("1" if key[1] == first else "-")
    print(f"| {key[0]} | {key[1]} | {q:.2f} | {b:.2f} | **{100 * b / q:.0f} %** | {per} | {rel} |")
EOF
