"""A run's validation split by name: ``run_split(run, data, "val")`` rebuilds exactly the
images the trainer held out (the split that chooses settings), disjoint from the images it
trained on, and refuses where run.json cannot say which images those were."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vaelab
import vaelab.training.run as run_module
from vaelab.data import Dataset
from vaelab.errors import VaelabError
from vaelab.training import run_split

TINY = {"hidden": [8], "latent_dim": 2}
FAST = {"threads": 1, "batch_size": 50, "epochs": 1}


@pytest.fixture
def grey(tmp_path):
    """120 distinct random 6×6 grey images as uint8 .npy (no test split of its own)."""
    path = tmp_path / "grey.npy"
    np.save(path, (np.random.default_rng(1).random((120, 6, 6)) * 255).astype(np.uint8))
    return f"npy:{path}"


def _train_and_capture(monkeypatch, data, out, **settings):
    """Train a tiny vae and return (run_dir, the trainer's training images, its validation images)."""
    seen = {}
    real_fit = run_module.fit

    def spy(model, train_ds, val_ds, *args, **kwargs):
        seen["train"], seen["val"] = train_ds.x.clone(), val_ds.x.clone()
        return real_fit(model, train_ds, val_ds, *args, **kwargs)

    monkeypatch.setattr(run_module, "fit", spy)
    result = vaelab.train("vae", data, out, model_config=dict(TINY), config={**FAST, **settings}, progress=False)
    return result.run_dir, seen["train"], seen["val"]


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


@pytest.mark.parametrize("settings", [{"val_size": 0.25, "seed": 3}, {"val_size": 17, "seed": 5},
                                      {"val_size": 20, "val_rows": "last"},
                                      {"val_size": 0.2, "seed": 7, "test_fraction": 0.25}])
def test_val_split_is_exactly_the_trainers_held_out_images(grey, tmp_path, monkeypatch, settings):
    run, trained_on, held_out = _train_and_capture(monkeypatch, grey, tmp_path / "run", **settings)
    val = run_split(run, grey, "val")
    assert torch.equal(val.x, held_out)  # the same images, in the same order
    assert not _rows(val.x) & _rows(trained_on)
    assert len(val) == json.loads((run / "run.json").read_text())["data"]["n_val"]
    if "test_fraction" in settings:  # a carved test split stays out of both
        assert not _rows(val.x) & _rows(run_split(run, grey, "test").x)


def test_another_seed_holds_out_other_images(grey, tmp_path, monkeypatch):
    a, _, _ = _train_and_capture(monkeypatch, grey, tmp_path / "a", val_size=20, seed=0)
    b, _, _ = _train_and_capture(monkeypatch, grey, tmp_path / "b", val_size=20, seed=1)
    assert _rows(run_split(a, grey, "val").x) != _rows(run_split(b, grey, "val").x)


def test_val_split_is_refused_where_it_cannot_be_rebuilt(grey, tmp_path, monkeypatch):
    run, _, _ = _train_and_capture(monkeypatch, grey, tmp_path / "run", val_size=20)
    with pytest.raises(VaelabError, match="has no run.json"):
        run_split(tmp_path / "nowhere", grey, "val")
    np.save(grey[len("npy:"):][:-4] + "2.npy", np.zeros((120, 6, 6), np.uint8))
    other = grey[:-4] + "2.npy"
    with pytest.raises(VaelabError, match="was trained on .*grey.npy, not .*grey2.npy"):
        run_split(run, other, "val")
    monkeypatch.undo()
    none = vaelab.train("vae", grey, tmp_path / "none", model_config=dict(TINY),
                        config={**FAST, "val_size": 0}, progress=False).run_dir
    with pytest.raises(VaelabError, match="held out no validation images"):
        run_split(none, grey, "val")
    given = vaelab.train("vae", grey, tmp_path / "given", model_config=dict(TINY), config=FAST, progress=False,
                         val_data=Dataset("extra", torch.rand(12, 1, 6, 6))).run_dir
    with pytest.raises(VaelabError, match="validated on images given to it"):
        run_split(given, grey, "val")
