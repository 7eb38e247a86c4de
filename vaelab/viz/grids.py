"""PNG grids of images: samples, and inputs above their reconstructions."""
from __future__ import annotations

import inspect
import io
import math
import os

import numpy as np
import torch
from PIL import Image

from ..data.batch import as_batch
from ..errors import VaelabError
from ..files import atomic_write_bytes

# The colour between tiles (and of blank tiles): a mid grey, seen on black-background data
# (MNIST) and on white-background data alike, where white padding vanished.
SEPARATOR = 0.5


def grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2, scale: int | None = None) -> Image.Image:
    """Tile (N, C, H, W) images in [0, 1] into one PIL image (mid-grey padding, :data:`SEPARATOR`;
    nearest upscaling; by default small images are enlarged to about 56 pixels)."""
    images = images.detach().float().clamp(0, 1).cpu()
    n, c, h, w = images.shape
    scale = scale or max(1, math.ceil(56 / max(h, w)))
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    canvas = torch.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), SEPARATOR)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[:, top:top + h, left:left + w] = images[i]
    array = (canvas.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    img = Image.fromarray(array[:, :, 0] if c == 1 else array, mode="L" if c == 1 else "RGB")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img


def png_bytes(img: Image.Image) -> bytes:
    """A PIL image as PNG bytes (for a file, or embedded in a page)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def save_png(img: Image.Image, path: str | os.PathLike) -> None:
    """Write ``img`` in the format ``path``'s extension names (PNG, JPEG or WebP)."""
    from ..outputs import image_bytes

    atomic_write_bytes(path, image_bytes(img, path))


MAX_GRID_SIDE = 8192  # pixels: a grid wider or taller is more than image viewers open readily


def grid_capacity(shape, pad: int = 2) -> int:
    """The most images of (C, H, W) ``shape`` that :func:`grid` tiles within MAX_GRID_SIDE."""
    side = max(shape[1:])
    scale = max(1, math.ceil(56 / side))
    per_side = (MAX_GRID_SIDE // scale - pad) // (side + pad)
    return max(1, per_side) ** 2


def pairs_capacity(shape, nrow: int = 8, pad: int = 2) -> int:
    """The most images of (C, H, W) ``shape`` that :func:`reconstruction_grid` shows (rows of
    ``nrow`` inputs, each above its row of reconstructions) within MAX_GRID_SIDE."""
    side = max(shape[1:])
    scale = max(1, math.ceil(56 / side))
    rows = (MAX_GRID_SIDE // scale - pad) // (side + pad)
    return max(1, rows // 2) * nrow


def capped(n: int, shape, pairs: bool = False) -> int:
    """``n`` images, or as many as a grid can show (``pairs``: a reconstruction grid), with a
    warning (``sample -n 100000`` would be a 19,000-pixel-square PNG that Pillow refuses to open)."""
    import warnings

    from ..errors import VaelabWarning

    cap = pairs_capacity(shape) if pairs else grid_capacity(shape)
    if n > cap:
        warnings.warn(f"-n {n}: a grid of that many images would exceed {MAX_GRID_SIDE} pixels a side, more than "
                      f"image viewers open; drawing {cap}", VaelabWarning, stacklevel=2)
    return min(n, cap)


def require_capability(model, method: str, what: str) -> None:
    """One line, not an AttributeError, for a model that lacks ``method`` (a completion model
    cannot sample from nothing, say)."""
    if not hasattr(model, method):
        raise VaelabError(f"a '{getattr(model, 'name', type(model).__name__)}' model cannot {what} (it has no "
                          f"{method}); use a model that can")


def takes_label(model) -> bool:
    """Whether ``model.sample`` draws given a label (``sample(n, y=...)``)."""
    return "y" in inspect.signature(model.sample).parameters


def save_samples(model, path, n: int = 64, seed: int = 0, codes=None, label: int | None = None) -> None:
    """Decoder means for ``n`` prior samples, or for codes drawn from ``codes`` (an
    autoencoder's fitted Gaussian), or of class ``label`` (a conditional model); repeatable
    for a seed."""
    save_png(grid(sample_images(model, n, seed, codes, label)), path)


def sample_images(model, n: int = 64, seed: int = 0, codes=None, label: int | None = None) -> torch.Tensor:
    """The images :func:`save_samples` draws, as an (n, C, H, W) tensor."""
    require_capability(model, "sample", "draw images from nothing")
    if label is not None and not takes_label(model):
        raise VaelabError(f"a '{getattr(model, 'name', type(model).__name__)}' samples without labels; "
                          "drop --label (it is for label-conditional models such as cvae)")
    g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    kwargs = {"codes": codes} if codes is not None else {"y": label} if label is not None else {}
    return model.sample(n, generator=g, **kwargs)


def choose_images(count: int, n: int | None = None, indices=None, seed: int | None = None) -> list[int]:
    """Which of ``count`` images to show: ``indices`` as given, or ``n`` (default 32) drawn
    without replacement with ``seed``, else ``n`` spread over the split (:func:`spread_rows`):
    the first images of a split are a poor sample of it (one class, in a class-sorted file),
    and a user may want to look at particular ones."""
    if indices is not None and (n is not None or seed is not None):
        raise VaelabError("--indices names the images itself; give it without -n and --seed")
    if indices is not None:
        bad = [i for i in indices if not 0 <= i < count]
        if not indices or bad:
            raise VaelabError(f"--indices {','.join(map(str, bad or indices)) or '(none)'}: the split has {count} "
                              f"images, so indices run from 0 to {count - 1}")
        return list(indices)
    n = 32 if n is None else n
    if n < 1:
        raise VaelabError(f"-n must be at least 1, got {n}")
    if seed is None:
        return spread_rows(count, n)
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:n].tolist()


def spread_rows(count: int, n: int, seed: int = 0) -> list[int]:
    """``n`` of ``count`` rows in order, one drawn (by ``seed``) from each of ``n`` equal stretches
    of the split, so a file sorted by class still shows every class; all rows when ``n >= count``."""
    if n >= count:
        return list(range(count))
    starts = torch.arange(n + 1) * count // n
    offsets = torch.rand(n, generator=torch.Generator().manual_seed(seed)) * (starts[1:] - starts[:-1])
    return (starts[:-1] + offsets.long()).tolist()


def save_reconstructions(model, data, path, nrow: int | None = None) -> None:
    """Rows of inputs (a Batch, or an image tensor), each followed by a row of their
    reconstructions (a short last row is padded with blank tiles of the separator's grey, so
    every image is shown)."""
    save_png(reconstruction_grid(model, data, nrow), path)


def reconstruction_grid(model, data, nrow: int | None = None) -> Image.Image:
    """The picture :func:`save_reconstructions` writes, as a PIL image."""
    require_capability(model, "reconstruct", "reconstruct images")
    batch = as_batch(data).to(next(model.parameters()).device)
    recon = model.reconstruct(batch)
    x = batch.x
    nrow = nrow or min(len(x), 8)
    blank = torch.full(((-len(x)) % nrow, *x.shape[1:]), SEPARATOR, dtype=x.dtype, device=x.device)
    x, recon = torch.cat([x, blank]), torch.cat([recon.to(x.dtype), blank])
    pairs = []
    for i in range(0, len(x), nrow):
        pairs += [x[i:i + nrow], recon[i:i + nrow]]
    return grid(torch.cat(pairs), nrow=nrow)
