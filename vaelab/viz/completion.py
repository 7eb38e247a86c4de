"""The completion panel (Sohn et al. 2015, the lecture notes' figure): one row per input,
columns = the given part (hidden pixels grey), the truth, the mean completion, then
completions for several z ~ p(z|x) where the model draws any."""
from __future__ import annotations

import os

import torch

from ..data.batch import Batch
from .grids import grid, save_png

HIDDEN_GREY = 0.5  # how hidden pixels are shown in the input column


@torch.no_grad()
def completion_panel(model, batch: Batch, samples: int = 4, seed: int = 0) -> torch.Tensor:
    """(rows × columns, C, H, W) images in row order, ready for :func:`grid`; the column count
    is ``3 + samples`` for models with ``complete_samples``, else 3."""
    model.eval()
    device = next(model.parameters()).device
    rows = model.as_completion(batch.to(device)) if hasattr(model, "as_completion") else batch.to(device)
    mask = rows.extras["target_mask"].to(torch.bool).expand_as(rows.y)
    columns = [rows.x.masked_fill(mask, HIDDEN_GREY), rows.y.float(), model.complete(rows)]
    if samples and hasattr(model, "complete_samples"):
        g = torch.Generator(device=device).manual_seed(seed)
        columns += list(model.complete_samples(rows, samples, generator=g).unbind(1))
    return torch.stack(columns, 1).flatten(0, 1).cpu()


def save_completion_panel(model, batch: Batch, path: str | os.PathLike, samples: int = 4, seed: int = 0) -> int:
    """Write the panel to ``path`` (PNG, atomically); returns its column count."""
    images = completion_panel(model, batch, samples, seed)
    columns = len(images) // len(batch)
    save_png(grid(images, nrow=columns), path)
    return columns
