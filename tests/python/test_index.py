"""portclip.Index: update from a folder, search by text, image file, image
array and vector, against the model's own embeddings; incremental updates;
errors."""

import os
import shutil

import numpy as np
import pytest

import portclip
from conftest import IMAGES, FIXTURES, BACKEND

NAMES = ["j_rgb444_64x48.jpg", "p_32x32.png", "j_grey_64x48.jpg", "p_pal8_64x48.png",
         "p_rgba_portrait_45x80.png", "p_landscape_97x61.png"]


@pytest.fixture
def photos(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for n in NAMES:
        shutil.copy(os.path.join(IMAGES, n), d / n)
    return d


def test_update_and_search(tmp_path, photos, model):
    path = tmp_path / "idx"
    with portclip.Index(path, model) as idx:
        assert len(idx) == 0
        seen = []
        rep = idx.update([photos], progress=lambda *a: seen.append(a))
        assert rep["added"] == len(NAMES) and rep["count"] == len(NAMES)
        assert seen and seen[-1][:3] == (len(NAMES), len(NAMES), 0)
        info = idx.info()
        assert info["count"] == len(NAMES) and info["dim"] == model.dim
        assert info["dtype"] == "f32" and info["preprocess"] == "openai"

        files = sorted(str(photos / n) for n in NAMES)  # byte order of the paths
        emb = model.embed_images(files)
        q = "a photo of a cat"
        want = emb @ model.embed_texts(q)[0]
        hits = idx.search(q, k=3)
        assert [h.path for h in hits] == [files[i] for i in np.argsort(-want, kind="stable")[:3]]
        assert np.allclose([h.score for h in hits], np.sort(want)[::-1][:3], atol=1e-5)

        # an image of the index finds itself first, by path, array and vector
        me = files[2]
        assert idx.search(image=me, k=1)[0].path == me
        assert abs(idx.search(image=me, k=1)[0].score - 1) < 1e-5
        assert idx.search(image=portclip.read_image(me), k=1)[0].path == me
        assert idx.search(vector=emb[2] * 7.0, k=1)[0].path == me  # normalised here
        many = idx.search(vector=emb, k=len(NAMES) + 5)
        assert len(many) == len(NAMES) and all(len(r) == len(NAMES) for r in many)
        assert [r[0].path for r in many] == files
        two = idx.search(["a dog", "a red car"], k=2)
        assert len(two) == 2 and all(len(r) == 2 for r in two)

        # incremental: nothing changed, then one removed and one bad file
        rep = idx.update([photos])
        assert rep["unchanged"] == len(NAMES) and rep["added"] == 0
        os.remove(photos / NAMES[0])
        shutil.copy(os.path.join(FIXTURES, "bad", "truncated.png"), photos / "zz_bad.png")
        rep = idx.update(str(photos))
        assert rep["removed"] == 1 and rep["count"] == len(NAMES) - 1
        assert [p for p, _ in rep["skipped_files"]] == [str(photos / "zz_bad.png")]
        assert len(idx) == len(NAMES) - 1

    # vector search needs no model
    with portclip.Index.open(path) as idx:
        assert len(idx.search(vector=emb[1], k=2)) == 2
        with pytest.raises(portclip.InvalidArgumentError):
            idx.search("a cat")
        with pytest.raises(portclip.InvalidArgumentError):
            idx.search(vector=np.ones(model.dim + 1), k=2)


def test_index_errors(tmp_path, photos, model):
    with pytest.raises(portclip.Error) as e:
        portclip.Index.open(tmp_path / "missing")
    assert "missing" in str(e.value)
    with portclip.Index(tmp_path / "new", model) as idx:
        with pytest.raises(portclip.NotFoundError):
            idx.search("x")
        idx.update([photos])
        with pytest.raises(portclip.InvalidArgumentError):
            idx.search("x", k=0)
        with pytest.raises(portclip.InvalidArgumentError):
            idx.search("x", image=str(photos / NAMES[0]))
    # an index made with another model is refused, naming it
    with portclip.Model(os.path.join(FIXTURES, "tiny-clip-gelu"), backend=BACKEND) as other:
        with pytest.raises(portclip.Error) as e:
            portclip.Index(tmp_path / "new", other)
        assert "tiny-clip" in str(e.value)
    # a folder that is not an index
    with pytest.raises(portclip.Error):
        portclip.Index.open(photos)
