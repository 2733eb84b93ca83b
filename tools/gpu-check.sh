#!/usr/bin/env bash
# The GPU backends' tests and benchmarks on a machine with a real GPU that has
# no compiler toolchain, no Debian packages and no network (a lent test
# machine, a cluster node): build here, carry one file there, run one command.
#
#   bash tools/gpu-check.sh pack    (here) Release build in gpu-bundle/build,
#                                   the shared libraries it needs that a
#                                   plain Linux system may lack (oneDNN,
#                                   libjpeg, libpng, SQLite, cJSON, utf8proc,
#                                   libgomp, the Vulkan and OpenCL loaders,
#                                   the Khronos validation layer) and the
#                                   list of CTest's Vulkan and OpenCL tests,
#                                   all in gpu-bundle.tar.gz (ignored by git)
#   bash tools/gpu-check.sh run     (there, in a copy of the same source tree
#                                   holding gpu-bundle.tar.gz) unpacks it,
#                                   points the loaders at the machine's own
#                                   NVIDIA/AMD/Intel drivers, then writes to
#                                   $OUT (default gpu-out/):
#     facts.txt   the GPU, the CPU, `portclip devices`
#     tests.txt   every Vulkan and OpenCL test (validation layer on, as in
#                 CTest): passed / failed / skipped with its reason, and the
#                 output of each failure
#     bench.txt   the ViT-B/32-shaped checkpoint (bench/make_checkpoint.py, run
#                 with the machine's python3 and PyTorch) encoded on Vulkan
#                 fp32 and fp16, OpenCL and the CPU in one command (images or
#                 texts per second, batch 1 and 32), the fp16 loss against
#                 fp32 on the GPU, and bench_vulkan's / bench_opencl's matmuls
#     logs.tar.gz every test's whole output
#
# The binaries carry the source tree's absolute path (fixtures, the CLI):
# `run` makes that path a link to the tree it runs in when the path does not
# exist there. GPU_CHECK_TESTS (a regular expression on the test names,
# default "vulkan|opencl"), GPU_CHECK_JOBS (tests at a time, default 4),
# GPU_CHECK_SECONDS (timed seconds per benchmark run, default 3),
# GPU_CHECK_MIN_ITERS (timed calls at least, default 3), GPU_CHECK_BATCHES
# (default "32 1"), GPU_CHECK_PYTHON (a python3 with numpy and torch for the
# checkpoint; default the first of python3, /usr/bin/python3 that has them) and
# GPU_CHECK_SKIP_BENCH=1 narrow what runs.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bundle=gpu-bundle
tarball=gpu-bundle.tar.gz

log() { printf '[gpu-check %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# Shared libraries a binary needs beyond the C runtime (glibc, libstdc++ and
# libgcc_s are the target system's own, which are at least as new).
deps_of() {
  ldd "$@" 2>/dev/null | awk '/=> \//{print $3}' | sort -u |
    grep -v -E '/(libc|libm|libdl|librt|libpthread|ld-linux[^/]*|libstdc\+\+|libgcc_s)\.so' || true
}

pack() {
  bash tools/setup-debian.sh
  log "building Release in $bundle/build"
  cmake -S . -B "$bundle/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$bundle/build" -j "$(nproc)" >/dev/null
  rm -rf "$bundle/lib" "$bundle/lib-cxx" "$bundle/layers"
  mkdir -p "$bundle/lib" "$bundle/layers"
  local exes
  mapfile -t exes < <(find "$bundle/build" -maxdepth 3 -type f -executable \
    \( -path '*/tests/check_*' -o -path '*/tools/portclip' -o -name 'bench_*' -o -path '*/examples/example_*' \) |
    grep -v CMakeFiles)
  # The loaders are opened at run time (dlopen), so ldd does not name them.
  local multiarch
  multiarch=$(gcc -print-multiarch)
  local libs=(/usr/lib/"$multiarch"/libvulkan.so.1 /usr/lib/"$multiarch"/libOpenCL.so.1
              /usr/lib/"$multiarch"/libVkLayer_khronos_validation.so)
  mapfile -t -O ${#libs[@]} libs < <(deps_of "${exes[@]}" "${libs[@]}")
  for l in "${libs[@]}"; do cp -L "$l" "$bundle/lib/"; done
  cp /usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json "$bundle/layers/"
  # The C++ runtime, used there only when the system's is older than ours.
  mkdir -p "$bundle/lib-cxx"
  cp -L /usr/lib/"$multiarch"/libstdc++.so.6 /lib/"$multiarch"/libgcc_s.so.1 "$bundle/lib-cxx/"
  # CTest's GPU tests with their arguments and properties, for a machine
  # without CTest.
  (cd "$bundle/build" && ctest --show-only=json-v1) > "$bundle/tests.json"
  printf '%s\n' "$root" > "$bundle/source-dir"
  git rev-parse --short HEAD > "$bundle/commit" 2>/dev/null || echo unknown > "$bundle/commit"
  git diff --quiet HEAD 2>/dev/null || sed -i 's/$/-dirty/' "$bundle/commit"
  log "packing $tarball"
  # Only what `run` needs: not a checkpoint or vendors folder an earlier
  # local `run` left in $bundle.
  tar -czf "$tarball" --exclude='*.o' --exclude='*.a' --exclude='CMakeFiles' \
    --exclude='Testing' "$bundle"/{build,lib,lib-cxx,layers,tests.json,source-dir,commit}
  log "$(du -h "$tarball" | cut -f1) in $tarball (commit $(cat "$bundle/commit")); ${#libs[@]} libraries"
}

# On an NVIDIA machine, the loaders see only NVIDIA's driver (a software
# device such as lavapipe would otherwise be device 0 when installed), found
# where packages put it or where container images mount it.
driver_env() {
  local f lib=""
  for f in /usr/share/vulkan/icd.d/nvidia*.json /etc/vulkan/icd.d/nvidia*.json \
           /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/local/nvidia/icd.d/nvidia_icd.json; do
    if [ -f "$f" ]; then export VK_DRIVER_FILES=$f VK_ICD_FILENAMES=$f; break; fi
  done
  lib=$(ldconfig -p 2>/dev/null | awk '/libnvidia-opencl\.so\.1/ && !f {print $NF; f=1}')
  for f in /usr/local/nvidia/lib64/libnvidia-opencl.so.1 /usr/local/nvidia/lib/libnvidia-opencl.so.1; do
    [ -n "$lib" ] || { [ -f "$f" ] && lib=$f; }
  done
  if [ -n "$lib" ]; then
    mkdir -p "$root/$bundle/vendors"
    echo "$lib" > "$root/$bundle/vendors/nvidia.icd"
    export OCL_ICD_VENDORS=$root/$bundle/vendors
  fi
}

run_tests() {
  local out=$1
  python3 - "$root/$bundle/tests.json" "$out" "${GPU_CHECK_TESTS:-vulkan|opencl}" \
    "${GPU_CHECK_JOBS:-4}" <<'PY'
import concurrent.futures as cf, json, os, re, subprocess, sys, tarfile, time
spec, out, pattern, jobs = sys.argv[1], sys.argv[2], re.compile(sys.argv[3]), int(sys.argv[4])
tests = [t for t in json.load(open(spec))["tests"] if pattern.search(t["name"])]
os.makedirs(os.path.join(out, "logs"), exist_ok=True)

def run(t):
    props = {p["name"]: p["value"] for p in t.get("properties", [])}
    env = dict(os.environ)
    for kv in props.get("ENVIRONMENT", []):
        k, _, v = kv.partition("=")
        env[k] = v
    timeout = min(float(props.get("TIMEOUT", 1500)), 900)
    start = time.time()
    try:
        p = subprocess.run(t["command"], cwd=props.get("WORKING_DIRECTORY"), env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        code, text = p.returncode, p.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        code, text = "timeout", (e.stdout or b"").decode(errors="replace")
    except OSError as e:
        code, text = "could not start", str(e)
    with open(os.path.join(out, "logs", t["name"] + ".log"), "w") as f:
        f.write(text)
    if code == 0:
        state = "passed"
    elif code == props.get("SKIP_RETURN_CODE"):
        state = "skipped"
    else:
        state = "FAILED (%s)" % code
    return t["name"], state, time.time() - start, text

with cf.ThreadPoolExecutor(jobs) as pool:
    results = list(pool.map(run, tests))
with open(os.path.join(out, "tests.txt"), "w") as f:
    failed = [r for r in results if r[1].startswith("FAILED")]
    f.write("%d tests, %d passed, %d skipped, %d failed\n\n" % (
        len(results), sum(r[1] == "passed" for r in results),
        sum(r[1] == "skipped" for r in results), len(failed)))
    for name, state, secs, text in results:
        why = ""
        if state == "skipped":
            lines = [l for l in text.splitlines() if "skip" in l.lower()]
            why = ": " + lines[-1].strip() if lines else ""
        f.write("%-40s %-18s %7.1f s%s\n" % (name, state, secs, why))
    for name, state, secs, text in failed:
        f.write("\n==== %s (%s): last 200 lines ====\n" % (name, state))
        f.write("\n".join(text.splitlines()[-200:]) + "\n")
with tarfile.open(os.path.join(out, "logs.tar.gz"), "w:gz") as tf:
    tf.add(os.path.join(out, "logs"), arcname="logs")
print(open(os.path.join(out, "tests.txt")).read().split("\n\n")[0])
PY
  rm -rf "$out/logs"
}

run_bench() {
  local out=$1 b=$root/$bundle/build s=${GPU_CHECK_SECONDS:-3}
  local model=$root/$bundle/clip-vit-b32-random
  {
    echo "# commit $(cat "$root/$bundle/commit"), $(date -u '+%Y-%m-%d %H:%M UTC')"
    log "writing the benchmark checkpoint"
    local py="" p
    for p in ${GPU_CHECK_PYTHON:-} python3 /usr/bin/python3; do
      if "$p" -c 'import numpy, torch' >/dev/null 2>&1; then py=$p; break; fi
    done
    if [ -z "$py" ]; then
      echo "no python3 with numpy and torch (GPU_CHECK_PYTHON): no checkpoint, no model benchmarks"
      model=""
    elif ! "$py" bench/make_checkpoint.py "$model" > "$out/checkpoint.log" 2>&1; then
      echo "bench/make_checkpoint.py failed:"; tail -5 "$out/checkpoint.log"
      model=""
    fi
    rm -f "$out/checkpoint.log"
    local backend prec wl batch
    for wl in vision text; do
      [ -n "$model" ] || break
      for batch in ${GPU_CHECK_BATCHES:-32 1}; do
        for backend in vulkan opencl cpu; do
          for prec in fp32 fp16 bf16; do
            [ "$prec" = fp16 ] && [ "$backend" != vulkan ] && continue
            [ "$prec" = bf16 ] && [ "$backend" != cpu ] && continue
            echo "## $wl batch $batch, $backend $prec"
            timeout 300 "$b/bench_clip" "$wl" --model "$model" --batch "$batch" --caption full \
              --backend "$backend" --precision "$prec" --seconds "$s" \
              --min-iters "${GPU_CHECK_MIN_ITERS:-3}" 2>&1 | tail -3 || echo "(exit $?)"
          done
        done
      done
    done
    if [ -n "$model" ]; then
      echo "## fp16 loss against fp32 on Vulkan (batch 32)"
      timeout 300 "$b/bench_clip" precision --model "$model" --backend vulkan --precision fp16 \
        --batch 32 2>&1 | tail -4 || echo "(exit $?)"
    fi
    echo "## bench_vulkan (matmuls at ViT-B/32's shapes, GPU against the CPU)"
    timeout 300 "$b/bench_vulkan" --seconds 1 ${model:+--model "$model"} 2>&1 | tail -40 || echo "(exit $?)"
    echo "## bench_opencl"
    timeout 300 "$b/bench_opencl" --seconds 1 --no-clblast 2>&1 | tail -40 || echo "(exit $?)"
  } > "$out/bench.txt" 2>&1
}

run_all() {
  local out=${OUT:-$root/gpu-out}
  mkdir -p "$out"
  [ -f "$tarball" ] || { echo "gpu-check: $tarball is missing: run 'bash tools/gpu-check.sh pack' first" >&2; exit 2; }
  [ -d "$bundle/build" ] || tar -xzf "$tarball"
  local src
  src=$(cat "$bundle/source-dir")
  if [ ! -e "$src" ]; then
    mkdir -p "$(dirname "$src")" && ln -s "$root" "$src"
  elif [ "$(cd "$src" && pwd -P)" != "$(pwd -P)" ]; then
    log "warning: $src is another tree; the tests' fixtures are read from there"
  fi
  export LD_LIBRARY_PATH=$root/$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  local cxx need
  cxx=$(ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64/ && !f {print $NF; f=1}')
  need=$(grep -a -o -E 'GLIBCXX_[0-9]+\.[0-9]+(\.[0-9]+)?' "$root/$bundle/lib-cxx/libstdc++.so.6" | sort -V | tail -1)
  if [ -z "$cxx" ] || ! grep -q -a -F "$need" "$cxx"; then
    LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$root/$bundle/lib-cxx
  fi
  export VK_LAYER_PATH=$root/$bundle/layers
  export OMP_WAIT_POLICY=PASSIVE
  driver_env
  {
    echo "commit: $(cat "$bundle/commit")"
    nvidia-smi -L 2>&1 || true
    grep -m1 'model name' /proc/cpuinfo || true
    echo "cores: $(nproc); AMX: $(grep -o -m1 -w 'amx_bf16' /proc/cpuinfo || echo no);" \
      "AVX512_BF16: $(grep -o -m1 -w 'avx512_bf16' /proc/cpuinfo || echo no)"
    env | grep -E '^(VK_|OCL_ICD)' || true
    "$bundle/build/tools/portclip" devices 2>&1 || true
  } > "$out/facts.txt"
  cat "$out/facts.txt" >&2
  log "tests"
  run_tests "$out"
  if [ "${GPU_CHECK_SKIP_BENCH:-0}" != 1 ]; then
    log "benchmarks"
    run_bench "$out"
  fi
  log "done: $out"
}

case "${1:-}" in
  pack) pack ;;
  run) run_all ;;
  *) echo "usage: bash tools/gpu-check.sh pack|run" >&2; exit 2 ;;
esac
