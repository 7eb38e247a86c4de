"""A small digit classifier that scores generators: "does this model make digits?"

Trained on real MNIST in a few seconds per epoch on a CPU, it is then applied to
generated images: confident predictions (high max-softmax probability, low entropy) mean
the samples look like digits, and a flat histogram of predicted classes means the
generator covers all ten. ``confidence`` reports both, plus the Inception-score-style
summary exp(H[p(y)] - E[H[p(y|x)]]) computed with this classifier (between 1 and 10;
not comparable with Inception scores from other classifiers).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..config import Config
from ..data.batch import Batch, as_batch, inputs
from ..errors import VaelabError, brief
from ..models.base import Loss, Model
from ..training.trainer import TrainConfig, fit
from ._store import read_baseline, require, save_baseline

KIND = "digit-classifier"


class DigitClassifier(nn.Module):
    """MLP on flattened pixels: D -> hidden... -> classes, ReLU between layers.

    An MLP rather than a CNN because it reaches about 98% MNIST test accuracy in three
    epochs at a fraction of a CNN's CPU time; that is plenty to tell digits from blobs.
    """

    def __init__(self, image_shape: tuple[int, ...] = (1, 28, 28), hidden: tuple[int, ...] = (512, 256), num_classes: int = 10):
        super().__init__()
        if not image_shape or any(int(s) < 1 for s in image_shape):
            raise VaelabError(f"image_shape must be positive sizes such as (1, 28, 28), got {image_shape!r}")
        if any(int(h) < 1 for h in hidden) or int(num_classes) < 2:
            raise VaelabError(f"hidden sizes must be positive and num_classes >= 2, got {hidden!r}, {num_classes!r}")
        self.image_shape, self.hidden, self.num_classes = tuple(int(s) for s in image_shape), tuple(int(h) for h in hidden), int(num_classes)
        sizes = (math.prod(self.image_shape),) + self.hidden
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], self.num_classes))
        self.net = nn.Sequential(*layers)
        self.history: list[dict] = []

    def _rows(self, x) -> torch.Tensor:
        x = torch.as_tensor(x)
        d = math.prod(self.image_shape)
        if x.ndim < 2 or x[0].numel() != d:
            raise VaelabError(f"images must be (N, {', '.join(map(str, self.image_shape))}) or (N, {d}), got shape {tuple(x.shape)}")
        return x.reshape(x.shape[0], d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes)."""
        return self.net(self._rows(x).to(self.net[0].weight))

    @torch.inference_mode()
    def predict_proba(self, x, batch_size: int = 2000) -> torch.Tensor:
        """Softmax probabilities (N, classes), float32, in eval mode."""
        was_training = self.training
        self.eval()
        try:
            x = self._rows(x)
            return torch.cat([torch.softmax(self(x[i:i + batch_size]), 1).cpu() for i in range(0, x.shape[0], batch_size)])
        finally:
            self.train(was_training)

    def accuracy(self, x, y) -> float:
        """Fraction of ``x`` whose most probable class is ``y``."""
        y = torch.as_tensor(y)
        if y.shape != (len(x),):
            raise VaelabError(f"y must hold one label per image ({len(x)}), got shape {tuple(y.shape)}")
        return float((self.predict_proba(x).argmax(1) == y.cpu()).double().mean())

    def confidence(self, images) -> dict:
        """How digit-like and how varied ``images`` are, as a JSON-ready dict.

        ``mean_max_prob``: mean of the largest softmax probability (1 = always certain);
        ``mean_entropy``: mean entropy of p(y|x) in nats (0 = certain, log 10 = clueless);
        ``histogram``: how many images fall in each predicted class; ``marginal_entropy``:
        entropy of the average p(y) in nats (log 10 = every class equally often);
        ``score``: exp(marginal_entropy - mean_entropy), the Inception-score form.
        """
        p = self.predict_proba(images).double()
        if p.shape[0] == 0:
            raise VaelabError("confidence needs at least one image")
        entropy = -(p * p.clamp_min(1e-300).log()).sum(1)
        marginal = p.mean(0)
        marginal_entropy = float(-(marginal * marginal.clamp_min(1e-300).log()).sum())
        return {
            "n": p.shape[0],
            "mean_max_prob": float(p.max(1).values.mean()),
            "mean_entropy": float(entropy.mean()),
            "marginal_entropy": marginal_entropy,
            "histogram": torch.bincount(p.argmax(1), minlength=self.num_classes).tolist(),
            "score": math.exp(marginal_entropy - float(entropy.mean())),
        }

    def save(self, directory: str | os.PathLike):
        """Write ``baseline.json`` + ``baseline.safetensors`` into ``directory`` (atomically)."""
        config = {"image_shape": list(self.image_shape), "hidden": list(self.hidden),
                  "num_classes": self.num_classes, "history": self.history}
        return save_baseline(directory, KIND, config, dict(self.state_dict()))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> DigitClassifier:
        _, config, tensors = read_baseline(directory, KIND)
        return cls._from_saved(config, tensors, directory)

    @classmethod
    def _from_saved(cls, config: dict, tensors: dict, where) -> DigitClassifier:
        try:
            model = cls(tuple(config["image_shape"]), tuple(config["hidden"]), int(config["num_classes"]))
            model.history = list(config.get("history", []))
        except (KeyError, TypeError, ValueError) as exc:
            raise VaelabError(f"{where}: classifier settings are incomplete ({brief(exc, typed=True)}); re-save the baseline") from None
        own = model.state_dict()
        require(tensors, tuple(own), where)
        if set(tensors) != set(own) or any(tensors[k].shape != own[k].shape for k in own):
            raise VaelabError(f"{where}: classifier weights do not match its settings; re-save the baseline")
        model.load_state_dict(tensors)
        return model.eval()


def train_classifier(x, y, *, epochs: int = 3, batch_size: int = 128, lr: float = 2e-3, seed: int = 0,
                     hidden: tuple[int, ...] = (512, 256), num_classes: int | None = None,
                     threads: int | None = None, progress: bool = False) -> DigitClassifier:
    """Train a :class:`DigitClassifier` on images ``x`` (N, C, H, W) in [0, 1] and labels ``y``.

    Trained by vaelab's trainer (one seeded shuffle per epoch, Adam, cross-entropy), with the
    learning rate falling along a cosine over the epochs. ``seed`` fixes the initial weights and the shuffles, so
    the same call gives the same weights; the caller's random streams are left as they were.
    ``history`` holds the mean training loss and seconds per epoch. ``threads`` None keeps
    the caller's thread count. ``progress`` reports the training on stderr (the trainer's bar or
    lines, and its epoch lines). Returns the model in eval mode, on the CPU.
    """
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.ndim < 2 or len(x) == 0 or y.shape != (len(x),) or y.dtype not in (torch.int64, torch.int32, torch.uint8):
        raise VaelabError(f"train_classifier needs images (N, ...) and N integer labels, got {tuple(x.shape)} and {y.dtype} {tuple(y.shape)}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise VaelabError(f"epochs must be a positive integer, got {epochs!r}")
    y = y.to(torch.int64)
    classes = num_classes or int(y.max()) + 1
    image_shape = tuple(x.shape[1:]) if x.ndim > 2 else (x.shape[1],)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, lr_schedule="cosine", seed=seed,
                         binarize="none", val_size=0, device="cpu",
                         threads=torch.get_num_threads() if threads is None else threads)
    with _kept_random_streams():
        torch.manual_seed(seed)
        model = DigitClassifier(image_shape, hidden, classes)
        model.history = _fit(_Objective(model), Batch(x.to(torch.float32), y), config, progress)
    return model.eval()


@dataclass(frozen=True)
class _ClassifierConfig(Config):
    """What a classifier's training run records (``run.json``): the network's shape."""

    input_shape: tuple[int, ...] = (1, 28, 28)
    hidden: tuple[int, ...] = (512, 256)
    num_classes: int = 10


class _Objective(Model):
    """The trainer's view of a :class:`DigitClassifier`: its network (shared, so training
    updates the classifier itself), cross-entropy over the labelled rows as ``loss`` and
    logits as ``classify`` (so validation, where there is any, reports ``error``)."""

    name = KIND
    Config = _ClassifierConfig

    def __init__(self, classifier: DigitClassifier):
        super().__init__(_ClassifierConfig(classifier.image_shape, classifier.hidden, classifier.num_classes))
        self.net = classifier.net

    def classify(self, batch: Batch) -> torch.Tensor:
        x = inputs(batch)
        return self.net(x.reshape(x.shape[0], -1))

    def loss(self, batch: Batch) -> Loss:
        batch = as_batch(batch)
        rows = batch.labelled_rows()
        cross_entropy = F.cross_entropy(self.classify(batch)[rows], batch.y[rows])
        return Loss(cross_entropy, {"cross_entropy": cross_entropy}, {"cross_entropy": 1.0})


def _fit(objective: _Objective, data: Batch, config: TrainConfig, progress: bool = False) -> list[dict]:
    """Train through :func:`vaelab.training.fit` in a temporary run directory (the caller keeps
    the classifier with ``save``); the per-epoch history from its ``metrics.jsonl``. Its epoch
    lines go to stderr: stdout is the caller's result."""
    with tempfile.TemporaryDirectory(prefix="vaelab-classifier-") as run, \
            contextlib.redirect_stdout(sys.stderr if progress else sys.stdout):
        fit(objective, data, None, config, run, progress=progress)
        lines = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    return [{"epoch": m["epoch"], "loss": m["train"]["cross_entropy"], "seconds": m["seconds"]} for m in lines]


@contextlib.contextmanager
def _kept_random_streams():
    """The trainer seeds torch, NumPy and Python's RNGs; a baseline leaves the caller's as they were."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
