# shellcheck shell=bash
# Shared by bench/peers.sh and bench/busy.sh (sourced, not run): the peers
# (PyTorch "tuned" and ONNX Runtime) and what they need.
#
#   peers_nice_exec VAR ARGS...   when $VAR (e.g. PEERS_NICE=-20) is set, run this
#                                 script again at that nice value in its own
#                                 session and scheduling group, as busy.sh's
#                                 BUSY_NICE does
#   peers_openblas BUILD          -> the folder of OpenBLAS's OpenMP flavour
#                                 (Debian's when installed, else unpacked into
#                                 BUILD with apt-get download, as bench/train.sh
#                                 does; nothing installed); empty if neither
#   peers_torch_env OBDIR         -> "tuned" PyTorch's environment, one VAR=VALUE
#                                 a line (bench/run.sh's TORCH_TUNED with
#                                 OpenBLAS's own kernel choice, coretype unset)
#   peers_ort BUILD               installs Node.js/npm (apt) when missing and
#                                 npm's onnxruntime-node into BUILD/ort
#                                 (--ignore-scripts: the CPU library is in the
#                                 package); -> that folder
#   peers_onnx BUILD MODEL ORTDIR exports MODEL to BUILD/onnx (bench/export_onnx.py,
#                                 checked in ONNX Runtime); -> that folder

peers_log() { printf '[peers %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

peers_nice_exec() { # VAR script args...
  local var=$1 script=$2; shift 2
  local n=${!var:-}
  if [ -n "$n" ] && [ -z "${PEERS_NICE_DONE:-}" ]; then
    export PEERS_NICE_DONE=1
    exec setsid -w sh -c 'echo "$1" >/proc/self/autogroup 2>/dev/null; shift; exec nice -n "$0" "$@"' \
      "$n" "$n" bash "$script" "$@"
  fi
}

peers_openblas() { # BUILD
  local lib=/usr/lib/x86_64-linux-gnu d
  if [ -d "$lib/openblas-openmp" ]; then echo "$lib/openblas-openmp"; return; fi
  d=$1/openblas-openmp
  if [ ! -d "$d/usr/lib" ]; then
    peers_log "unpacking libopenblas0-openmp into $d"
    mkdir -p "$d" && (cd "$d" && apt-get download libopenblas0-openmp >/dev/null 2>&1 &&
      dpkg -x libopenblas0-openmp_*.deb .) || { peers_log "no OpenBLAS: PyTorch runs on its default BLAS"; return; }
  fi
  echo "$(realpath "$d")/usr/lib/x86_64-linux-gnu/openblas-openmp"
}

peers_torch_env() { # OBDIR
  [ -n "$1" ] && echo "LD_LIBRARY_PATH=$1"
  printf '%s\n' MALLOC_TRIM_THRESHOLD_=-1 MALLOC_MMAP_THRESHOLD_=1073741824 "BENCH_THREADS=$(nproc)"
}

peers_ort() { # BUILD
  local dir=$1/ort
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    local SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    peers_log "installing nodejs npm"
    $SUDO apt-get install -y --no-install-recommends nodejs npm >&2
  fi
  if [ ! -f "$dir/node_modules/onnxruntime-node/package.json" ]; then
    peers_log "npm install --ignore-scripts onnxruntime-node into $dir"
    mkdir -p "$dir"
    (cd "$dir" && npm install --ignore-scripts --no-audit --no-fund onnxruntime-node >&2)
  fi
  echo "$dir"
}

peers_onnx() { # BUILD MODEL ORTDIR
  local out=$1/onnx
  /usr/bin/python3 bench/export_onnx.py --model "$2" --out "$out" --ort-dir "$3" >&2 || return 1
  echo "$out"
}
