"""A grid of image rows with a caption beside each row, and animated GIFs, written atomically.

Traversals and interpolations are read row by row ("this row varies z_3", "this row is
slerp in z"), so the caption sits left of its row in the PNG itself; the tiles to its
right are exactly ``grid(images, nrow=cols)``, so a picture's pixels can be checked
against the decoder's output.
"""
from __future__ import annotations

import io
import math
import os

import torch
from PIL import Image, ImageDraw, ImageFont

from ..errors import VaelabError
from ..files import atomic_write_bytes
from .grids import grid

FONT_SIZE = 12
GAP = 6  # pixels between the captions and the first tile


def _font():
    return ImageFont.load_default(size=FONT_SIZE)


def captioned_rows(rows: torch.Tensor, captions: list[str], pad: int = 2) -> Image.Image:
    """``rows`` (R, K, C, H, W) in [0, 1] as an R×K grid, with ``captions[r]`` left of row r."""
    if rows.ndim != 5 or len(captions) != rows.shape[0]:
        raise VaelabError(f"captioned_rows needs (rows, cols, C, H, W) images and one caption per row, "
                          f"got {tuple(rows.shape)} and {len(captions)} captions")
    r, k, _, h, w = rows.shape
    tiles = grid(rows.reshape(r * k, *rows.shape[2:]), nrow=k, pad=pad)
    scale = tiles.height // (r * (h + pad) + pad)
    font = _font()
    margin = GAP + max((math.ceil(font.getlength(c)) for c in captions), default=0)
    canvas = Image.new(tiles.mode, (margin + tiles.width, tiles.height), 255 if tiles.mode == "L" else (255,) * 3)
    canvas.paste(tiles, (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for i, caption in enumerate(captions):
        middle = (pad + i * (h + pad) + h / 2) * scale
        draw.text((0, middle), caption, fill=0 if tiles.mode == "L" else (0, 0, 0), font=font, anchor="lm")
    return canvas


def save_gif(frames: list[Image.Image], path: str | os.PathLike, ms_per_frame: int = 150) -> None:
    """An endlessly looping GIF of ``frames``, written atomically (Pillow merges a frame identical
    to the one before it into a longer one)."""
    if not frames:
        raise VaelabError("a GIF needs at least one frame")
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=ms_per_frame,
                   loop=0, optimize=False, disposal=1)
    atomic_write_bytes(path, buf.getvalue())
