"""Image grids: the tiles stay apart on black-background and white-background data alike."""
from __future__ import annotations

import numpy as np
import torch

from vaelab.viz.grids import grid, reconstruction_grid


def _tiles_and_gaps(img, n: int, side: int, pad: int):
    """The pixel values inside the tiles and those between them, of an n-tile row at scale 1."""
    a = np.asarray(img).astype(int)
    inside = np.zeros(a.shape, bool)
    for i in range(n):
        inside[pad:pad + side, pad + i * (side + pad):pad + i * (side + pad) + side] = True
    return a[inside], a[~inside]


def test_the_separator_shows_on_black_and_on_white_backgrounds():
    for background in (0.0, 1.0):
        images = torch.full((3, 1, 4, 4), background)
        tiles, gaps = _tiles_and_gaps(grid(images, nrow=3, pad=2, scale=1), 3, 4, 2)
        assert (tiles == round(background * 255)).all()  # the images themselves are untouched
        assert np.abs(gaps - round(background * 255)).min() >= 100  # a gap stands out from the data
    rgb = np.asarray(grid(torch.ones(2, 3, 4, 4), nrow=2, pad=1, scale=1)).astype(int)
    assert np.abs(rgb[0] - 255).min() >= 100  # the top border of a white RGB pair


class _Copy(torch.nn.Module):
    """A model whose reconstruction is its input."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def reconstruct(self, batch):
        return batch.x


def test_blank_tiles_of_a_short_row_are_the_separator_not_a_white_image():
    white = torch.ones(3, 1, 4, 4)  # three white images in rows of two: one blank tile per row pair
    a = np.asarray(reconstruction_grid(_Copy(), white, nrow=2)).astype(int)
    scale = a.shape[0] // (4 * (4 + 2) + 2)
    blank = a[(2 + 2 * 6) * scale:(2 + 2 * 6 + 4) * scale, (2 + 6) * scale:(2 + 6 + 4) * scale]
    assert blank.size and np.abs(blank - 255).min() >= 100
