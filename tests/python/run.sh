#!/bin/sh
# Runs the Python binding's tests: run.sh PYTHON TESTDIR. Exits 77 (CTest:
# skipped) with the reason when the interpreter, pytest or numpy is missing.
py=${1:-python3}
dir=${2:-$(dirname "$0")}
if ! command -v "$py" >/dev/null 2>&1; then
    echo "skipped: python_binding: $py not found (Debian: apt-get install python3)"
    exit 77
fi
for mod in pytest numpy; do
    if ! "$py" -c "import $mod" >/dev/null 2>&1; then
        echo "skipped: python_binding: the Python module $mod is missing (Debian: apt-get install python3-pytest python3-numpy)"
        exit 77
    fi
done
# no cache folder written into the source tree
exec "$py" -m pytest -q -p no:cacheprovider "$dir"
