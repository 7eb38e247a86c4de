"""The 2-D latent map: one point per test image at its code, coloured by its digit.

2-D codes are drawn as they are; wider codes through a projection (PCA, t-SNE, or UMAP
where ``umap-learn`` is installed). Data without labels gives one colour and a note, not
an error: the map of unlabelled data still shows its clusters.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import VaelabError
from ..evaluation.likelihood import as_rows
from ..files import atomic_write_bytes
from ..words import count
from .latent import LatentView
from .plots import project_2d, scatter_2d

PROJECTIONS = ("pca", "tsne", "umap")


@dataclass
class LatentMap:
    points: torch.Tensor  # (N, 2) what is drawn
    codes: torch.Tensor  # (N, L) the codes (posterior means, or an autoencoder's codes)
    labels: torch.Tensor | None  # (N,) int64 class of each point, None: uncoloured
    projection: str | None  # how codes became points; None for 2-D codes
    note: str | None  # said to the user (e.g. why the map has one colour)


def check_projection(projection: str) -> str:
    if projection not in PROJECTIONS:
        raise VaelabError(f"unknown projection {projection!r}; choose one of {', '.join(PROJECTIONS)}")
    return projection


def project(codes: torch.Tensor, projection: str = "pca", seed: int = 0) -> torch.Tensor:
    """(N, 2) points for (N, L) codes: 2-D codes as they are, else the chosen projection."""
    if check_projection(projection) != "umap" or codes.shape[1] == 2:
        return project_2d(codes, "pca" if projection == "umap" else projection, seed)
    try:
        import umap
    except ImportError:
        raise VaelabError("--projection umap needs the umap-learn package: pip install umap-learn "
                          "(or use --projection pca or tsne)") from None
    if len(codes) < 3:
        raise VaelabError(f"UMAP needs at least 3 points, got {len(codes)}")
    reducer = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(codes) - 1))
    points = reducer.fit_transform(codes.double().numpy())
    return torch.from_numpy(np.ascontiguousarray(points)).to(torch.float32)


def _class_labels(rows) -> tuple[torch.Tensor | None, str | None]:
    """The class of every row, or None and why the map has one colour."""
    y = rows.y
    if y is None:
        return None, "the data has no labels, so the map has one colour"
    if y.ndim != 1 or y.dtype != torch.int64:
        return None, "the data's labels are not class indices, so the map has one colour"
    if rows.labelled is not None and not bool(rows.labelled.all()):
        return None, "some images have no label, so the map has one colour"
    return y, None


def latent_map(model, data, projection: str = "pca", seed: int = 0) -> LatentMap:
    """Codes of ``data`` (images, a Batch or a Dataset) as 2-D points with their labels."""
    check_projection(projection)
    view = model if isinstance(model, LatentView) else LatentView(model)
    rows = as_rows(data)
    codes = view.encode(rows)
    labels, note = _class_labels(rows)
    if codes.shape[1] == 1:
        raise VaelabError("the latent space is 1-D; a 2-D map needs at least 2 latent dimensions")
    points = project(codes, projection, seed)
    return LatentMap(points, codes, labels, None if codes.shape[1] == 2 else projection, note)


def save_latent_map(m: LatentMap, path: str | os.PathLike, title: str | None = None, class_names=None) -> None:
    """The map as a PNG (a legend per class)."""
    size = m.codes.shape[1]
    title = title or count(len(m.points), "code") + ("" if m.projection is None else f" ({size}-D, {m.projection})")
    scatter_2d(m.points, m.labels, path, title=title, class_names=class_names)


def save_points(m: LatentMap, path: str | os.PathLike) -> None:
    """``points`` (N, 2), ``codes`` (N, L) and ``y`` (where labelled) as one .npz (no pickle)."""
    _check_npz(path)
    arrays = {"points": m.points.numpy(), "codes": m.codes.numpy()}
    if m.labels is not None:
        arrays["y"] = m.labels.numpy()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _check_npz(path) -> None:
    if Path(path).suffix != ".npz":
        raise VaelabError(f"--save-codes {path}: the points are written as one .npz of named arrays; "
                          "give a file name ending in .npz")


def draw_latent_map(run: str | os.PathLike, data: str, output: str | os.PathLike = "latent_map.png", *,
                    split: str = "test", limit: int = 0, projection: str = "pca", seed: int = 0,
                    data_dir=None, save_codes: str | os.PathLike | None = None) -> LatentMap:
    """``vaelab scatter``: the map of the ``split`` of ``data`` under the model in ``run``."""
    from ..io import load
    from .run_images import run_images

    check_projection(projection)
    if save_codes is not None:
        _check_npz(save_codes)  # before any work
    view = LatentView(load(run))
    images = run_images(run, view.model, data, split, data_dir, limit)
    m = latent_map(view, images, projection, seed)
    name = getattr(view.model, "name", type(view.model).__name__)
    how = "" if m.projection is None else f", {m.projection} of {m.codes.shape[1]}-D codes"
    save_latent_map(m, output, f"{name}: {count(len(m.points), split + ' image')} of {data}{how}", images.classes)
    if save_codes is not None:
        save_points(m, save_codes)
    return m
