#!/usr/bin/env bash
# portclip's CPU benchmark against PyTorch, in one command (issue 6):
#
#   bash bench/run.sh            the full run (~8 minutes on the 2-core machine)
#   bash bench/run.sh --quick    shorter timings (1 s per workload), for a smoke test
#   bash bench/run.sh --explore  also sweep PyTorch's settings (how "tuned" was chosen)
#   bash bench/run.sh --explore-only   only that sweep
#
# It builds Release into build-bench/ (bench_clip only), writes the random
# ViT-B/32-shaped checkpoint there if it is missing (bench/make_checkpoint.py),
# measures this machine's FMA peak, then runs every workload in its own
# process: portclip (cpu device 0, the fast path; AVX-512 and the AVX2 path)
# and PyTorch (Debian's /usr/bin/python3 with python3-torch 1.13 on OpenBLAS,
# defaults and tuned, each with OPENBLAS_CORETYPE as this environment sets it
# and unset), on the same weights. The table goes to stdout and to
# build-bench/results/latest.md; the raw records to build-bench/results/*.jsonl.
# Environment: BENCH_SECONDS (timed seconds per workload, default 3),
# BENCH_BUILD (default build-bench), BENCH_WAIT_QUIET (seconds to wait for a
# quiet machine before starting, default 120).
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0 EXPLORE=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    --explore) EXPLORE=1 ;;
    --explore-only) EXPLORE=2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

BUILD=${BENCH_BUILD:-build-bench}
MODEL=$BUILD/clip-vit-b32-random
RESDIR=$BUILD/results
SECS=${BENCH_SECONDS:-3}
[ "$QUICK" = 1 ] && SECS=1
MINIT=5
[ "$QUICK" = 1 ] && MINIT=2
PY=/usr/bin/python3            # Debian's python3 with python3-torch, not the one on PATH
NPROC=$(nproc)
LIBDIR=/usr/lib/x86_64-linux-gnu
OB_PTHREAD=$LIBDIR/openblas-pthread
OB_OPENMP=$LIBDIR/openblas-openmp
JEMALLOC=$LIBDIR/libjemalloc.so.2
ENV_CORETYPE=${OPENBLAS_CORETYPE:-}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---- 0. packages ----------------------------------------------------------
# python3-torch with OpenBLAS (both threading flavours), jemalloc for the
# tuned PyTorch, threadpoolctl to report which OpenBLAS kernels ran. Installing
# OpenBLAS would make it the system's libblas.so.3; the alternatives are put
# back as they were, and PyTorch gets OpenBLAS through LD_LIBRARY_PATH only.
need=()
dpkg -s python3-torch >/dev/null 2>&1 || need+=(python3-torch python3-numpy python3-regex python3-pil python3-torchvision)
for p in libopenblas0-pthread libopenblas0-openmp libjemalloc2 python3-threadpoolctl; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  saved=()
  for alt in libblas.so.3-x86_64-linux-gnu liblapack.so.3-x86_64-linux-gnu; do
    v=$(update-alternatives --query "$alt" 2>/dev/null | sed -n 's/^Value: //p')
    [ -n "$v" ] && saved+=("$alt=$v")
  done
  log "installing ${need[*]}"
  $SUDO apt-get install -y --no-install-recommends "${need[@]}" >&2
  for s in "${saved[@]}"; do $SUDO update-alternatives --set "${s%%=*}" "${s#*=}" >&2; done
fi

# ---- 1. build ---------------------------------------------------------------
log "building Release in $BUILD"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPORTCLIP_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" --target bench_clip -j "$NPROC" >/dev/null
BENCH=$BUILD/bench_clip

# ---- 2. checkpoint ------------------------------------------------------------
"$PY" bench/make_checkpoint.py "$MODEL" >&2
cat "$MODEL/model.safetensors" >/dev/null   # warm page cache for every load below

mkdir -p "$RESDIR"
STAMP=$(date +%Y%m%d-%H%M%S)
RES=$RESDIR/$STAMP.jsonl
: >"$RES"

# ---- 3. a quiet machine -----------------------------------------------------
loadavg() { cut -d' ' -f1 /proc/loadavg; }
wait_quiet() {
  local limit=${BENCH_WAIT_QUIET:-120} t=0
  while awk -v l="$(loadavg)" 'BEGIN{exit !(l > 0.5)}'; do
    if [ "$t" -ge "$limit" ]; then
      log "WARNING: load average $(loadavg) after ${limit}s of waiting: other work shares these $NPROC cores; timings will be low and noisy"
      return
    fi
    [ "$t" = 0 ] && log "waiting for a quiet machine (load average $(loadavg))"
    sleep 5; t=$((t + 5))
  done
}
wait_quiet
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# one process per workload; failures are reported and skipped, not fatal
emit() { # emit CMD... : run, append its JSON line(s) to $RES
  local out
  if out=$("$@" 2>"$RESDIR/last.err"); then
    printf '%s\n' "$out" | grep '^{' >>"$RES" || true
  else
    log "FAILED: $* ($(tail -n 3 "$RESDIR/last.err" | tr '\n' ' '))"
  fi
}

if [ "$EXPLORE" != 2 ]; then
# ---- 4. FMA peak ----------------------------------------------------------------
log "FMA peak"
emit env PORTCLIP_THREADS="$NPROC" "$BENCH" peak --seconds 1

# ---- 5. portclip ------------------------------------------------------------------
# AVX-512 (what the fast path picks here) and the AVX2 path: PORTCLIP_CPU_SIMD=avx2
# for portclip's own kernels, DNNL_MAX_CPU_ISA=AVX2 for oneDNN's matmul.
WORKLOADS=("vision 1" "vision 8" "vision 32" "text-full 1" "text-full 32" "text-short 1" "text-short 32")
pc_run() { # label env... -- workload batch
  local label=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  local wl=$1 b=$2 args
  case "$wl" in
    vision) args=(vision) ;;
    text-full) args=(text --caption full) ;;
    text-short) args=(text --caption short) ;;
  esac
  emit env PORTCLIP_THREADS="$NPROC" "${envs[@]}" "$BENCH" "${args[@]}" --model "$MODEL" \
    --batch "$b" --seconds "$SECS" --min-iters "$MINIT" --label "$label"
}
for cfg in avx512 avx2; do
  envs=(); [ "$cfg" = avx2 ] && envs=(PORTCLIP_CPU_SIMD=avx2 DNNL_MAX_CPU_ISA=AVX2 ONEDNN_MAX_CPU_ISA=AVX2)
  log "portclip $cfg"
  for w in "${WORKLOADS[@]}"; do
    # shellcheck disable=SC2086
    pc_run "$cfg" "${envs[@]}" -- $w
  done
done
log "portclip load (5 fresh processes)"
for i in 1 2 3 4 5; do
  emit env PORTCLIP_THREADS="$NPROC" "$BENCH" load --model "$MODEL" --label avx512
done

# ---- 6. PyTorch -----------------------------------------------------------------
# defaults: Debian's default OpenBLAS flavour (pthreads), glibc malloc, eager.
# tuned: the best settings measured here (bench/RESULTS.md, --explore):
#   OpenBLAS's OpenMP flavour (one thread pool, shared with ATen's, instead of
#   two), OMP_WAIT_POLICY=passive, jemalloc (keeps freed memory, no page
#   faults per call), and the eager forward (jit freeze/optimize_for_inference
#   measured no faster).
# Each with OPENBLAS_CORETYPE as this environment exports it (Haswell: AVX2
# kernels) and unset (OpenBLAS picks for itself).
TORCH_DEFAULT=(LD_LIBRARY_PATH=$OB_PTHREAD)
TORCH_TUNED=(LD_LIBRARY_PATH=$OB_OPENMP OMP_WAIT_POLICY=passive LD_PRELOAD=$JEMALLOC)
TORCH_TUNED_MODE=eager
torch_env() { # name coretype -> prints env assignments, one per line
  local name=$1 ct=$2 e
  if [ "$name" = tuned ]; then for e in "${TORCH_TUNED[@]}"; do echo "$e"; done
  else for e in "${TORCH_DEFAULT[@]}"; do echo "$e"; done; fi
  [ "$ct" != auto ] && echo "OPENBLAS_CORETYPE=$ct"
  # "forced to AVX2": oneDNN inside PyTorch too (ATen's own kernels are AVX2 by default)
  [ "$ct" = Haswell ] && printf '%s\n' DNNL_MAX_CPU_ISA=AVX2 ONEDNN_MAX_CPU_ISA=AVX2
  echo "BENCH_THREADS=$NPROC"
}
torch_run() { # label mode coretype-setting env-name -- torch_clip args
  local label=$1 mode=$2 ct=$3 name=$4; shift 5
  local envs; mapfile -t envs < <(torch_env "$name" "$ct")
  if [ "$ct" = auto ]; then
    emit env -u OPENBLAS_CORETYPE "${envs[@]}" "$PY" bench/torch_clip.py "$@"
  else
    emit env "${envs[@]}" "$PY" bench/torch_clip.py "$@"
  fi
}
# Haswell = OpenBLAS's AVX2 kernels (the issue's "PyTorch forced to AVX2"); auto = unset.
CTS=(Haswell auto)
[ -n "$ENV_CORETYPE" ] && [ "$ENV_CORETYPE" != Haswell ] && CTS=("$ENV_CORETYPE" "${CTS[@]}")
for name in default tuned; do
  mode=eager; [ "$name" = tuned ] && mode=$TORCH_TUNED_MODE
  for ct in "${CTS[@]}"; do
    label="$name/$([ "$ct" = auto ] && echo "coretype-unset" || echo "$ct")"
    log "PyTorch $label"
    torch_run "$label" "$mode" "$ct" "$name" -- info --label "$label"
    for w in "${WORKLOADS[@]}"; do
      set -- $w
      torch_run "$label" "$mode" "$ct" "$name" -- run --model "$MODEL" --workload "$1" --batch "$2" \
        --mode "$mode" --seconds "$SECS" --min-iters "$MINIT" --label "$label"
    done
  done
  # load and first-call times do not depend on the BLAS kernels: one setting
  log "PyTorch $name load (3 fresh processes)"
  for i in 1 2 3; do
    torch_run "$name" "$mode" "${CTS[0]}" "$name" -- run --model "$MODEL" --workload load \
      --mode "$mode" --label "$name"
  done
done
# for reference: PyTorch given only the short caption's own 7 positions
best_ct=${CTS[-1]}
for b in 1 32; do
  torch_run x "$TORCH_TUNED_MODE" "$best_ct" tuned -- run --model "$MODEL" --workload text-short-trunc \
    --batch "$b" --mode "$TORCH_TUNED_MODE" --seconds "$SECS" --min-iters "$MINIT" \
    --label "tuned/$([ "$best_ct" = auto ] && echo coretype-unset || echo "$best_ct")"
done

fi # EXPLORE != 2

# ---- 7. PyTorch settings sweep (--explore) --------------------------------------
if [ "$EXPLORE" != 0 ]; then
  log "exploring PyTorch settings"
  EXP=("pthread|LD_LIBRARY_PATH=$OB_PTHREAD|eager"
       "pthread+passive|LD_LIBRARY_PATH=$OB_PTHREAD OMP_WAIT_POLICY=passive|eager"
       "openmp|LD_LIBRARY_PATH=$OB_OPENMP|eager"
       "openmp+passive|LD_LIBRARY_PATH=$OB_OPENMP OMP_WAIT_POLICY=passive|eager"
       "openmp+active|LD_LIBRARY_PATH=$OB_OPENMP OMP_WAIT_POLICY=active|eager"
       "openmp+passive+jemalloc|LD_LIBRARY_PATH=$OB_OPENMP OMP_WAIT_POLICY=passive LD_PRELOAD=$JEMALLOC|eager"
       "openmp+passive+glibc-nontrim|LD_LIBRARY_PATH=$OB_OPENMP OMP_WAIT_POLICY=passive MALLOC_TRIM_THRESHOLD_=-1 MALLOC_MMAP_THRESHOLD_=1073741824|eager"
       "openmp+passive+jemalloc+avx512aten|LD_LIBRARY_PATH=$OB_OPENMP OMP_WAIT_POLICY=passive LD_PRELOAD=$JEMALLOC ATEN_CPU_CAPABILITY=avx512|eager"
       "openmp+passive+jemalloc+freeze|LD_LIBRARY_PATH=$OB_OPENMP OMP_WAIT_POLICY=passive LD_PRELOAD=$JEMALLOC|freeze"
       "openmp+passive+jemalloc+ofi|LD_LIBRARY_PATH=$OB_OPENMP OMP_WAIT_POLICY=passive LD_PRELOAD=$JEMALLOC|ofi"
       "pthread+mkldnn|LD_LIBRARY_PATH=$OB_PTHREAD|mkldnn"
       "openmp+passive+jemalloc+mkldnn|LD_LIBRARY_PATH=$OB_OPENMP OMP_WAIT_POLICY=passive LD_PRELOAD=$JEMALLOC|mkldnn"
       "openmp+active+jemalloc+mkldnn|LD_LIBRARY_PATH=$OB_OPENMP OMP_WAIT_POLICY=active LD_PRELOAD=$JEMALLOC|mkldnn")
  for ct in "${CTS[@]}"; do
    for e in "${EXP[@]}"; do
      IFS='|' read -r name envstr mode <<<"$e"
      # shellcheck disable=SC2206
      envs=($envstr BENCH_THREADS=$NPROC)
      label="explore:$name/$([ "$ct" = auto ] && echo coretype-unset || echo "$ct")"
      for w in "vision 1" "vision 32" "text-full 32"; do
        set -- $w
        if [ "$ct" = auto ]; then pre=(env -u OPENBLAS_CORETYPE)
        else pre=(env OPENBLAS_CORETYPE="$ct"); fi
        [ "$ct" = Haswell ] && pre+=(DNNL_MAX_CPU_ISA=AVX2 ONEDNN_MAX_CPU_ISA=AVX2)
        emit "${pre[@]}" "${envs[@]}" "$PY" bench/torch_clip.py run --model "$MODEL" --workload "$1" \
          --batch "$2" --mode "$mode" --seconds 2 --min-iters 3 --label "$label"
      done
    done
  done
fi

if [ "$EXPLORE" != 2 ]; then
# ---- 8. outputs agree --------------------------------------------------------------
log "checking outputs against PyTorch"
CHK=$RESDIR/check
mkdir -p "$CHK"
emit env PORTCLIP_THREADS="$NPROC" "$BENCH" check --model "$MODEL" --out "$CHK"
emit env LD_LIBRARY_PATH="$OB_OPENMP" "$PY" bench/torch_clip.py check --model "$MODEL" --portclip "$CHK"

fi

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
printf '{"kind":"meta","date":"%s","cpu":"%s","nproc":%s,"seconds":%s,"load_before":"%s","load_after":"%s"}\n' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(lscpu | sed -n 's/^Model name: *//p')" "$NPROC" "$SECS" \
  "$LOAD_BEFORE" "$LOAD_AFTER" >>"$RES"
ln -sf "$(basename "$RES")" "$RESDIR/latest.jsonl"

# ---- 9. the table ---------------------------------------------------------------------
"$PY" bench/torch_clip.py report "$RES" --model "$MODEL" --markdown "$RESDIR/latest.md"
log "raw records: $RES; table: $RESDIR/latest.md"
