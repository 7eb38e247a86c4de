"""Shared fixtures: the real MNIST files in the shared data directory, small real subsets,
and tiny models that keep the whole suite fast on a 2-core CPU."""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import vaelab

# tests/conftest.py -> tests -> main -> work; the data lives in /work/shared/data.
# VAELAB_TEST_SHARED_DATA points the suite elsewhere (an empty directory: a clone without the
# data, as tests/test_skips.py checks).
SHARED_DATA = Path(os.environ.get("VAELAB_TEST_SHARED_DATA")
                   or Path(__file__).resolve().parents[2] / "shared" / "data")

# Settings that keep every training call in the suite small and single-threaded: the
# machine has 2 cores and other processes may share them, where 2 OpenMP threads are
# several times slower than 1 for models this small.
FAST = {"threads": 1, "batch_size": 100}
TINY = {"hidden": [32], "latent_dim": 4}


@pytest.fixture(autouse=True)
def _one_thread():
    """The trainer and the CLI set torch's thread count globally; put it back to 1."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _ctrl_c_as_in_a_terminal():
    """The Ctrl-C tests act as a terminal's user does; a suite started in the background
    (``nohup``, ``&`` in a script) inherits SIGINT ignored, which the trainer would put back
    and a child ``vaelab serve`` would keep. Give the suite, and so its children, Python's
    own handler."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The data directory a user would pass as ``data_dir`` / ``--data-dir``."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"real MNIST not present at {SHARED_DATA / 'mnist'} (the shared data directory)")
    return SHARED_DATA


@dataclass
class Small:
    train: vaelab.Dataset  # 2000 real MNIST training images
    val: vaelab.Dataset  # the next 500 training images
    test: vaelab.Dataset  # the first 500 test images


@pytest.fixture(scope="session")
def mnist_small(data_dir) -> Small:
    full = vaelab.load_dataset("mnist", "train", data_dir=data_dir, download=False)
    test = vaelab.load_dataset("mnist", "test", data_dir=data_dir, download=False)
    return Small(full.subset(slice(0, 2000)), full.subset(slice(2000, 2500)), test.subset(slice(0, 500)))


@pytest.fixture(scope="session")
def trained_vae(mnist_small, tmp_path_factory):
    """A small VAE trained for a few epochs on the real MNIST subset (shared, read-only)."""
    return _small_vae(mnist_small, tmp_path_factory.mktemp("trained") / "run")


def _small_vae(small: Small, out: Path):
    """784-64-8, four epochs on ``small``'s training part, validated on its validation part."""
    result = vaelab.train("vae", small.train, out, model_config={"hidden": [64], "latent_dim": 8},
                          config={**FAST, "epochs": 4, "lr": 3e-3, "val_size": 0},
                          val_data=small.val, progress=False)
    return result.model.eval()


def synthetic_digits(n: int, seed: int) -> vaelab.Dataset:
    """``n`` synthetic 28×28 grey images in 10 classes (labels cycle 0..9): each class a bar at
    its own row or column, shifted by up to 2 pixels, with noise, in 8-bit levels. For tests of mechanisms
    (servers, pictures, bookkeeping) that need image-like data but no real digits."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    x = 0.08 * torch.rand(n, 1, 28, 28, generator=g)
    shift = torch.randint(-2, 3, (n,), generator=g)
    place = 6 + 3 * (y % 5) + shift
    for i in range(n):
        if y[i] < 5:
            x[i, 0, place[i]:place[i] + 2, 5:23] += 0.9
        else:
            x[i, 0, 5:23, place[i]:place[i] + 2] += 0.9
    x = (x.clamp(0, 1) * 255).round() / 255  # 8-bit grey levels, as real images are
    return vaelab.Dataset("synthetic digits", x, y, tuple(map(str, range(10))))


@pytest.fixture(scope="session")
def synthetic_small() -> Small:
    """:class:`Small`'s shape (2000 / 500 / 500 images) in :func:`synthetic_digits`."""
    return Small(synthetic_digits(2000, 0), synthetic_digits(500, 1), synthetic_digits(500, 2))


@pytest.fixture(scope="session")
def synthetic_vae(synthetic_small, tmp_path_factory):
    """A small VAE trained a few epochs on the synthetic images (shared, read-only)."""
    return _small_vae(synthetic_small, tmp_path_factory.mktemp("synthetic-trained") / "run")


@pytest.fixture(scope="session")
def synthetic_npy(tmp_path_factory) -> str:
    """A ``--data`` spec for :func:`synthetic_digits` as user data (600 training, 200 test images,
    each an ``.npz`` of uint8 ``x`` and labels ``y``): for command-line tests that need labelled
    28×28 images but nothing of real MNIST, so they run without the shared data."""
    folder = tmp_path_factory.mktemp("synthetic-npy")
    for name, n, seed in (("train", 600, 10), ("test", 200, 11)):
        data = synthetic_digits(n, seed)
        x = (data.x[:, 0] * 255).round().to(torch.uint8).numpy()
        np.savez(folder / f"{name}.npz", x=x, y=data.y.numpy())
    return f"npy:{folder / 'train.npz'},test={folder / 'test.npz'}"


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session (skips, with the reason, where none can start)."""
    from browser import start_browser

    driver = start_browser()
    yield driver
    driver.quit()


class _Called(Exception):
    """Stops ``vaelab train`` at the API call, holding what the command line asked for."""


@pytest.fixture
def parsed(monkeypatch):
    """``parsed(*argv)`` -> (model config, training config) that ``vaelab train`` would train with
    (the command line parsed, the training itself stopped at the API call)."""

    def fake_train(model, data, out, model_config=None, config=None, **kwargs):
        raise _Called(model, model_config, config)

    monkeypatch.setattr(vaelab, "train", fake_train)

    def run(*argv):
        from vaelab.cli import main
        from vaelab.models import model_class

        with pytest.raises(_Called) as called:
            main(["train", *argv, "--data", "mnist", "--out", "unused-run"])
        model, model_config, config = called.value.args
        cls = model_class(model)
        return cls.Config.from_dict(model_config or {}), config

    return run
