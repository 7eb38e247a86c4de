"""Choosing on validation images: ``run_split(run, data, "val")`` rebuilds exactly the images
the trainer held out, disjoint from the images it trained on, and refuses where run.json cannot
say which those were; the checks read that split unless told ``--split test``; a sweep that
chooses between settings refuses the test split; aae-cluster's defaults are the sweep's winner."""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vaelab
import vaelab.training.run as run_module
from vaelab.data import Dataset
from vaelab.errors import VaelabError
from vaelab.training import run_split
from vaelab.training.run import validation_parts

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
    kept, _ = validation_parts(run, grey)
    assert _rows(kept.x) == _rows(trained_on) and len(kept) == len(trained_on)
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


# --- the checks read the validation split unless told otherwise ------------------------------


def _checks(argv, capsys):
    """checks_main with a compute that reports which images it was given."""
    from vaelab.evaluation.checks_cli import checks_main

    seen = {}

    def compute(model, train, checked, args):
        seen.update(train=train.x, checked=checked.x, fit=args.fit_images.x)
        return {}

    code = checks_main(argv, "checks", "test", "run", lambda p: None, compute)
    return code, seen, capsys.readouterr()


def test_checks_read_the_runs_validation_images_by_default(grey, tmp_path, monkeypatch, capsys):
    run, trained_on, held_out = _train_and_capture(monkeypatch, grey, tmp_path / "run", val_size=20,
                                                   test_fraction=0.25)
    code, seen, out = _checks([str(run), "--data", grey], capsys)
    assert code == 0 and json.loads(out.out)["split"] == "val" and json.loads(out.out)["n_checked"] == 20
    assert torch.equal(seen["checked"], held_out)
    assert _rows(seen["fit"]) == _rows(trained_on)  # a probe fitted by a check never sees the checked images
    assert len(seen["train"]) == 90  # the judge: every training image, the validation ones included
    code, seen, out = _checks([str(run), "--data", grey, "--split", "test"], capsys)
    assert code == 0 and json.loads(out.out)["split"] == "test"
    assert torch.equal(seen["checked"], run_split(run, grey, "test").x) and len(seen["fit"]) == 90


def test_checks_refuse_a_run_without_validation_images_in_one_line(grey, tmp_path, capsys):
    run = vaelab.train("vae", grey, tmp_path / "run", model_config=dict(TINY), config={**FAST, "val_size": 0},
                       progress=False).run_dir
    code, _, out = _checks([str(run), "--data", grey], capsys)
    assert code == 2 and out.err.startswith("error: ") and out.err.count("\n") == 1
    assert "held out no validation images" in out.err


# --- a sweep that chooses between settings never reads test images ----------------------------

REPO = Path(__file__).resolve().parents[1]
SWEEPS = ["aae_cluster_variants.py"]  # benchmarks that choose between settings


@pytest.mark.parametrize("script", SWEEPS)
def test_sweeps_refuse_the_test_split_in_one_line(script):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "bn", "--split", "test"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode != 0 and done.stdout == ""
    assert done.stderr.startswith("error: --split test: this sweep chooses between settings")
    assert done.stderr.count("\n") == 1


def test_the_sweeps_split_defaults_to_validation():
    spec = importlib.util.spec_from_file_location("bench_common", REPO / "benchmarks" / "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    parser = argparse.ArgumentParser()
    common.add_selection_split(parser)
    assert parser.parse_args([]).split == "val"
    common.refuse_test_split("val")  # no exit
    with pytest.raises(SystemExit, match="^error: --split test"):
        common.refuse_test_split("test")
    for script in SWEEPS:
        text = (REPO / "benchmarks" / script).read_text()
        assert "refuse_test_split(args.split)" in text and '"test")' not in text


def test_aae_cluster_defaults_are_the_variant_chosen_on_validation_images():
    spec = importlib.util.spec_from_file_location("variants", REPO / "benchmarks" / "aae_cluster_variants.py")
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        variants = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(variants)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    chosen = vaelab.build("aae-cluster", input_shape=[1, 28, 28]).config
    for name, value in variants.VARIANTS["style5-bn-gen1"].items():
        assert getattr(chosen, name) == value, name
    semi = vaelab.build("aae-semi", input_shape=[1, 28, 28]).config  # the semi-supervised AAE keeps the paper's
    assert (semi.latent_dim, semi.gen_lr_scale, semi.logit_batchnorm) == (10, 0.5, False)
