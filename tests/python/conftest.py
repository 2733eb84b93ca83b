"""Shared fixtures of the Python binding's tests: the tiny checkpoint and its
PyTorch references (tests/fixtures, see its README)."""

import json
import os

import pytest

FIXTURES = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "fixtures"))
TINY = os.path.join(FIXTURES, "tiny-clip")
IMAGES = os.path.join(FIXTURES, "images")
# The tests run on the CPU unless PORTCLIP_BACKEND names another backend.
BACKEND = os.environ.get("PORTCLIP_BACKEND") or "cpu"
# The references are fp32: a PORTCLIP_PRECISION of the caller does not apply.
os.environ.pop("PORTCLIP_PRECISION", None)


@pytest.fixture(scope="session")
def reference():
    with open(os.path.join(TINY, "reference", "reference.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def zeroshot():
    with open(os.path.join(FIXTURES, "zeroshot", "tiny-clip.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture
def model():
    import portclip
    with portclip.Model(TINY, backend=BACKEND) as m:
        yield m
