"""The user's own data, handled honestly: 0/1 masks are not divided by 255, near-constant
training images get a warning before step 1, and a "test" result is never measured on
training images without saying so (a named test array, or a seeded carve-out recorded
in run.json and reused by eval and reconstruct)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

import vaelab
from test_cli import assert_one_line_error, cli
from vaelab.data import Dataset, load_dataset, split_test
from vaelab.errors import VaelabError, VaelabWarning
from vaelab.training import run_split

FAST = {"threads": 1, "batch_size": 50, "epochs": 1, "val_size": 0}
TINY = {"hidden": [8], "latent_dim": 2}
CLI_TINY = ["--hidden", "8", "--latent-dim", "2", "--epochs", "1", "--threads", "1", "--no-progress"]


@pytest.fixture
def grey(tmp_path):
    """100 random 6×6 grey images as uint8 .npy, no test split of its own."""
    path = tmp_path / "grey.npy"
    np.save(path, (np.random.default_rng(0).random((100, 6, 6)) * 255).astype(np.uint8))
    return f"npy:{path}"


def _train(data, out, **settings):
    return vaelab.train("vae", data, out, model_config=dict(TINY), config={**FAST, **settings}, progress=False)


# --- the training set is checked before step 1 --------------------------------------


def test_near_constant_training_images_warn_before_training(tmp_path):
    masks = (torch.rand(60, 1, 4, 4, generator=torch.Generator().manual_seed(0)) > 0.5).float() / 255
    with pytest.warns(VaelabWarning, match=r"the 60 training images are nearly constant \(pixels 0\.\.0\.003922"):
        _train(Dataset("masks/255", masks), tmp_path / "dark")


def test_varied_training_images_train_without_a_warning(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", VaelabWarning)
        _train(Dataset("noise", torch.rand(60, 1, 4, 4)), tmp_path / "noise")


def test_non_finite_training_images_are_refused_before_training(tmp_path):
    x = torch.rand(60, 1, 4, 4)
    x[3, 0, 1, 1] = float("nan")
    with pytest.raises(VaelabError, match=r"training images hold 1 NaN or inf pixel values"):
        _train(Dataset("nan", x), tmp_path / "nan")
    assert not (tmp_path / "nan" / "run.json").exists()


# --- a held-out test split ----------------------------------------------------------


def test_test_fraction_holds_out_a_recorded_split(grey, tmp_path):
    result = _train(grey, tmp_path / "run", test_fraction=0.2, val_size=10)
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["train"]["test_fraction"] == 0.2
    data = record["data"]
    assert (data["n_train"], data["n_val"], data["n_test"], data["test_fraction"]) == (70, 10, 20, 0.2)
    _, carved = split_test(load_dataset(grey), 0.2)
    test = run_split(result.run_dir, grey, "test")
    assert torch.equal(test.x, carved.x)  # the same 20 images every time
    train = run_split(result.run_dir, grey, "train")
    assert len(train) == 80 and not any(torch.equal(img, t) for img in train.x for t in test.x[:3])


def test_test_fraction_is_refused_where_a_test_split_exists(grey, tmp_path):
    path = grey[len("npy:"):]
    with pytest.raises(VaelabError, match="has a test split of its own; drop --test-fraction"):
        _train(f"{grey},test={path}", tmp_path / "run", test_fraction=0.2)
    with pytest.raises(VaelabError, match="test_fraction must lie in"):
        _train(grey, tmp_path / "run", test_fraction=1.0)


def test_run_split_refuses_when_the_data_changed(grey, tmp_path):
    result = _train(grey, tmp_path / "run", test_fraction=0.2)
    np.save(grey[len("npy:"):], np.zeros((90, 6, 6), np.uint8))
    with pytest.raises(VaelabError, match="now holds 90 images, but the run .* carved its test split off 100"):
        run_split(result.run_dir, grey, "test")


# --- the CLI: eval and reconstruct say which images they used -------------------------


def test_eval_test_split_without_held_out_data_is_refused(grey, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = cli(capsys, "train", "vae", "--data", grey, "--out", out, "--val-size", "0", *CLI_TINY)
    assert code == 0, err
    code, out_text, err = cli(capsys, "eval", out, "--data", grey, "--split", "test", "--threads", "1")
    assert_one_line_error(code, err, "has no held-out test split", ",test=TEST.npy", "--test-fraction X",
                          "--split train")
    assert out_text == ""
    code, _, err = cli(capsys, "reconstruct", out, "--data", grey, "-o", tmp_path / "r.png")
    assert_one_line_error(code, err, "has no held-out test split")


def test_results_on_training_images_say_so(grey, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = cli(capsys, "train", "vae", "--data", grey, "--out", out, "--val-size", "0",
                       "--test-fraction", "0.25", *CLI_TINY)
    assert code == 0, err
    code, text, err = cli(capsys, "eval", out, "--data", grey, "--json", "--threads", "1")
    assert code == 0, err
    held = json.loads(text)
    assert held["split"] == "test" and held["held_out"] is True and held["n"] == 25 and "note" not in held
    code, text, err = cli(capsys, "eval", out, "--data", grey, "--split", "train", "--json", "--threads", "1")
    train = json.loads(text)
    assert train["held_out"] is False and train["n"] == 75 and "training images" in train["note"]
    code, text, err = cli(capsys, "eval", out, "--data", grey, "--split", "train", "--threads", "1")
    assert code == 0 and "note  computed on training images" in text
    code, text, err = cli(capsys, "reconstruct", out, "--data", grey, "--split", "train", "-n", "4",
                          "-o", tmp_path / "r.png")
    assert code == 0 and err == "note: computed on training images (the train split), not on held-out data\n"
    code, _, err = cli(capsys, "reconstruct", out, "--data", grey, "-n", "4", "-o", tmp_path / "t.png")
    assert code == 0 and err == ""


def test_cli_says_in_one_line_that_0_1_masks_stay_0_1(tmp_path, capsys):
    path = tmp_path / "masks.npy"
    np.save(path, (np.random.default_rng(1).random((60, 6, 6)) > 0.5).astype(np.uint8))
    code, _, err = cli(capsys, "train", "vae", "--data", f"npy:{path}", "--out", tmp_path / "run",
                       "--val-size", "0", *CLI_TINY)
    assert code == 0, err
    assert err == f"warning: npy:{path}: the uint8 pixels hold only the values 0 and 1, so they are read as " \
                  "black-and-white pixels (0/1), not as 0..255 grey levels\n"


def test_encode_uses_the_test_split_the_run_carved(grey, tmp_path):
    result = _train(grey, tmp_path / "run", test_fraction=0.2, val_size=10)
    codes = vaelab.export_codes(result.run_dir, grey, tmp_path / "codes.npz", split="test", binarize="none")
    held_out = vaelab.training.run_split(result.run_dir, grey, "test").x
    assert codes["mean"].shape[0] == 20
    model = vaelab.load(result.run_dir)
    assert np.allclose(codes["mean"], model.encode(held_out).mean.detach().numpy(), atol=1e-6)


# --- results on data other than the run's say so -----------------------------------------


def _array(path, seed):
    np.save(path, (np.random.default_rng(seed).random((60, 8, 8)) * 255).astype(np.uint8))
    return f"npy:{path}"


def test_held_out_says_whether_the_images_were_in_the_training_split(tmp_path, capsys):
    mine, other = _array(tmp_path / "mine.npy", 0), _array(tmp_path / "other.npy", 1)
    out = tmp_path / "run"
    code, _, err = cli(capsys, "train", "vae", "--data", mine, "--out", out, "--val-size", "0", *CLI_TINY)
    assert code == 0, err
    code, text, err = cli(capsys, "eval", out, "--data", other, "--split", "train", "--json", "--threads", "1")
    assert code == 0, err
    result = json.loads(text)
    assert result["held_out"] is True and "training images" not in result["note"]
    assert str(tmp_path / "other.npy") in result["note"] and str(tmp_path / "mine.npy") in result["note"]
    assert err.count("\n") == 1 and err.startswith("note: ") and "other.npy" in err and "mine.npy" in err
    code, text, err = cli(capsys, "eval", out, "--data", mine, "--split", "train", "--json", "--threads", "1")
    assert json.loads(text)["held_out"] is False and err == ""
    code, text, err = cli(capsys, "eval", out, "--data", "digits", "--threads", "1")  # a named dataset
    assert code == 0 and "digits" in err and "mine.npy" in err and err.count("\n") == 1
    code, _, err = cli(capsys, "reconstruct", out, "--data", other, "--split", "train", "-n", "4",
                       "-o", tmp_path / "r.png")
    assert code == 0 and "training images" not in err and "other.npy" in err and err.count("\n") == 1


def test_eval_table_names_run_data_split_and_what_binarization_did(tmp_path, capsys):
    mine = _array(tmp_path / "mine.npy", 0)
    out = tmp_path / "run"
    assert cli(capsys, "train", "vae", "--data", mine, "--out", out, "--val-size", "0", "--likelihood",
               "bernoulli", *CLI_TINY)[0] == 0
    code, text, err = cli(capsys, "eval", out, "--data", mine, "--split", "train", "--threads", "1")
    rows = {line.split()[0]: line.split(None, 1)[1] for line in text.splitlines()}
    assert rows["run"] == str(out) and rows["data"] == mine and rows["split"] == "train"
    code, text, err = cli(capsys, "eval", out, "--data", mine, "--split", "train", "--threads", "1", "--json")
    assert json.loads(text)["binarize"] == "dynamic, drawn once (seed 123)"


def test_every_part_of_a_data_spec_is_checked_before_step_1(tmp_path, capsys):
    mine, small = _array(tmp_path / "mine.npy", 0), tmp_path / "small.npy"
    np.save(small, np.zeros((5, 6, 6), dtype=np.uint8))
    for test, message in [(tmp_path / "missing.npy", "missing.npy"), (small, "[1, 6, 6]")]:
        out = tmp_path / f"run-{test.stem}"
        code, _, err = cli(capsys, "train", "vae", "--data", f"{mine},test={test}", "--out", out, *CLI_TINY)
        assert_one_line_error(code, err, message)
        assert not out.exists()


def test_a_run_on_data_given_as_a_dataset_is_judged_by_the_split_alone(tmp_path):
    """A Dataset's name is no spec: nothing is known of its images, so only the split says."""
    from vaelab.training.run import TRAINING_IMAGES, held_out

    ds = Dataset("my subset", torch.rand(30, 1, 6, 6))
    _train(ds, tmp_path / "run")
    assert held_out(tmp_path / "run", "mnist", "train") == (False, TRAINING_IMAGES)
    assert held_out(tmp_path / "run", "mnist", "test") == (True, None)
