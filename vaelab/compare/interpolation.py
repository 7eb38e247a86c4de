"""Interpolation: the space between an autoencoder's codes holds no digits, a VAE's does.

An ``ae`` and a ``vae`` of the same shape are trained on the same images (or given as
``runs``). Between many seeded pairs of test images of different classes, each model's
straight (linear) and spherical (slerp) paths in z are decoded, and so is the pixel blend
of the two images. A digit classifier trained on the real training images reads every
point: the mean and minimum of its max-probability over a path's interior, beside its
mean at the endpoints, say whether the path stays among digits; the mean L2 step between
consecutive images says whether it moves smoothly or jumps.
"""
from __future__ import annotations

import os
import time

import torch

from ..baselines import DigitClassifier, train_classifier
from ..errors import VaelabError
from ..viz.captions import captioned_rows
from ..viz.grids import save_png
from ..viz.interpolation import MAX_STEPS, PATHS, interpolate
from ..viz.latent import LatentView
from .common import Comparison, fit, load_run, prepare_out, split

NETWORK = {"hidden": [512, 256], "activation": "relu"}
CLASSIFIER_EPOCHS = 3
FIGURE_PAIRS = 3
MEASURES = ("step_length", "max_step", "confidence_mean", "confidence_min", "endpoint_confidence")


def interpolation(out: str | os.PathLike, *, data: str = "mnist", data_dir=None, runs=(), latent_dim: int = 16,
                  pairs: int = 300, steps: int = 10, epochs: int = 5, train_size: int = 0, seed: int = 0,
                  threads: int = 0, progress: bool = True) -> Comparison:
    """Measure ``pairs`` interpolations of ``steps`` points for each model (``runs``, else an
    ``ae`` and a ``vae`` with ``latent_dim`` codes trained for ``epochs``) and the pixel blend."""
    if pairs < 1:
        raise VaelabError(f"--pairs must be at least 1, got {pairs}")
    if not 3 <= steps <= MAX_STEPS:  # checked before any model is trained
        raise VaelabError(f"--steps must be from 3 (two endpoints and a point between) to {MAX_STEPS}, got {steps}")
    start = time.perf_counter()
    out = prepare_out(out)
    train, test = split(data, data_dir, train_size, 0)
    if not train.has_class_labels or test.y is None:
        raise VaelabError(f"{data} has no class labels; pairs of different classes and the classifier need them")
    models = _models(out, runs, data, train, latent_dim, epochs, seed, threads, progress)
    clf = _classifier(out / "classifier", train, seed, threads)
    chosen = _pairs(test.y, pairs, seed)
    results = {name: [interpolate(m, test.x[i], test.x[j], steps=steps, classifier=clf) for i, j in chosen]
               for name, m in models}
    rows = [_row("–", "pixels", [r.measures["pixels"] for r in next(iter(results.values()))])]
    rows += [_row(name, p, [r.measures[p] for r in rs]) for name, rs in results.items() for p in PATHS[1:]]
    figure = out / "interpolation_paths.png"
    _figure(results, chosen, figure)
    return Comparison(
        "interpolation", f"Interpolation between {len(chosen)} pairs of {data} test images of different classes "
        f"({steps} points per path; classifier test accuracy {clf.accuracy(test.x, test.y):.2%})",
        ["model", "path", *MEASURES], rows,
        settings={"data": data, "n_train": len(train), "latent_dim": latent_dim, "pairs": len(chosen), "steps": steps,
                  "epochs": epochs, "seed": seed, "runs": [str(r) for r in runs], "network": NETWORK,
                  "classifier_epochs": CLASSIFIER_EPOCHS},
        figures=[str(figure)],
        notes=["step_length / max_step: mean / largest L2 distance between consecutive images of a path "
               f"(over the {test.x[0].numel()} pixel values in [0, 1]), averaged over pairs.",
               "confidence_mean / confidence_min: the classifier's max-probability over a path's interior points "
               "(mean; minimum), averaged over pairs; endpoint_confidence: at its two ends (the real images for "
               "pixels, their reconstructions for paths in z).",
               "Codes are posterior means (VAE) or codes (AE); slerp turns the direction along the great circle "
               "and moves the length linearly."],
        seconds=time.perf_counter() - start)


def _models(out, runs, data, train, latent_dim, epochs, seed, threads, progress) -> list[tuple[str, object]]:
    """(name, model) for each run given, else a freshly trained (or reused) ae and vae."""
    if runs:
        loaded = [(r, load_run(r, data, train.shape)) for r in runs]
        models = [(f"{m.name} ({r})", m) for r, m in loaded]
    else:
        tcfg = {"epochs": epochs, "seed": seed, "threads": threads, "val_size": 0, "binarize": "dynamic"}
        models = [("ae", fit("ae", train, out / "runs" / "ae", {"latent_dim": latent_dim, "loss": "bernoulli",
                                                                **NETWORK}, tcfg, progress)),
                  ("vae", fit("vae", train, out / "runs" / "vae", {"latent_dim": latent_dim, **NETWORK}, tcfg,
                              progress))]
    for name, m in models:
        if LatentView(m).conditional:
            raise VaelabError(f"--run {name} is a label-conditional model; this comparison interpolates "
                              "unconditional ones (see vaelab interpolate --label for a conditional model)")
    return [(name, m.eval()) for name, m in models]


def _classifier(directory, train, seed: int, threads: int) -> DigitClassifier:
    if (directory / "baseline.json").exists():
        return DigitClassifier.load(directory)
    clf = train_classifier(train.x, train.y, epochs=CLASSIFIER_EPOCHS, seed=seed, threads=threads or None)
    clf.save(directory)
    return clf


def _pairs(y: torch.Tensor, n: int, seed: int) -> list[tuple[int, int]]:
    """``n`` seeded pairs of test indices whose labels differ."""
    if len(set(y.tolist())) < 2:
        raise VaelabError("the test images hold a single class; no pair of different classes exists")
    g = torch.Generator().manual_seed(seed)
    found = []
    while len(found) < n:
        i, j = torch.randint(len(y), (2, 4 * n), generator=g)
        found += [(int(a), int(b)) for a, b in zip(i, j) if y[a] != y[b]]
    return found[:n]


def _row(model: str, path: str, measures: list[dict]) -> dict:
    return {"model": model, "path": path,
            **{k: sum(m[k] for m in measures) / len(measures) for k in MEASURES}}


def _figure(results: dict, chosen, path) -> None:
    """The first few pairs: the pixel blend, then each model's linear and slerp paths."""
    rows, captions = [], []
    first = next(iter(results.values()))
    for k, (i, j) in enumerate(chosen[:FIGURE_PAIRS]):
        rows.append(first[k].images["pixels"])
        captions.append(f"{i} to {j} pixels")  # the default font has no arrow
        for name, rs in results.items():
            for p in PATHS[1:]:
                rows.append(rs[k].images[p])
                captions.append(f"{name.split(' ')[0]} {p} z")
    save_png(captioned_rows(torch.stack(rows), captions), path)
