#!/usr/bin/env bash
# Runs the libFuzzer targets, each for a fixed time, starting from its corpus
# in tests/fuzz/corpus/<target> (never written to: new inputs go to a scratch
# corpus). Fails if any target crashes, leaks, times out or runs out of
# memory; the inputs that did so are kept under the work directory.
#
#   tests/fuzz/run.sh BUILD_DIR SECONDS [TARGET...]
#
# BUILD_DIR was configured with CC=clang -DPORTCLIP_FUZZ=ON. Environment:
#   PCLIP_FUZZ_WORK  work directory, kept (default: a fresh mktemp -d, removed
#                    when every target passed); it gets corpus/<target>/ (the
#                    grown corpus), artifacts/<target>/ (crash-*, leak-*,
#                    timeout-*, oom-*) and <target>.log
#   PCLIP_FUZZ_JOBS  parallel fuzzing processes per target (default 1)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$(cd "${1:?usage: run.sh BUILD_DIR SECONDS [TARGET...]}" && pwd)"
secs="${2:?usage: run.sh BUILD_DIR SECONDS [TARGET...]}"
shift 2
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors config image_config tokenizer_load tokenize image)
work="${PCLIP_FUZZ_WORK:-}"
keep_work=1
if [ -z "$work" ]; then work="$(mktemp -d /tmp/portclip-fuzz.XXXXXX)"; keep_work=0; fi
jobs="${PCLIP_FUZZ_JOBS:-1}"

# -max_len per input format: large enough for the seeds, small enough to keep
# each run fast. Dictionaries carry the formats' keywords.
declare -A max_len=([safetensors]=16384 [config]=4096 [image_config]=2048
                    [tokenizer_load]=32768 [tokenize]=4096 [image]=16384)
declare -A dict=([safetensors]=json.dict [config]=json.dict [image_config]=json.dict
                 [tokenizer_load]=tokenizer.dict [tokenize]=tokenizer.dict [image]=image.dict)

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
failed=()
for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/fuzz_$t"
  if [ ! -x "$bin" ]; then
    echo "fuzz: $bin is missing (configure with CC=clang -DPORTCLIP_FUZZ=ON)" >&2
    exit 2
  fi
  mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
  args=(-max_total_time="$secs" -max_len="${max_len[$t]}" -dict="$here/${dict[$t]}"
        -timeout=10 -rss_limit_mb=3072 -print_final_stats=1
        -artifact_prefix="$work/artifacts/$t/")
  if [ "$jobs" -gt 1 ]; then args+=(-jobs="$jobs" -workers="$jobs"); fi
  echo "fuzz: $t for ${secs}s (log: $work/$t.log)"
  (cd "$work" && "$bin" "${args[@]}" "$work/corpus/$t" "$here/corpus/$t") > "$work/$t.log" 2>&1
  rc=$?
  # with -jobs the workers log to fuzz-N.log in the work directory
  if [ "$jobs" -gt 1 ]; then cat "$work"/fuzz-*.log >> "$work/$t.log" 2>/dev/null; rm -f "$work"/fuzz-*.log; fi
  grep -E "^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|DONE" "$work/$t.log" | tail -4 | sed "s/^/  $t: /"
  found=$(ls "$work/artifacts/$t" | grep -cE '^(crash|leak|timeout|oom|slow-unit)-' || true)
  bad=$(ls "$work/artifacts/$t" | grep -cE '^(crash|leak|timeout|oom)-' || true)
  if [ "$rc" -ne 0 ] || [ "$bad" -gt 0 ]; then
    echo "fuzz: $t FAILED (exit $rc); inputs in $work/artifacts/$t:" >&2
    ls "$work/artifacts/$t" >&2
    grep -m1 -A30 -E "ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|fuzz check failed" \
      "$work/$t.log" >&2 || tail -30 "$work/$t.log" >&2
    failed+=("$t")
  elif [ "$found" -gt 0 ]; then
    echo "  $t: $found slow input(s) in $work/artifacts/$t (not a failure)"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (work directory $work)" >&2
  exit 1
fi
if [ "$keep_work" -eq 0 ]; then
  rm -rf "$work"
  echo "fuzz: all ${#targets[@]} target(s) ran ${secs}s each without a crash"
else
  echo "fuzz: all ${#targets[@]} target(s) ran ${secs}s each without a crash (work directory $work)"
fi
