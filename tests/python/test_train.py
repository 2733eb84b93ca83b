"""Model.train against the PyTorch training reference of tests/fixtures/train
(linear heads, full batch, no shuffle, constant rate): the losses within 1e-5
relative (features computed here, as check_train.c's CLI test does), the
result loads as a model; stopping from on_step and resuming give the
uninterrupted run's log; bad arguments raise."""

import json
import os

import pytest

import portclip
from conftest import FIXTURES, TINY, BACKEND

TRAIN = os.path.join(FIXTURES, "train")


def test_linear_matches_pytorch(model, tmp_path):
    with open(os.path.join(TRAIN, "linear.json"), encoding="utf-8") as f:
        ref = json.load(f)
    out = tmp_path / "out"
    res = model.train(os.path.join(TRAIN, "pairs.tsv"), str(out), steps=ref["steps"],
                      batch_size=8, shuffle=False, schedule="constant", lr=ref["lr"],
                      weight_decay=ref["weight_decay"], val_fraction=0)
    assert res.steps == ref["steps"] and not res.cancelled
    assert [d["step"] for d in res.log] == list(range(1, ref["steps"] + 1))
    for got, want in zip([d["loss"] for d in res.log], ref["losses"]):
        assert abs(got - want) <= 1e-5 * max(1.0, abs(want)), (got, want)
    with portclip.Model(str(out), backend=BACKEND) as trained:
        assert abs(trained.logit_scale - ref["logit_scale"][-1]) <= 1e-5 * ref["logit_scale"][-1]


def test_stop_and_resume(model, tmp_path):
    args = dict(head="mlp", embed_dim=8, steps=6, batch_size=3, lr=3e-3, seed=5,
                val_fraction=0.25, checkpoint_every=2)
    full = model.train(os.path.join(TRAIN, "pairs.tsv"), str(tmp_path / "a"), **args)
    assert full.steps == 6 and full.recall is not None and full.val_pairs > 0
    first = model.train(os.path.join(TRAIN, "pairs.tsv"), str(tmp_path / "b"),
                        on_step=lambda d: d["step"] >= 3, **args)
    assert first.cancelled and first.steps == 3
    rest = model.train(os.path.join(TRAIN, "pairs.tsv"), str(tmp_path / "b"), resume=True, **args)
    assert rest.resumed_from == 3 and rest.feature_cache_hit
    assert first.log + rest.log == full.log
    assert (tmp_path / "a" / "head.safetensors").read_bytes() == \
        (tmp_path / "b" / "head.safetensors").read_bytes()


def test_errors(model, tmp_path):
    with pytest.raises(portclip.InvalidArgumentError):
        model.train(os.path.join(TRAIN, "pairs.tsv"), str(tmp_path / "o"), head="big")
    with pytest.raises(portclip.InvalidArgumentError):
        model.train(os.path.join(TRAIN, "pairs.tsv"), str(tmp_path / "o"), steps=2, epochs=2)
    with pytest.raises(portclip.NotFoundError):
        model.train(str(tmp_path / "missing.tsv"), str(tmp_path / "o"), steps=2)

    def boom(d):
        raise RuntimeError("stop here")
    with pytest.raises(RuntimeError, match="stop here"):
        model.train(os.path.join(TRAIN, "pairs.tsv"), str(tmp_path / "o2"), steps=3,
                    batch_size=4, on_step=boom)
