"""Image grids side by side under titles, e.g. AE samples beside VAE samples."""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import VaelabError
from .grids import grid
from .plots import _figure, _write_png


def image_panels(panels: Sequence[tuple[torch.Tensor, str]], path: str | os.PathLike,
                 nrow: int | None = None) -> None:
    """One titled grid per ``(images, title)`` (images N×C×H×W in [0, 1]) in a row; PNG, atomic."""
    if not panels:
        raise VaelabError("image_panels needs at least one (images, title) pair")
    fig = _figure(3.6 * len(panels), 4.0)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (images, title) in zip(axes, panels):
        if images.ndim != 4:
            raise VaelabError(f"panel {title!r}: images must be N×C×H×W, got shape {tuple(images.shape)}")
        array = np.asarray(grid(images, nrow=nrow, scale=1))
        ax.imshow(array, cmap="gray" if array.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title, fontsize="medium")
        ax.set_axis_off()
    _write_png(fig, path)
