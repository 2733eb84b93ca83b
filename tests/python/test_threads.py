"""The module's OpenMP wait setting (portclip/_lib.py, _short_spin): libgomp's
own report of its settings (OMP_DISPLAY_ENV=VERBOSE, on stderr when it is
loaded) in a fresh interpreter that imports portclip."""

import os
import subprocess
import sys

import pytest

PYTHON_DIR = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "python"))

SCRIPT = """
import ctypes, os, sys
if sys.argv[1] == "gomp-first":
    ctypes.CDLL("libgomp.so.1")
import portclip
print(os.environ.get("GOMP_SPINCOUNT", "unset"))
"""


def run(mode, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(extra, OMP_DISPLAY_ENV="VERBOSE")
    env["PYTHONPATH"] = PYTHON_DIR + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-c", SCRIPT, mode], env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    spins = [line.split("'")[1] for line in p.stderr.splitlines()
             if line.strip().startswith("GOMP_SPINCOUNT = '")]
    return p.stdout.strip(), spins


def libgomp_loaded():
    out, spins = run("plain")
    if not spins:
        pytest.skip("skipped: this build's library does not load libgomp (no OpenMP report)")
    return out, spins


def test_short_spin_when_unset():
    out, spins = libgomp_loaded()
    assert spins == ["3000"]
    assert out == "unset"  # the environment is as it was after the import


def test_caller_setting_kept():
    out, spins = run("plain", GOMP_SPINCOUNT="12345")
    assert spins == ["12345"] and out == "12345"
    out, spins = run("plain", OMP_WAIT_POLICY="ACTIVE")
    assert spins and spins != ["3000"] and out == "unset"


def test_libgomp_loaded_first_left_alone():
    libgomp_loaded()
    out, spins = run("gomp-first")
    assert spins and spins != ["3000"] and out == "unset"
