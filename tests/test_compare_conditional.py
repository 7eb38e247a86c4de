"""``vaelab compare conditional`` on a tiny cvae: its table holds exactly what the checks and the
importance sampler return, the NLL rows are named for what they estimate (cnll of p(x|y),
nll of p(x)), its pictures are the model's, and bad input is refused in one line."""
from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

import vaelab
from vaelab.cli import main
from vaelab.compare import conditional
from vaelab.compare.conditional import ROW_MAKERS
from vaelab.data.batch import Batch
from vaelab.evaluation import evaluate
from vaelab.evaluation.conditional_checks import conditional_checks, digit_classifier
from vaelab.viz.analogy import save_analogies

TINY = {"hidden": [32], "latent_dim": 4}
QUICK = {"train_size": 1000, "test_size": 60, "nll_samples": 16, "sources": 8, "per_class": 4, "epochs": 1,
         "threads": 1, "progress": False, "split": "test"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The digit classifier's cache in a temporary directory, not the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def cvae_run(mnist_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("cond") / "cvae"
    vaelab.train("cvae", mnist_small.train.subset(slice(0, 1000)), out, model_config=dict(TINY),
                 config={"threads": 1, "batch_size": 100, "epochs": 3, "lr": 3e-3, "val_size": 0}, progress=False)
    return out


@pytest.fixture(scope="module")
def compared(cache, cvae_run, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp-cond")
    result = conditional(out, data_dir=data_dir, runs=[str(cvae_run)], **QUICK)
    result.write(out)
    return out, result


def test_table_values_are_the_functions_results(compared, cvae_run, mnist_small):
    out, result = compared
    value = {(r["model"], r["measure"]): r["value"] for r in result.rows}
    cvae, vae = vaelab.load(cvae_run).eval(), vaelab.load(out / "runs" / "vae").eval()
    train, test = mnist_small.train.subset(slice(0, 1000)), mnist_small.test.subset(slice(0, 60))
    checks = conditional_checks(cvae, train, test, 8, 4, 0, digit_classifier(train))
    for name in ("sample_accuracy", "analogy_accuracy", "slant_r", "thickness_r",
                 "reconstruction_slant_r", "reconstruction_thickness_r"):
        assert value[("cvae", name)] == checks[name], name
    cnll = evaluate(cvae, Batch(test.x, test.y), nll_samples=16, binarize="static")["cnll"]
    nll = evaluate(vae, Batch(test.x), nll_samples=16, binarize="static")["nll"]
    assert value[("cvae", "cnll")] == cnll and value[("vae", "nll")] == nll
    assert ("cvae", "nll") not in value and ("vae", "cnll") not in value  # each named for what it estimates
    assert vae.config.hidden == cvae.config.hidden and vae.config.latent_dim == cvae.config.latent_dim
    assert not getattr(vae, "conditional", False)


def test_files_hold_the_table_and_the_models_pictures(compared, cvae_run, mnist_small, tmp_path):
    out, result = compared
    saved = json.loads((out / "results.json").read_text())
    assert saved["comparison"] == "conditional" and saved["rows"] == json.loads(json.dumps(result.rows))
    assert "| cvae | cnll |" in (out / "table.md").read_text()
    met = {r["measure"]: r["met"] for r in result.rows if r["met"] is not None}
    assert set(met) == {"sample_accuracy", "analogy_accuracy", "slant_r", "thickness_r"}
    test = mnist_small.test
    save_analogies(vaelab.load(cvae_run).eval(), test.x[:10], test.y[:10], tmp_path / "again.png")
    assert np.array_equal(np.asarray(Image.open(out / "analogies.png")), np.asarray(Image.open(tmp_path / "again.png")))
    grids = np.asarray(Image.open(out / "style_grids.png").convert("L"), dtype=float)
    assert grids.std() > 10  # digits drawn, not a blank page


def test_a_row_maker_adds_rows(cache, cvae_run, data_dir, tmp_path, monkeypatch):
    """The hook a CMMA row uses: one more function of the shared setting."""
    def extra(s):
        return [{"model": "probe", "measure": "train_images", "value": len(s.train), "goal": None, "met": None}]

    module = importlib.import_module("vaelab.compare.conditional")  # the package's name is the function's
    monkeypatch.setattr(module, "ROW_MAKERS", [ROW_MAKERS[0], extra])
    result = conditional(tmp_path, data_dir=data_dir, runs=[str(cvae_run)], **QUICK)
    assert result.rows[-1] == {"model": "probe", "measure": "train_images", "value": 1000, "goal": None, "met": None}
    assert not (tmp_path / "runs" / "vae").exists()  # only the makers listed run


def _one_line(code, err, fragment):
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert fragment in err, err


def test_bad_input_is_refused_in_one_line(cache, cvae_run, trained_vae, mnist_small, data_dir, tmp_path, capsys):
    path = tmp_path / "unlabelled.npz"
    np.savez(path, x=(mnist_small.train.x[:300, 0].numpy() * 255).astype(np.uint8))
    common = ["--out", str(tmp_path / "o"), "--threads", "1", "--no-progress"]
    _one_line(main(["compare", "conditional", "--data", f"npy:{path}", *common]), capsys.readouterr().err,
              "needs class labels")
    vae_dir = tmp_path / "vae"
    vaelab.save(trained_vae, vae_dir)
    _one_line(main(["compare", "conditional", "--data-dir", str(data_dir), "--run", str(vae_dir), *common]),
              capsys.readouterr().err, "label-conditional")
    _one_line(main(["compare", "conditional", "--data-dir", str(data_dir), "--run", str(cvae_run),
                    "--vae-run", str(vae_dir), "--train-size", "500", "--test-size", "20", "--sources", "4",
                    "--per-class", "2", "--split", "test", *common]), capsys.readouterr().err, "differ")
    _one_line(main(["compare", "conditional", "--data-dir", str(data_dir), "--run", str(cvae_run), *common]),
              capsys.readouterr().err, "held out no validation images")  # --split val: the run's own
    _one_line(main(["compare", "conditional", "--data-dir", str(data_dir), "--split", "train", *common]),
              capsys.readouterr().err, "--split train: choose val")
    _one_line(main(["compare", "conditional", "--data-dir", str(data_dir), "--nll-samples", "0", *common]),
              capsys.readouterr().err, "--nll-samples must be at least 1")
    _one_line(main(["compare", "conditional", "--data-dir", str(data_dir), "--sources", "1", *common]),
              capsys.readouterr().err, "--sources must be at least 2")
    assert not (tmp_path / "o" / "runs").exists()  # refused before training anything
    assert torch.get_num_threads() == 1


def test_class_in_z_reads_the_class_only_where_z_holds_it(cvae_run, mnist_small, monkeypatch):
    from vaelab.evaluation.conditional_checks import class_in_z
    from vaelab.viz.latent import LatentView

    model, g = vaelab.load(cvae_run).eval(), torch.Generator().manual_seed(0)
    train, test = mnist_small.train.subset(slice(0, 300)), mnist_small.test.subset(slice(0, 100))
    noise = lambda b: torch.randn(len(b.x), 10, generator=g)  # noqa: E731
    monkeypatch.setattr(LatentView, "encode", lambda self, b: noise(b))
    assert class_in_z(model, train, test)["class_in_z"] < 0.3  # chance is about 0.1
    monkeypatch.setattr(LatentView, "encode", lambda self, b: noise(b) * 0.1 + torch.nn.functional.one_hot(b.y, 10))
    assert class_in_z(model, train, test)["class_in_z"] > 0.9  # z spells the class out


def test_the_default_split_is_validation_images_held_out_of_training(cache, data_dir, tmp_path, monkeypatch):
    """Without --split the checks read the last --val-size training images, which the trained
    cvae never sees; the judge alone trains on every training image."""
    seen = {}
    module = importlib.import_module("vaelab.compare.conditional")
    monkeypatch.setattr(module, "digit_classifier", lambda judge: seen.setdefault("judge", judge))
    monkeypatch.setattr(module, "ROW_MAKERS", [lambda s: seen.update(train=s.train, checked=s.test) or []])
    options = {**QUICK, "test_size": 50, "epochs": 1}
    del options["split"]
    result = conditional(tmp_path, data_dir=data_dir, val_size=2000, **options)
    mnist = vaelab.load_dataset("mnist", "train", data_dir=data_dir)
    assert torch.equal(seen["checked"].x, mnist.x[58000:58050])  # the held-out rows, in order
    assert torch.equal(seen["train"].x, mnist.x[:1000]) and len(seen["judge"]) == 60000
    assert result.settings["split"] == "val" and "50 validation images" in result.title
    run = json.loads((tmp_path / "runs" / "cvae" / "run.json").read_text())
    assert run["data"]["n_train"] == 1000
