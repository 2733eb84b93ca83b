#!/usr/bin/env bash
# portclip's CPU benchmark against PyTorch, in one command (issue 6):
#
#   bash bench/run.sh            the full run (~7 minutes on the 2-core machine)
#   bash bench/run.sh --quick    shorter timings (1 s per workload), for a smoke test
#   bash bench/run.sh --explore  also sweep PyTorch's settings (how "tuned" was chosen)
#   bash bench/run.sh --explore-only   only that sweep
#
# It builds Release into build-bench/ (bench_clip only), writes the random
# ViT-B/32-shaped checkpoint there if it is missing (bench/make_checkpoint.py),
# measures this machine's FMA peak, then runs every workload in its own
# process: portclip (cpu device 0, the fast path; AVX-512 and the AVX2 path)
# and PyTorch (Debian's /usr/bin/python3 with python3-torch 1.13 on OpenBLAS,
# defaults and tuned, each with OPENBLAS_CORETYPE=Haswell, i.e. AVX2, as this
# environment exports it, and unset), on the same weights. The table goes to stdout and to
# build-bench/results/latest.md; the raw records to build-bench/results/*.jsonl.
# Environment: BENCH_SECONDS (timed seconds per workload, default 3),
# BENCH_BUILD (default build-bench), BENCH_WAIT_EACH / BENCH_WAIT_QUIET (seconds
# to wait for other processes to leave the CPUs idle before each workload /
# over the whole run; defaults 30 / 180).
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0 EXPLORE=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    --explore) EXPLORE=1 ;;
    --explore-only) EXPLORE=2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
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
# The 2-core machine may be shared: before each workload, wait (up to
# BENCH_WAIT_EACH s, and BENCH_WAIT_QUIET s over the whole run) until the other
# processes leave the CPUs nearly idle for a second. Every timed record also
# carries others_cpu, the share of the CPUs that other processes used while it
# was timed; the report marks the figures taken beside such work.
busy_share() { # share of all CPUs busy over 1 s
  local a b
  a=$(head -n1 /proc/stat); sleep 1; b=$(head -n1 /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN{split(a,x," "); split(b,y," ");
    bz=0; tt=0; for(i=2;i<=9;i++){d=y[i]-x[i]; tt+=d; if(i!=5&&i!=6) bz+=d}
    printf "%.2f", (tt > 0 ? bz / tt : 0)}'
}
WAIT_LEFT=${BENCH_WAIT_QUIET:-180}
wait_quiet() {
  local each=${BENCH_WAIT_EACH:-30} t=0 s
  while s=$(busy_share); awk -v s="$s" 'BEGIN{exit !(s > 0.10)}'; do
    if [ "$t" -ge "$each" ] || [ "$WAIT_LEFT" -le 0 ]; then
      log "note: CPUs ${s} busy with other work; measuring anyway (see others_cpu)"
      return
    fi
    t=$((t + 1)); WAIT_LEFT=$((WAIT_LEFT - 1))
  done
}
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# one process per workload; failures are reported and skipped, not fatal
emit() { # emit CMD... : run, append its JSON line(s) to $RES
  local out
  wait_quiet
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

# ---- 5. portclip and PyTorch, workload by workload ------------------------------
# Each workload runs in turn on every configuration, so that the figures being
# compared are taken minutes apart at most.
#
# portclip: cpu device 0 (the fast path), threads = cores. AVX-512 is what it
# picks here; the AVX2 path is forced with PORTCLIP_CPU_SIMD=avx2 (portclip's
# own kernels) and DNNL_MAX_CPU_ISA=AVX2 (oneDNN's matmul).
#
# PyTorch, threads = cores, torch.inference_mode():
# defaults: Debian's default OpenBLAS flavour (pthreads), glibc malloc, eager.
# tuned: the best settings measured here (see bench/RESULTS.md; --explore
#   re-measures them): TORCH_TUNED / TORCH_TUNED_MODE below.
# Each with OPENBLAS_CORETYPE=Haswell (AVX2 kernels: what this environment
# exports, and the issue's "PyTorch forced to AVX2"; oneDNN inside PyTorch is
# held to AVX2 too) and with OPENBLAS_CORETYPE unset (OpenBLAS picks itself).
WORKLOADS=("vision 1" "vision 8" "vision 32" "text-full 1" "text-full 32" "text-short 1" "text-short 32")
TORCH_DEFAULT=("LD_LIBRARY_PATH=$OB_PTHREAD")
# tuned, as measured (RESULTS.md): OpenBLAS's OpenMP flavour (one thread pool,
# ATen's, instead of OpenBLAS's pthreads beside GOMP's), glibc told to keep
# freed memory (no trim, no mmap for big blocks: no page faults per call),
# GOMP's default wait policy (passive is slower at batch 1 with one pool;
# it only helps the two-pool pthread flavour), the eager forward (jit freeze /
# optimize_for_inference / mkldnn linear measured no faster, used more memory).
TORCH_TUNED=("LD_LIBRARY_PATH=$OB_OPENMP" MALLOC_TRIM_THRESHOLD_=-1 MALLOC_MMAP_THRESHOLD_=1073741824)
TORCH_TUNED_MODE=eager
CTS=(Haswell auto)
[ -n "$ENV_CORETYPE" ] && [ "$ENV_CORETYPE" != Haswell ] && CTS=("$ENV_CORETYPE" "${CTS[@]}")

pc_run() { # label workload batch
  local label=$1 wl=$2 b=$3 args envs=()
  [ "$label" = avx2 ] && envs=(PORTCLIP_CPU_SIMD=avx2 DNNL_MAX_CPU_ISA=AVX2 ONEDNN_MAX_CPU_ISA=AVX2)
  case "$wl" in
    vision) args=(vision) ;;
    text-full) args=(text --caption full) ;;
    text-short) args=(text --caption short) ;;
  esac
  emit env PORTCLIP_THREADS="$NPROC" "${envs[@]}" "$BENCH" "${args[@]}" --model "$MODEL" \
    --batch "$b" --seconds "$SECS" --min-iters "$MINIT" --label "$label"
}
torch_env() { # name coretype -> env assignments, one per line
  local name=$1 ct=$2 e
  if [ "$name" = tuned ]; then for e in "${TORCH_TUNED[@]}"; do echo "$e"; done
  else for e in "${TORCH_DEFAULT[@]}"; do echo "$e"; done; fi
  [ "$ct" != auto ] && echo "OPENBLAS_CORETYPE=$ct"
  [ "$ct" = Haswell ] && printf '%s\n' DNNL_MAX_CPU_ISA=AVX2 ONEDNN_MAX_CPU_ISA=AVX2
  echo "BENCH_THREADS=$NPROC"
}
torch_label() { echo "$1/$([ "$2" = auto ] && echo coretype-unset || echo "$2")"; }
torch_mode() { [ "$1" = tuned ] && echo "$TORCH_TUNED_MODE" || echo eager; }
torch_run() { # name coretype torch_clip-args...
  local name=$1 ct=$2; shift 2
  local envs; mapfile -t envs < <(torch_env "$name" "$ct")
  if [ "$ct" = auto ]; then emit env -u OPENBLAS_CORETYPE "${envs[@]}" "$PY" bench/torch_clip.py "$@"
  else emit env "${envs[@]}" "$PY" bench/torch_clip.py "$@"; fi
}

for name in default tuned; do
  for ct in "${CTS[@]}"; do
    torch_run "$name" "$ct" info --label "$(torch_label "$name" "$ct")"
  done
done
for w in "${WORKLOADS[@]}"; do
  # shellcheck disable=SC2086  # "workload batch"
  set -- $w
  log "$1 batch $2: portclip avx512, avx2; PyTorch default, tuned x (${CTS[*]})"
  for cfg in avx512 avx2; do pc_run "$cfg" "$1" "$2"; done
  for name in default tuned; do
    for ct in "${CTS[@]}"; do
      torch_run "$name" "$ct" run --model "$MODEL" --workload "$1" --batch "$2" \
        --mode "$(torch_mode "$name")" --seconds "$SECS" --min-iters "$MINIT" \
        --label "$(torch_label "$name" "$ct")"
    done
  done
done
# for reference: PyTorch given only the short caption's own positions
for b in 1 32; do
  torch_run tuned auto run --model "$MODEL" --workload text-short-trunc --batch "$b" \
    --mode "$TORCH_TUNED_MODE" --seconds "$SECS" --min-iters "$MINIT" --label "$(torch_label tuned auto)"
done

# ---- 6. load and first encode: fresh processes, warm page cache -----------------
# (PyTorch's do not depend on the BLAS kernels: one setting each)
log "load: portclip x5, PyTorch default x3, tuned x3"
for _ in 1 2 3 4 5; do
  emit env PORTCLIP_THREADS="$NPROC" "$BENCH" load --model "$MODEL" --label avx512
done
for name in default tuned; do
  for _ in 1 2 3; do
    torch_run "$name" auto run --model "$MODEL" --workload load --mode "$(torch_mode "$name")" \
      --label "$name"
  done
done

fi # EXPLORE != 2

# ---- 7. PyTorch settings sweep (--explore) --------------------------------------
if [ "$EXPLORE" != 0 ]; then
  log "exploring PyTorch settings"
  J="LD_PRELOAD=$JEMALLOC"
  G="MALLOC_TRIM_THRESHOLD_=-1 MALLOC_MMAP_THRESHOLD_=1073741824"   # glibc: keep freed memory
  P="OMP_WAIT_POLICY=passive"
  EXP=("pthread|LD_LIBRARY_PATH=$OB_PTHREAD|eager"
       "pthread+passive|LD_LIBRARY_PATH=$OB_PTHREAD $P|eager"
       "pthread+passive+glibc-keep|LD_LIBRARY_PATH=$OB_PTHREAD $P $G|eager"
       "openmp|LD_LIBRARY_PATH=$OB_OPENMP|eager"
       "openmp+passive|LD_LIBRARY_PATH=$OB_OPENMP $P|eager"
       "openmp+jemalloc|LD_LIBRARY_PATH=$OB_OPENMP $J|eager"
       "openmp+glibc-keep|LD_LIBRARY_PATH=$OB_OPENMP $G|eager"
       "openmp+passive+glibc-keep|LD_LIBRARY_PATH=$OB_OPENMP $P $G|eager"
       "openmp+glibc-keep+aten-avx512|LD_LIBRARY_PATH=$OB_OPENMP $G ATEN_CPU_CAPABILITY=avx512|eager"
       "openmp+glibc-keep+jit-freeze|LD_LIBRARY_PATH=$OB_OPENMP $G|freeze"
       "openmp+glibc-keep+optimize_for_inference|LD_LIBRARY_PATH=$OB_OPENMP $G|ofi"
       "openmp+glibc-keep+mkldnn-linear|LD_LIBRARY_PATH=$OB_OPENMP $G|mkldnn")
  # shellcheck disable=SC2043  # OpenBLAS's own pick (AVX-512 here); the settings carry over
  for ct in auto; do
    for e in "${EXP[@]}"; do
      IFS='|' read -r name envstr mode <<<"$e"
      # shellcheck disable=SC2206
      envs=($envstr BENCH_THREADS=$NPROC)
      label="explore:$name/$([ "$ct" = auto ] && echo coretype-unset || echo "$ct")"
      for w in "vision 1" "vision 32" "text-full 32"; do
        # shellcheck disable=SC2086  # "workload batch"
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
GIT=$(git describe --always --dirty 2>/dev/null || echo unknown)
printf '{"kind":"meta","date":"%s","cpu":"%s","nproc":%s,"seconds":%s,"git":"%s","load_before":"%s","load_after":"%s"}\n' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(lscpu | sed -n 's/^Model name: *//p')" "$NPROC" "$SECS" \
  "$GIT" "$LOAD_BEFORE" "$LOAD_AFTER" >>"$RES"
ln -sf "$(basename "$RES")" "$RESDIR/latest.jsonl"

# ---- 9. the table ---------------------------------------------------------------------
"$PY" bench/torch_clip.py report "$RES" --model "$MODEL" --markdown "$RESDIR/latest.md"
log "raw records: $RES; table: $RESDIR/latest.md"
