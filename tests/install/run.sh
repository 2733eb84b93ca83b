#!/usr/bin/env bash
# Installs the build into a temporary prefix and builds and runs an example
# program (examples/classify.c) against it three ways: pkg-config (shared),
# pkg-config --static, and find_package(portclip) (shared and static). Checks
# the installed files (soname, headers, man page, bash completion) and that
# portclip configures as a subproject (add_subdirectory).
#
#   tests/install/run.sh SOURCE_DIR BUILD_DIR C_COMPILER [sanitize]
#
# Exits 77 (skipped) when it cannot run: in the sanitizer build (the library
# needs the sanitizer runtime, which a plain consumer does not link), or
# without pkg-config.
set -euo pipefail
src=$1 build=$2 cc=$3
if [ "${4:-}" = sanitize ]; then
  echo "skipped: the sanitizer build's library needs the ASan/UBSan runtime, which a consumer" \
       "linking through portclip.pc or the CMake package does not get; the Release build runs this test"
  exit 77
fi
if ! command -v pkg-config >/dev/null; then
  echo "skipped: pkg-config not found"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail() { echo "FAIL: $*" >&2; exit 1; }

echo "== cmake --install into a temporary prefix"
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "install"; }
libdir=$(ls -d "$prefix"/lib*/pkgconfig | head -n1); libdir=${libdir%/pkgconfig}
for f in bin/portclip include/portclip.h include/portclip/core.h include/portclip/model.h \
         share/man/man1/portclip.1 share/bash-completion/completions/portclip; do
  [ -f "$prefix/$f" ] || fail "not installed: $f"
done
for f in libportclip.a libportclip.so pkgconfig/portclip.pc cmake/portclip/portclipConfig.cmake \
         cmake/portclip/portclipTargets.cmake; do
  [ -e "$libdir/$f" ] || fail "not installed: ${libdir#$prefix/}/$f"
done
soname=$(readelf -d "$libdir/libportclip.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libportclip.so.0 ] || fail "soname is '$soname', not libportclip.so.0"
[ -f "$libdir/$soname" ] || fail "$soname not installed"

echo "== the man page and the completion name every command"
export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
cmds=$("$prefix/bin/portclip" help | sed -n '/^commands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p')
[ -n "$cmds" ] || fail "portclip help lists no command"
for c in $cmds; do
  grep -qF ".SS \"portclip ${c//-/\\-}" "$prefix/share/man/man1/portclip.1" || fail "man page lacks $c"
done
complete_words() { # the completion's answer for the words given (the last is being typed)
  bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _portclip
           echo "${COMPREPLY[*]}"' _ "$prefix/share/bash-completion/completions/portclip" "$@"
}
[ "$(complete_words portclip cla)" = classify ] || fail "completion of 'portclip cla'"
[ "$(complete_words portclip embed-image --backend op)" = opencl ] || fail "completion of --backend"
complete_words portclip classify --to | grep -qw -- --top-k || fail "completion of classify's options"

model=$src/tests/fixtures/tiny-clip
images=("$src/tests/fixtures/images/j_large_640x427.jpg" "$src/tests/fixtures/images/p_large_500x375.png")
check_example() { # runs one build of the example; it prints one "PATH: LABEL (PROB)" per image
  local exe=$1 out
  out=$("$exe" "$model" "cat,dog,beach" "${images[@]}") || fail "$exe failed"
  [ "$(grep -cE '^.+: (cat|dog|beach) \(0\.[0-9]+\)$' <<<"$out")" = 2 ] || fail "$exe printed: $out"
  echo "   $(basename "$exe"): ok"
}
export PKG_CONFIG_PATH=$libdir/pkgconfig
example=$src/examples/classify.c

echo "== pkg-config, shared"
# shellcheck disable=SC2046
"$cc" -o "$tmp/pc_shared" "$example" $(pkg-config --cflags --libs portclip)
readelf -d "$tmp/pc_shared" | grep -q "NEEDED.*\[libportclip.so.0\]" || fail "pc_shared does not use libportclip.so.0"
check_example "$tmp/pc_shared"

echo "== pkg-config --static (libportclip.a and what portclip.pc says it needs)"
static_libs=$(pkg-config --static --libs portclip | sed 's/-lportclip\b/-l:libportclip.a/')
# shellcheck disable=SC2046,SC2086
"$cc" -o "$tmp/pc_static" "$example" $(pkg-config --cflags portclip) $static_libs
if readelf -d "$tmp/pc_static" | grep -q "NEEDED.*libportclip"; then fail "pc_static uses the shared library"; fi
check_example "$tmp/pc_static"

echo "== find_package(portclip)"
cmake -S "$src/tests/install/consumer" -B "$tmp/consumer" -DCMAKE_C_COMPILER="$cc" \
      -DCMAKE_PREFIX_PATH="$prefix" -DEXAMPLE_SOURCE="$example" >"$tmp/consumer.log" 2>&1 ||
  { cat "$tmp/consumer.log"; fail "configuring the find_package consumer"; }
cmake --build "$tmp/consumer" >>"$tmp/consumer.log" 2>&1 ||
  { cat "$tmp/consumer.log"; fail "building the find_package consumer"; }
if readelf -d "$tmp/consumer/example_static" | grep -q "NEEDED.*libportclip"; then
  fail "portclip::portclip_static links the shared library"
fi
check_example "$tmp/consumer/example_shared"
check_example "$tmp/consumer/example_static"

echo "== add_subdirectory(portclip) configures"
cmake -S "$src/tests/install/parent" -B "$tmp/parent" -DCMAKE_C_COMPILER="$cc" \
      -DPORTCLIP_SOURCE="$src" >"$tmp/parent.log" 2>&1 ||
  { cat "$tmp/parent.log"; fail "configuring a parent project with add_subdirectory(portclip)"; }
echo "install: all checks passed"
