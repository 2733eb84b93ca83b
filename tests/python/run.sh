#!/bin/sh
# Runs the Python binding's tests: run.sh PYTHON TESTDIR. Uses the first of
# PYTHON, python3 and /usr/bin/python3 (Debian's, where apt installs
# python3-pytest and python3-numpy) that has pytest and numpy; exits 77
# (CTest: skipped) with the reason when none has.
dir=${2:-$(dirname "$0")}
why=""
for py in "${1:-python3}" python3 /usr/bin/python3; do
    if ! command -v "$py" >/dev/null 2>&1; then
        why="$why; $py: not found"
        continue
    fi
    missing=""
    for mod in pytest numpy; do
        "$py" -c "import $mod" >/dev/null 2>&1 || missing="$missing $mod"
    done
    if [ -z "$missing" ]; then
        echo "python_binding: $("$py" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
        # no cache folder written into the source tree
        exec "$py" -m pytest -q -p no:cacheprovider "$dir"
    fi
    why="$why; $py: no module$missing"
done
echo "skipped: python_binding: no python3 with pytest and numpy (${why#; }); Debian: apt-get install python3-pytest python3-numpy"
exit 77
