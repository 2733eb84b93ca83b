#!/usr/bin/env bash
# Speed of two trees of portclip side by side, in one command:
#
#   bash bench/compare.sh [BASE_REV] [NEW_REV]
#
# BASE_REV defaults to BASE_DEFAULT below; NEW_REV defaults to the current
# working tree (uncommitted changes included; "tree" names it explicitly).
#
# What it does: checks BASE_REV (and NEW_REV when given) out with
# `git worktree add --detach` into a mktemp -d folder (removed at the end),
# builds each tree's own bench_clip, Release, into build-compare/base and
# build-compare/new, writes the random ViT-B/32-shaped checkpoint once (the one
# bench/run.sh uses, build-bench/clip-vit-b32-random, reused when up to date),
# then for each workload runs the two builds alternately (base, new, base,
# new, ...), one process per run, on the CPU backend (cpu device 0), with the
# same environment: PORTCLIP_THREADS = cores as bench/run.sh sets it; everything
# else (OMP_WAIT_POLICY, OPENBLAS_CORETYPE, ...) is inherited unchanged by both.
# It prints a Markdown table (per-round medians, new/base speed ratio and its
# spread over the rounds) with the command line, CPU model and machine load, and
# keeps it with the raw records in build-compare/results/.
#
# What it does not do: PyTorch, Vulkan, memory or load-time figures (see
# bench/run.sh), wait for a quiet machine, or pin CPUs. Run it on an otherwise
# idle machine; the "others' CPU" column says how idle it was.
#
# Environment: COMPARE_ROUNDS (rounds per build for batch 32, default 7),
# COMPARE_ROUNDS_B1 (batch 1, default 11), COMPARE_SECONDS (timed seconds per
# run, default 2), COMPARE_BUILD (default build-compare), BENCH_BUILD (where the
# checkpoint lives, as in bench/run.sh; default build-bench), COMPARE_PYTHON
# (default /usr/bin/python3, with numpy, regex, torch,
# torchvision and PIL, as bench/run.sh installs them, to write the checkpoint).
# Fewer than 5 rounds is for smoke tests only.
set -euo pipefail

# The commit before the structure change (core/ in folders by layer).
BASE_DEFAULT=87dded0c41abffd0eb2285a8ee44c22b7f9ef8bb

case "${1:-}" in -h|--help) sed -n '2,31p' "$0"; exit 0 ;; esac
ARGS=("$@")
BASE_ARG=${1:-$BASE_DEFAULT}
NEW_ARG=${2:-tree}
cd "$(dirname "$0")/.."

OUTDIR=${COMPARE_BUILD:-build-compare}
CKPT_BUILD=${BENCH_BUILD:-build-bench}
MODEL=$CKPT_BUILD/clip-vit-b32-random
ROUNDS=${COMPARE_ROUNDS:-7}
ROUNDS_B1=${COMPARE_ROUNDS_B1:-11}
SECS=${COMPARE_SECONDS:-2}
MINIT=3
PY=${COMPARE_PYTHON:-/usr/bin/python3}
NPROC=$(nproc)
WORKLOADS=("vision 1" "vision 32" "text-full 32" "text-short 1" "text-short 32")

log() { printf '[compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }

BASE=$(git rev-parse --verify --quiet "$BASE_ARG^{commit}") || die "unknown revision: $BASE_ARG"
NEW=
if [ "$NEW_ARG" != tree ]; then
  NEW=$(git rev-parse --verify --quiet "$NEW_ARG^{commit}") || die "unknown revision: $NEW_ARG"
fi

TMP=$(mktemp -d)
WTS=()
cleanup() {
  local w
  for w in "${WTS[@]}"; do git worktree remove --force "$w" >/dev/null 2>&1 || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

checkout() { # rev dir
  git worktree add --detach "$2" "$1" >/dev/null 2>&1 || die "git worktree add $1 failed"
  WTS+=("$2")
}

build() { # label source-dir
  local label=$1 src=$2 bdir=$OUTDIR/$1 blog=$OUTDIR/$1.build.log
  # a worktree's path changes every run: a stale cache would point at the old one
  if [ -f "$bdir/CMakeCache.txt" ] &&
     ! grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$(cd "$src" && pwd)" "$bdir/CMakeCache.txt"; then
    rm -rf "$bdir"
  fi
  log "building $label ($src) into $bdir"
  if ! { cmake -S "$src" -B "$bdir" -DCMAKE_BUILD_TYPE=Release -DPORTCLIP_BUILD_TESTS=OFF &&
         cmake --build "$bdir" --target bench_clip -j "$NPROC"; } >"$blog" 2>&1; then
    tail -n 25 "$blog" >&2
    die "the $label build failed (full log: $blog)"
  fi
}

mkdir -p "$OUTDIR/results"
checkout "$BASE" "$TMP/base"
build base "$TMP/base"
if [ -n "$NEW" ]; then
  checkout "$NEW" "$TMP/new"
  build new "$TMP/new"
  NEW_DESC=$(git rev-parse --short "$NEW")
else
  build new .
  NEW_DESC="working tree at $(git describe --always --dirty)"
fi
BASE_DESC=$(git rev-parse --short "$BASE")

# ---- the checkpoint (bench/run.sh's; make_checkpoint.py is a no-op when up to date)
if "$PY" -c 'import numpy, regex, torch, torchvision, PIL' 2>/dev/null; then
  "$PY" bench/make_checkpoint.py "$MODEL" >&2 || die "writing the checkpoint into $MODEL failed"
elif [ ! -f "$MODEL/model.safetensors" ]; then
  die "$PY cannot write the checkpoint: it needs numpy, regex, torch, torchvision and PIL (Debian: python3-numpy python3-regex python3-torch python3-torchvision python3-pil; bench/run.sh installs them)"
fi
cat "$MODEL/model.safetensors" >/dev/null   # warm page cache

# ---- alternate runs -----------------------------------------------------------------
STAMP=$(date +%Y%m%d-%H%M%S)
RES=$OUTDIR/results/compare-$STAMP.jsonl
: >"$RES"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)

run_one() { # side workload batch round
  local side=$1 wl=$2 b=$3 r=$4 args out
  case "$wl" in
    vision) args=(vision) ;;
    text-full) args=(text --caption full) ;;
    text-short) args=(text --caption short) ;;
  esac
  if ! out=$(env PORTCLIP_THREADS="$NPROC" "$OUTDIR/$side/bench_clip" "${args[@]}" \
             --model "$MODEL" --batch "$b" --seconds "$SECS" --min-iters "$MINIT" \
             --label "$side" 2>"$OUTDIR/results/last.err"); then
    tail -n 5 "$OUTDIR/results/last.err" >&2
    die "$side bench_clip failed on $wl batch $b"
  fi
  out=$(printf '%s\n' "$out" | grep '^{' | tail -n 1) || die "$side bench_clip printed no record"
  printf '{"side":"%s","workload":"%s","batch":%s,"round":%s,"rec":%s}\n' \
    "$side" "$wl" "$b" "$r" "$out" >>"$RES"
}

for w in "${WORKLOADS[@]}"; do
  # shellcheck disable=SC2086  # "workload batch"
  set -- $w
  n=$ROUNDS; [ "$2" = 1 ] && n=$ROUNDS_B1
  log "$1 batch $2: $n rounds of base, new"
  for ((r = 1; r <= n; r++)); do
    run_one base "$1" "$2" "$r"
    run_one new "$1" "$2" "$r"
  done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - T0))

# ---- the report ------------------------------------------------------------------------
CMDLINE="bash bench/compare.sh${ARGS[*]:+ ${ARGS[*]}}"
for v in COMPARE_ROUNDS COMPARE_ROUNDS_B1 COMPARE_SECONDS COMPARE_BUILD BENCH_BUILD COMPARE_PYTHON; do
  if [ -n "${!v:-}" ]; then CMDLINE="$v=${!v} $CMDLINE"; fi
done
envval() { [ -n "${!1+x}" ] && printf '%s=%s' "$1" "${!1}" || printf '%s unset' "$1"; }
MD=$OUTDIR/results/compare-$STAMP.md
{
  echo "#### Side by side: $BASE_DESC (base) vs $NEW_DESC (new), $(date -u +'%Y-%m-%d %H:%M') UTC"
  echo
  echo "Command: \`$CMDLINE\` ($((ELAPSED / 60)) min $((ELAPSED % 60)) s of runs, builds not counted)."
  echo
  echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $NPROC cores; $(cc --version | head -n 1)."
  echo "Load average (1/5/15 min): $LOAD_BEFORE before the runs, $LOAD_AFTER after."
  echo "Each run: one process, cpu device 0, PORTCLIP_THREADS=$NPROC, $(envval OMP_WAIT_POLICY),"
  echo "$(envval OPENBLAS_CORETYPE), $(envval PORTCLIP_CPU_SIMD), ${SECS} s timed after bench_clip's warm-up;"
  echo "base and new alternate (base, new, base, new, ...)."
  echo
  "$PY" - "$RES" <<'EOF'
import json, statistics, sys

recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
order, by = [], {}
for r in recs:
    key = (r["workload"], r["batch"])
    if key not in by:
        order.append(key)
        by[key] = {"base": {}, "new": {}, "others": []}
    rate = r["batch"] / r["rec"]["median_s"]
    by[key][r["side"]][r["round"]] = rate
    by[key]["others"].append(r["rec"].get("others_cpu", 0.0))

def quart(xs):
    if len(xs) < 2:
        return xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]

def fmt(x):
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"

unit = {"vision": "images/s"}
print("| workload | batch | rounds | base median [min-max] | new median [min-max] "
      "| new/base | per-round new/base: median [IQR] {min-max} | rel. IQR base / new "
      "| others' CPU median / max | within noise |")
print("|---|---|---|---|---|---|---|---|---|---|")
for key in order:
    d = by[key]
    rounds = sorted(set(d["base"]) & set(d["new"]))
    b = [d["base"][i] for i in rounds]
    n = [d["new"][i] for i in rounds]
    pr = [d["new"][i] / d["base"][i] for i in rounds]
    mb, mn = statistics.median(b), statistics.median(n)
    ratio = mn / mb
    q1, q3 = quart(pr)
    bq, nq = quart(b), quart(n)
    o = d["others"]
    noise = "yes" if q1 <= 1.0 <= q3 else "no"
    print(f"| {key[0]} ({unit.get(key[0], 'texts/s')}) | {key[1]} | {len(rounds)} "
          f"| {fmt(mb)} [{fmt(min(b))}-{fmt(max(b))}] | {fmt(mn)} [{fmt(min(n))}-{fmt(max(n))}] "
          f"| {ratio:.3f} | {statistics.median(pr):.3f} [{q1:.3f}-{q3:.3f}] {{{min(pr):.3f}-{max(pr):.3f}}} "
          f"| {100 * (bq[1] - bq[0]) / mb:.1f} % / {100 * (nq[1] - nq[0]) / mn:.1f} % "
          f"| {100 * statistics.median(o):.0f} % / {100 * max(o):.0f} % | {noise} |")
print()
print("Each round's figure is one process's median over its timed calls, as items/s; "
      "\"new/base\" is the ratio of the medians over the rounds (above 1: new is faster); "
      "the per-round ratios pair each base run with the new run right after it. "
      "\"within noise\": 1.000 lies inside the interquartile range of the per-round ratios. "
      "\"others' CPU\": the share of the CPUs other processes used while a run was timed.")
EOF
} >"$MD"
cat "$MD"
log "table: $MD; raw records: $RES"
