"""The user's own data, handled honestly: 0/1 masks are not divided by 255, and
near-constant training images get a warning before step 1."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import vaelab
from test_cli import cli
from vaelab.data import Dataset
from vaelab.errors import VaelabError, VaelabWarning

FAST = {"threads": 1, "batch_size": 50, "epochs": 1, "val_size": 0}
TINY = {"hidden": [8], "latent_dim": 2}
CLI_TINY = ["--hidden", "8", "--latent-dim", "2", "--epochs", "1", "--threads", "1", "--no-progress"]


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


def test_cli_says_in_one_line_that_0_1_masks_stay_0_1(tmp_path, capsys):
    path = tmp_path / "masks.npy"
    np.save(path, (np.random.default_rng(1).random((60, 6, 6)) > 0.5).astype(np.uint8))
    code, _, err = cli(capsys, "train", "vae", "--data", f"npy:{path}", "--out", tmp_path / "run",
                       "--val-size", "0", *CLI_TINY)
    assert code == 0, err
    assert err == f"warning: npy:{path}: the uint8 pixels hold only the values 0 and 1, so they are read as " \
                  "black-and-white pixels (0/1), not as 0..255 grey levels\n"
