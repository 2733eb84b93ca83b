#!/usr/bin/env bash
# portclip against its peers, fp32 and bf16 (issue 17), in one command:
#
#   bash bench/peers.sh
#
# On the random ViT-B/32-shaped checkpoint (bench/make_checkpoint.py, in
# BENCH_BUILD), for each workload (vision batch 1 and 32, text with full
# 77-position captions batch 1 and 32) it runs, one process per run,
# alternately (every configuration once per round, PEERS_ROUNDS rounds):
#   portclip fp32, portclip bf16   bench_clip --precision, cpu device 0,
#                                  PORTCLIP_THREADS = cores, GOMP_SPINCOUNT=3000
#                                  as the portclip tool sets it
#                                  (PEERS_PORTCLIP_ENV: other VAR=VALUE words)
#   PyTorch fp32, PyTorch bf16     bench/torch_clip.py, Debian's python3-torch,
#                                  "tuned" (bench/run.sh: OpenBLAS's OpenMP
#                                  flavour, its own kernel choice, glibc keeping
#                                  freed memory), eager, threads = cores; bf16
#                                  is the faster of --bf16 convert and autocast,
#                                  chosen per workload by one run of each first
#   ONNX Runtime fp32              bench/ort_clip.js: npm's onnxruntime-node, its
#                                  CPU execution provider, on the checkpoint
#                                  exported by bench/export_onnx.py (opset 17)
# ONNX Runtime bf16 is probed, not timed: bench/ort_clip.js probe loads a
# one-MatMul bfloat16 model and the bfloat16 vision tower and the table says
# what happened.
# Every run times whole calls as bench_clip does (first call, 1 s warm-up,
# timed calls until PEERS_SECONDS s and at least PEERS_MIN_ITERS calls; the
# median). The Markdown table gives per-configuration medians over the rounds
# and, per round, portclip/peer speed ratios (median [min-max]), the loss of
# each bf16 against its own fp32, the load, the other processes' share of the
# CPUs during the timed calls, the CPU, the BLAS and oneDNN kernels PyTorch
# ran, the versions and the exact command. Results:
# BENCH_BUILD/results/peers-*.{md,jsonl}.
#
# It installs what it needs: Node.js and npm (apt) when missing, npm's
# onnxruntime-node into BENCH_BUILD/ort, OpenBLAS unpacked into BENCH_BUILD
# (bench/peers_lib.sh).
#
# `bash bench/peers.sh --report FILE.jsonl` prints the table of an earlier run
# again from its records (its meta record carries the command and the load).
#
# Environment: PEERS_ROUNDS (default 5), PEERS_SECONDS (default 2),
# PEERS_MIN_ITERS (default 5), PEERS_WORKLOADS (default "vision-b1 vision-b32
# text-b1 text-b32"), PEERS_NICE=N (e.g. -20, root: the whole measurement at
# nice N in its own session and scheduling group, as bench/busy.sh's
# BUSY_NICE), BENCH_BUILD (default build-bench).
set -euo pipefail
REPORT_ONLY=
case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
  --report) REPORT_ONLY=${2:?peers.sh: --report needs a peers-*.jsonl file} ;;
  "") ;;
  *) echo "peers.sh: unknown option $1" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
# shellcheck source=bench/peers_lib.sh
. bench/peers_lib.sh
peers_nice_exec PEERS_NICE "$PWD/bench/peers.sh" "$@"

BUILD=${BENCH_BUILD:-build-bench}
MODEL=$BUILD/clip-vit-b32-random
RESDIR=$BUILD/results
ROUNDS=${PEERS_ROUNDS:-5}
SECS=${PEERS_SECONDS:-2}
MINIT=${PEERS_MIN_ITERS:-5}
WORKLOADS=${PEERS_WORKLOADS:-vision-b1 vision-b32 text-b1 text-b32}
PY=/usr/bin/python3
NPROC=$(nproc)
# portclip's OpenMP wait: what the portclip tool runs with (README, "Backends and
# environment"); bench_clip embeds the library and would keep libgomp's default
read -r -a PC_ENV <<<"${PEERS_PORTCLIP_ENV-GOMP_SPINCOUNT=3000}"
CMD="$(env | { grep -E '^(PEERS_[A-Z_]+|BENCH_BUILD)=' || true; } | { grep -v '^PEERS_NICE_DONE=' || true; } | sort | sed 's/=\(.*\)/="\1"/' | tr '\n' ' ')bash bench/peers.sh"

report() { # RAW [export.json]
"$PY" - "$@" <<'EOF'
import json, statistics, sys
raw, export = sys.argv[1:3]
recs = [json.loads(l) for l in open(raw) if l.strip()]
meta = next((r for r in recs if r.get("phase") == "meta"), {})
cmd, load0, load1, sched, git, nproc, secs, minit, rounds = (
    meta.get(k, "?") for k in ("cmd", "load0", "load1", "sched", "git", "nproc", "secs", "minit", "rounds"))
try:
    ex = json.load(open(export))
except OSError:
    ex = {}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
timed = [r for r in recs if r.get("phase") == "timed" and r.get("kind") == "timed"]
CONFIGS = ["portclip-fp32", "portclip-bf16", "torch-fp32", "torch-bf16", "ort-fp32"]
NAMES = {"portclip-fp32": "portclip fp32", "portclip-bf16": "portclip bf16", "torch-fp32": "PyTorch fp32",
         "torch-bf16": "PyTorch bf16", "ort-fp32": "ORT fp32"}
wls = []
for r in timed:
    if r["wl"] not in wls:
        wls.append(r["wl"])

def get(wl, rnd, conf):
    return next((r for r in timed if r["wl"] == wl and r["round"] == rnd and r["config"] == conf), None)

def rate(r):
    return r["batch"] / r["median_s"]

def mm(v, fmt="{:.2f}"):
    return (fmt + " [" + fmt + "-" + fmt + "]").format(statistics.median(v), min(v), max(v))

ort_v = next((r.get("ort") for r in timed if r["config"] == "ort-fp32"), "?")
torch_v = next((r.get("torch") for r in timed if r["impl"] == "torch"), "?")
node_v = next((r.get("node") for r in timed if r["config"] == "ort-fp32"), "?")
print(f"Command: `{cmd}` ({sched}); tree {git}. CPU: {cpu}, {nproc} CPUs "
      f"({'AVX512_BF16' if 'avx512_bf16' in flags else 'no AVX512_BF16'}, "
      f"{'AMX' if 'amx_bf16' in flags else 'no AMX'}); load average before `{load0}`, after `{load1}`. "
      f"{rounds} rounds, every configuration once per round in its own process, "
      f"{secs} s and at least {minit} timed calls per run (median call). PyTorch {torch_v}; "
      f"ONNX Runtime {ort_v} (npm onnxruntime-node, Node.js {node_v}), model exported by torch "
      f"{ex.get('torch')} at opset {ex.get('opset')}.\n")
print("Throughput, items/s (median over the rounds of each run's median call):\n")
print("| workload | " + " | ".join(NAMES[c] for c in CONFIGS) + " | others' CPU (median, all runs) |")
print("|---|" + "---:|" * len(CONFIGS) + "---:|")
mode = {}
for wl in wls:
    cells = []
    for c in CONFIGS:
        v = [rate(r) for r in timed if r["wl"] == wl and r["config"] == c]
        cells.append(f"{statistics.median(v):.2f}" if v else "-")
        if c == "torch-bf16":
            mode[wl] = next((r.get("bf16") for r in timed if r["wl"] == wl and r["config"] == c), "?")
    cells[3] += f" ({mode.get(wl, '?')})"
    o = [r["others_cpu"] for r in timed if r["wl"] == wl]
    print(f"| {wl} | " + " | ".join(cells) + f" | {statistics.median(o):.0%} |")
print("\nSpeed ratios, per round (same round, same workload), median [min-max]:\n")
PAIRS = [("portclip-bf16", "portclip-fp32", "portclip bf16 / fp32"),
         ("portclip-fp32", "torch-fp32", "portclip / PyTorch, fp32"),
         ("portclip-fp32", "ort-fp32", "portclip / ORT, fp32"),
         ("portclip-bf16", "torch-bf16", "portclip / PyTorch, bf16"),
         ("portclip-bf16", "ort-fp32", "portclip bf16 / ORT fp32 (ORT has no x86 bf16)"),
         ("torch-bf16", "torch-fp32", "PyTorch bf16 / fp32")]
print("| workload | " + " | ".join(p[2] for p in PAIRS) + " |")
print("|---|" + "---:|" * len(PAIRS))
for wl in wls:
    cells = []
    for a, b, _ in PAIRS:
        v = []
        for rnd in sorted({r["round"] for r in timed}):
            x, y = get(wl, rnd, a), get(wl, rnd, b)
            if x and y:
                v.append(y["median_s"] / x["median_s"])
        cells.append(mm(v) + "x" if v else "-")
    print(f"| {wl} | " + " | ".join(cells) + " |")
QUIET = 0.15
quiet = {(wl, rnd) for wl in wls for rnd in {r["round"] for r in timed}
         if all((get(wl, rnd, c) or {"others_cpu": 1})["others_cpu"] <= QUIET for c in CONFIGS)}
print(f"\nThe same, only the rounds in which every configuration's run had other processes "
      f"using at most {QUIET:.0%} of the CPUs (items/s: median over those rounds):\n")
print("| workload | quiet rounds | " + " | ".join(NAMES[c] for c in CONFIGS) + " | " +
      " | ".join(p[2] for p in PAIRS) + " |")
print("|---|---|" + "---:|" * (len(CONFIGS) + len(PAIRS)))
for wl in wls:
    rq = sorted(rnd for w, rnd in quiet if w == wl)
    if not rq:
        print(f"| {wl} | none |" + " - |" * (len(CONFIGS) + len(PAIRS)))
        continue
    cells = [f"{statistics.median(rate(get(wl, rnd, c)) for rnd in rq):.2f}" for c in CONFIGS]
    for a, b, _ in PAIRS:
        v = [get(wl, rnd, b)["median_s"] / get(wl, rnd, a)["median_s"] for rnd in rq]
        cells.append(mm(v) + "x")
    print(f"| {wl} | {', '.join(map(str, rq))} | " + " | ".join(cells) + " |")
print("\nOthers' CPU share during the timed calls (median per configuration): " + "; ".join(
    f"{NAMES[c]} {statistics.median([r['others_cpu'] for r in timed if r['config'] == c]):.0%}"
    for c in CONFIGS if any(r["config"] == c for r in timed)) + ".\n")
print("Loss of bf16 against the same implementation's fp32 (L2-normalised embeddings):\n")
for r in recs:
    if r.get("phase") == "loss" and r.get("kind") == "precision":
        print(f"- portclip (`bench_clip precision --batch 32`: {r['images']} images, {r['texts']} captions): "
              f"vision worst cosine {r['vision_worst_cos']:.7f}, max |err| {r['vision_max_err']:.3g}; "
              f"text worst cosine {r['text_worst_cos']:.7f}, max |err| {r['text_max_err']:.3g}")
for wl in wls:
    v = [r for r in timed if r["wl"] == wl and r["config"] == "torch-bf16"]
    if v:
        print(f"- PyTorch bf16 ({v[0].get('bf16')}), {wl} (the run's own inputs): worst cosine "
              f"{min(r['fp32_worst_cos'] for r in v):.7f}, max |err| {max(r['fp32_max_err'] for r in v):.3g}")
ch = [r for r in recs if r.get("phase") == "choose"]
if ch:
    print("\nPyTorch bf16, convert (weights and activations `.to(torch.bfloat16)`) against autocast "
          "(`torch.autocast('cpu', dtype=torch.bfloat16)`), one run each before the rounds, items/s: " +
          "; ".join(f"{wl} " + ", ".join(f"{r['bf16']} {rate(r):.2f}" for r in ch if r["wl"] == wl)
                    for wl in dict.fromkeys(r["wl"] for r in ch)) + ".")
print("\nWhat ran:\n")
for r in recs:
    if r.get("kind") == "torch-info":
        b = r.get("blas", {})
        print(f"- PyTorch fp32 (tuned): BLAS {', '.join(b.get('mapped', [])) or '?'}; OpenBLAS core "
              f"{b.get('openblas_corename', '?')} ({b.get('openblas_config', 'n/a')}); ATen CPU capability "
              f"{r.get('aten_cpu_capability')}; env {json.dumps(r.get('env', {}))}")
    if r.get("phase") == "onednn":
        print(f"- PyTorch bf16 ({r['bf16']}), oneDNN (ONEDNN_VERBOSE=1, vision batch 1: first, warm-up and timed call, after one float32 call): "
              f"ISA \"{r['isa']}\"; primitives {r['exec'] or 'none'}")
    if r.get("phase") == "probe":
        what = "ran" if r.get("ran") else ("loaded, did not run: " + r.get("error", "") if r.get("loaded")
                                            else "failed to load: " + r.get("error", ""))
        print(f"- ONNX Runtime bf16 ({r['file']}, CPU execution provider): {what}")
for r in recs:
    if r.get("phase") == "ortprof" and r.get("ops"):
        t = sum(r["ops"].values())
        top = sorted(r["ops"].items(), key=lambda kv: -kv[1])[:5]
        print(f"- ONNX Runtime fp32, {r['workload']} batch {r['batch']} (its profiler, 3 calls): " +
              ", ".join(f"{k} {v / t:.0%}" for k, v in top) + " of the operators' time")
for k in ("bf16_matmul", "vision_bf16"):
    if "export_error" in ex.get(k, {}):
        print(f"- torch.onnx.export of {k}: {ex[k]['export_error']}")
c = ex.get("check", {})
if c:
    print(f"- ONNX export checked in ONNX Runtime {c.get('ort')} against PyTorch float32 "
          f"(max |diff| / max |ref|, 2 images, 2 full captions): vision {c.get('vision_rel_err', float('nan')):.1e}, "
          f"text {c.get('text_rel_err', float('nan')):.1e}")
EOF
}
if [ -n "$REPORT_ONLY" ]; then report "$REPORT_ONLY" "${REPORT_ONLY%.jsonl}-export.json"; exit; fi

# ---- build, checkpoint, peers -------------------------------------------------
peers_log "building Release in $BUILD"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPORTCLIP_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" --target bench_clip -j "$NPROC" >/dev/null
BENCH=$BUILD/bench_clip
if "$PY" -c 'import numpy, regex, torch, torchvision, PIL' 2>/dev/null; then
  "$PY" bench/make_checkpoint.py "$MODEL" >&2
elif [ ! -f "$MODEL/model.safetensors" ]; then
  echo "peers.sh: $PY cannot write the checkpoint (bash bench/run.sh installs what it needs)" >&2; exit 1
fi
OBDIR=$(peers_openblas "$BUILD")
mapfile -t TORCH_ENV < <(peers_torch_env "$OBDIR")
ORTDIR=$(peers_ort "$BUILD")
ONNX=$(peers_onnx "$BUILD" "$MODEL" "$ORTDIR")
cat "$MODEL/model.safetensors" "$ONNX"/vision.onnx "$ONNX"/text.onnx >/dev/null   # warm page cache

mkdir -p "$RESDIR"
STAMP=$(date -u +%Y%m%d-%H%M%S)
RAW=$RESDIR/peers-$STAMP.jsonl
OUT=$RESDIR/peers-$STAMP.md
: >"$RAW"

# run TAG CMD... : one process; its JSON line(s), tagged, into $RAW
run() {
  local tag=$1 out; shift
  if out=$("$@" 2>"$RESDIR/peers-last.err"); then
    printf '%s\n' "$out" | grep '^{' | sed "s/^{/{$tag,/" >>"$RAW" || true
  else
    peers_log "FAILED: $* ($(tail -n 3 "$RESDIR/peers-last.err" | tr '\n' ' '))"
  fi
}
wl_args() { # workload -> kind batch
  case $1 in
    vision-b*) echo "vision ${1#vision-b}" ;;
    text-b*) echo "text-full ${1#text-b}" ;;
    *) echo "peers.sh: unknown workload $1" >&2; exit 2 ;;
  esac
}
pc() { # tag kind batch precision
  local a=(vision); [ "$2" = text-full ] && a=(text --caption full)
  run "$1" env PORTCLIP_THREADS="$NPROC" "${PC_ENV[@]}" "$BENCH" "${a[@]}" --model "$MODEL" --batch "$3" \
    --seconds "$SECS" --min-iters "$MINIT" --precision "$4" --label "portclip-$4"
}
torch() { # tag kind batch precision [bf16-mode]
  local extra=(); [ "$4" = bf16 ] && extra=(--bf16 "$5")
  run "$1" env -u OPENBLAS_CORETYPE -u DNNL_MAX_CPU_ISA -u ONEDNN_MAX_CPU_ISA "${TORCH_ENV[@]}" \
    "$PY" bench/torch_clip.py run --model "$MODEL" --workload "$2" --batch "$3" --seconds "$SECS" \
    --min-iters "$MINIT" --precision "$4" "${extra[@]}" --label "torch-$4"
}
ort() { # tag kind batch
  run "$1" node bench/ort_clip.js run --ort-dir "$ORTDIR" --onnx "$ONNX" --workload "$2" --batch "$3" \
    --seconds "$SECS" --min-iters "$MINIT" --threads "$NPROC" --label ort-fp32
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
# what ran: PyTorch's BLAS, oneDNN's bf16 kernels, ONNX Runtime and bf16
run '"phase":"info"' env -u OPENBLAS_CORETYPE "${TORCH_ENV[@]}" "$PY" bench/torch_clip.py info --label torch-tuned
for m in convert autocast; do
  impls=$(env -u OPENBLAS_CORETYPE -u DNNL_MAX_CPU_ISA -u ONEDNN_MAX_CPU_ISA ONEDNN_VERBOSE=1 DNNL_VERBOSE=1 \
      "${TORCH_ENV[@]}" "$PY" bench/torch_clip.py run --model "$MODEL" --workload vision --batch 1 \
      --seconds 0 --warmup 0 --min-iters 1 --precision bf16 --bf16 "$m" 2>/dev/null |
    awk -F, '/^onednn_verbose,info,cpu,isa:/ {isa=substr($4, 5)} /^onednn_verbose,exec/ {n[$4 " " $5]++}
      END {s=""; for (k in n) s=s (s?"; ":"") k " x" n[k]; printf "%s|%s", isa, s}')
  printf '{"phase":"onednn","bf16":"%s","isa":"%s","exec":"%s"}\n' "$m" "${impls%%|*}" "${impls#*|}" >>"$RAW"
done
for f in bf16-matmul vision-bf16; do
  [ -f "$ONNX/$f.onnx" ] && run '"phase":"probe"' node bench/ort_clip.js probe --ort-dir "$ORTDIR" \
    --onnx "$ONNX" --file "$ONNX/$f.onnx" --threads "$NPROC"
done
cp "$ONNX/export.json" "$RESDIR/peers-$STAMP-export.json"
PROF=$(mktemp -d)
for k in vision text-full; do
  run "\"phase\":\"ortprof\"" node bench/ort_clip.js run --ort-dir "$ORTDIR" --onnx "$ONNX" --workload "$k" \
    --batch 32 --seconds 0 --warmup 0 --min-iters 1 --threads "$NPROC" --label ort-profile --profile "$PROF/$k"
done
rm -rf "$PROF"

# PyTorch bf16: convert or autocast, whichever is faster, per workload
declare -A BF16MODE
for w in $WORKLOADS; do
  read -r kind batch <<<"$(wl_args "$w")"
  for m in convert autocast; do
    peers_log "$w: PyTorch bf16 $m (choosing)"
    torch "\"phase\":\"choose\",\"wl\":\"$w\"" "$kind" "$batch" bf16 "$m"
  done
  BF16MODE[$w]=$("$PY" -c 'import json, sys
best = {}
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r.get("phase") == "choose" and r.get("wl") == sys.argv[2]:
        best[r["bf16"]] = r["median_s"]
print(min(best, key=best.get) if best else "convert")' "$RAW" "$w")
  peers_log "$w: PyTorch bf16 runs with --bf16 ${BF16MODE[$w]}"
done

for r in $(seq 1 "$ROUNDS"); do
  for w in $WORKLOADS; do
    read -r kind batch <<<"$(wl_args "$w")"
    peers_log "round $r/$ROUNDS $w: portclip fp32, bf16; PyTorch fp32, bf16; ONNX Runtime fp32"
    tag="\"phase\":\"timed\",\"round\":$r,\"wl\":\"$w\""
    pc "$tag" "$kind" "$batch" fp32
    pc "$tag" "$kind" "$batch" bf16
    torch "$tag" "$kind" "$batch" fp32
    torch "$tag" "$kind" "$batch" bf16 "${BF16MODE[$w]}"
    ort "$tag" "$kind" "$batch"
  done
done
peers_log "loss of portclip bf16 (bench_clip precision --batch 32)"
run '"phase":"loss"' env PORTCLIP_THREADS="$NPROC" "$BENCH" precision --model "$MODEL" --batch 32
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
SCHED="nice $(nice), autogroup $(tr -s ' ' 2>/dev/null </proc/self/autogroup || echo none); portclip runs with ${PC_ENV[*]:-its environment}"
GIT=$(git describe --always --dirty 2>/dev/null || echo unknown)

printf '{"phase":"meta","cmd":"%s","load0":"%s","load1":"%s","sched":"%s","git":"%s","nproc":%s,"secs":"%s","minit":"%s","rounds":"%s"}\n' \
  "$(printf '%s' "$CMD" | sed 's/"/\\"/g')" "$LOAD0" "$LOAD1" "$SCHED" "$GIT" "$NPROC" "$SECS" "$MINIT" "$ROUNDS" >>"$RAW"
report "$RAW" "$RESDIR/peers-$STAMP-export.json" | tee "$OUT"
peers_log "table: $OUT; records: $RAW"
