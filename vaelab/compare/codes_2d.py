"""The classic 2-D figure: PCA's projection beside an autoencoder's (and a VAE's) codes.

Each panel shows the test set coloured by label. Codes wider than 2 are projected
(``projection``: PCA or t-SNE). A k-nearest-neighbour classifier fitted on the training
points of each 2-D map and scored on the test points puts one number on how well the
map separates the classes.
"""
from __future__ import annotations

import os
import time

import torch

from ..baselines import PCA
from ..errors import VaelabError
from ..viz.plots import PROJECTIONS, project_2d, scatter_panels
from .common import Comparison, batched, fit, load_run, prepare_out, split

KNN_NEIGHBOURS = 5


def _knn_accuracy(train_codes, train_y, test_codes, test_y) -> float:
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=KNN_NEIGHBOURS).fit(train_codes.numpy(), train_y.numpy())
    return float(knn.score(test_codes.numpy(), test_y.numpy()))


def codes_2d(out: str | os.PathLike, *, data: str = "mnist", data_dir=None, runs=(), latent_dim: int = 2,
             models=("ae", "vae"), projection: str = "pca", epochs: int = 10, train_size: int = 0,
             test_size: int = 5000, seed: int = 0, threads: int = 0, progress: bool = True) -> Comparison:
    """PCA beside trained models' codes (``runs``: run directories to use, trained on ``data``;
    otherwise each of ``models`` is trained with ``latent_dim`` on ``data``)."""
    if projection not in PROJECTIONS:
        raise VaelabError(f"unknown projection {projection!r}; choose one of {', '.join(PROJECTIONS)}")
    start = time.perf_counter()
    out = prepare_out(out)
    train, test = split(data, data_dir, train_size, test_size)
    if train.y is None:
        raise VaelabError(f"{data} has no labels; the 2-D maps are coloured by label, choose a labelled dataset")
    knn_train = train.subset(slice(0, min(len(train), 10000)))
    pca = PCA(2).fit(train.x)
    maps = [("PCA", pca.encode(knn_train.x).float(), pca.encode(test.x).float(), 2)]
    models_used = [(str(r), load_run(r, data, train.shape)) for r in runs]
    if not runs:
        for name in models:
            cfg = {"latent_dim": latent_dim, "hidden": [512, 256]}
            tcfg = {"epochs": epochs, "seed": seed, "threads": threads, "val_size": 0}
            models_used.append((name, fit(name, train, out / "runs" / f"{name}-{latent_dim}", cfg, tcfg, progress)))
    for label, model in models_used:
        model.eval()
        encode = lambda x, m=model: m.encode(x).mean  # noqa: E731 — the deterministic code
        tr, te = batched(encode, knn_train.x).float(), batched(encode, test.x).float()
        dim = tr.shape[1]
        if dim > 2:
            both = project_2d(torch.cat([tr, te]), projection, seed)
            tr, te = both[: len(tr)], both[len(tr):]
        name = getattr(model, "name", label)
        maps.append((f"{name} ({dim}-D code{'' if dim == 2 else ', ' + projection})", tr, te, dim))
    rows = [{"map": title, "code_dim": dim, "knn_accuracy": _knn_accuracy(tr, knn_train.y, te, test.y)}
            for title, tr, te, dim in maps]
    figure = out / "codes_2d.png"
    scatter_panels([(te, test.y, title) for title, _, te, _ in maps], figure, class_names=train.classes)
    return Comparison(
        "codes-2d", f"2-D maps of {data} ({len(test)} test images)", ["map", "code_dim", "knn_accuracy"], rows,
        settings={"data": data, "n_train": len(train), "n_test": len(test), "projection": projection,
                  "epochs": epochs, "seed": seed, "runs": [str(r) for r in runs], "knn_k": KNN_NEIGHBOURS},
        figures=[str(figure)],
        notes=[f"knn_accuracy: {KNN_NEIGHBOURS}-nearest-neighbour classifier fitted on the 2-D points of up to "
               "10,000 training images, scored on the test points.",
               "VAE codes are posterior means; t-SNE (when chosen) is fitted on training and test points together."],
        seconds=time.perf_counter() - start)
