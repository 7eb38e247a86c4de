"""Analogies of a label-conditional model: one digit's style written as every class.

A conditional VAE is given the class, so its z is free to hold what the class does not say:
slant, thickness, width, the way a stroke is drawn. Encoding a digit with its own label,
z = E[q(z|x, y)], and decoding that z with every label c, p(x|y=c, z), writes the same
"handwriting" as each class (the style/content split of the lecture notes). The grid has
one row per source image: the source first, then classes 0..K−1.
"""
from __future__ import annotations

import os

import torch

from ..data.batch import Batch
from ..errors import VaelabError
from .grids import grid, save_png
from .latent import LatentView


def analogy_view(model) -> LatentView:
    """The model's LatentView, refused in one line unless the model decodes given a class."""
    view = LatentView(model)
    if not view.conditional:
        name = getattr(model, "name", type(model).__name__)
        raise VaelabError(f"analogies need a label-conditional model such as cvae: a '{name}' has no label to "
                          "change, its z holds the class too")
    return view


def analogies(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N, K, C, H, W): source n's style z = E[q(z|x_n, y_n)] decoded as each class 0..K−1."""
    view = analogy_view(model)
    y = torch.as_tensor(y, dtype=torch.int64)
    if y.shape != (len(x),):
        raise VaelabError(f"give one class label per source image ({len(x)}), got shape {tuple(y.shape)}")
    z = view.encode(Batch(torch.as_tensor(x, dtype=torch.float32), y))
    return torch.stack([view.decode(z, c) for c in range(view.num_classes)], 1)


def analogy_grid(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N·(K+1), C, H, W) tiles, row by row: each source, then its K analogies."""
    made = analogies(model, x, y)
    rows = torch.cat([torch.as_tensor(x, dtype=made.dtype)[:, None], made], 1)
    return rows.reshape(-1, *made.shape[2:])


def save_analogies(model, x: torch.Tensor, y: torch.Tensor, path: str | os.PathLike) -> torch.Tensor:
    """Write the analogy grid as a PNG (K + 1 columns); returns the analogies as :func:`analogies`."""
    tiles = analogy_grid(model, x, y)
    columns = tiles.shape[0] // len(x)
    save_png(grid(tiles, nrow=columns), path)
    return tiles.reshape(len(x), columns, *tiles.shape[1:])[:, 1:]
