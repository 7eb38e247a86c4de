"""Latent traversals: change one latent dimension slowly, keep the others, decode.

The lecture picture "different dimensions of z encode different interpretable features":
one row per latent dimension, most informative first (``LatentView.dimension_order``:
mean KL for a VAE, code variance for an autoencoder), ``steps`` values per row.

Where a row is centred and how far it reaches:

- around the prior (no image chosen): a model with a posterior spread (a VAE) varies
  z_j over 0 ± span (prior standard deviations), the other dimensions at 0; an
  autoencoder has no prior, so its rows are centred on the mean code of the data and
  reach ± span standard deviations of that dimension's codes over the data;
- around an image's code: its other dimensions are kept, z_j runs over its posterior mean
  ± span·σ_j (its posterior standard deviation) for a VAE, or ± span·(std of z_j over the
  data) for an autoencoder, whose code has no spread of its own.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from ..errors import VaelabError
from ..evaluation.likelihood import as_rows
from .captions import captioned_rows, save_gif
from .grids import save_png
from .latent import LatentView

DEFAULT_TOP = 10
MAX_STEPS = 200  # a picture row, not a data set: more would only exhaust memory


@dataclass
class Traversal:
    """The decoded rows of a traversal and what they vary."""

    images: torch.Tensor  # (rows, steps, C, H, W) in [0, 1]
    dims: list[int]  # the latent dimension row r varies
    scores: list[float]  # the ranking score of that dimension
    measure: str  # what the scores are
    values: torch.Tensor  # (rows, steps): the values z_dims[r] takes along row r
    centre: torch.Tensor  # (L,): the code every other dimension keeps
    around: str  # "the prior mean 0", "image 17", ...
    spread: str  # the unit of span

    def captions(self) -> list[str]:
        return [f"z{d}  {s:.3g}" for d, s in zip(self.dims, self.scores)]


def traversal(model, data, *, index: int | None = None, dims=None, top: int | None = None, steps: int = 9,
              span: float = 3.0, label: int | None = None) -> Traversal:
    """Traversal images of ``model`` (any model ``LatentView`` accepts). ``data`` (images, a
    Batch or a Dataset; labelled for a conditional model) ranks the dimensions and, with
    ``index``, holds the image to centre on. ``dims`` picks dimensions in a given order,
    else the ``top`` ranked ones (default 10). ``label`` is the class a conditional model
    decodes with (default: the chosen image's own label)."""
    view = LatentView(model)
    if not 2 <= steps <= MAX_STEPS:
        raise VaelabError(f"--steps must be from 2 (a traversal needs two ends) to {MAX_STEPS}, got {steps}")
    if not (math.isfinite(span) and span > 0):
        raise VaelabError(f"--span must be a positive number of standard deviations, got {span}")
    rows = as_rows(data)
    ranked = view.dimension_order(rows)
    chosen = _choose(view.latent_dim, ranked.order, dims, top)
    centre, scale, around, spread = _centre(view, rows, index)
    y = _label(view, rows, index, label)
    offsets = torch.linspace(-span, span, steps)
    values = torch.stack([centre[d] + offsets * scale[d] for d in chosen])
    codes = centre.repeat(len(chosen) * steps, 1)
    for r, d in enumerate(chosen):
        codes[r * steps:(r + 1) * steps, d] = values[r]
    images = view.decode(codes, y).reshape(len(chosen), steps, *view.image_shape)
    return Traversal(images, chosen, [ranked.scores[d] for d in chosen], ranked.measure, values, centre,
                     around, spread)


def save_traversal(model, path: str | os.PathLike, data, *, gif: str | os.PathLike | None = None,
                   **settings) -> Traversal:
    """Write the traversal as a PNG (one captioned row per dimension: ``z<j>  <score>``) and,
    with ``gif``, an animation whose frames sweep the values, all rows together."""
    t = traversal(model, data, **settings)
    save_png(captioned_rows(t.images, t.captions()), path)
    if gif is not None:
        save_gif([captioned_rows(t.images[:, k:k + 1], t.captions()) for k in range(t.images.shape[1])], gif)
    return t


def _choose(latent_dim: int, order: list[int], dims, top: int | None) -> list[int]:
    """The dimensions to show: ``dims`` as given (checked), else the first ``top`` of ``order``."""
    if dims is not None and top is not None:
        raise VaelabError("--dims names the dimensions itself; give it without --top")
    if dims is not None:
        dims = [int(d) for d in dims]
        bad = [d for d in dims if not 0 <= d < latent_dim]
        if not dims or bad:
            raise VaelabError(f"--dims {','.join(map(str, bad)) or '(none)'}: this model's latent dimensions run "
                              f"from 0 to {latent_dim - 1}")
        return dims
    top = min(DEFAULT_TOP, latent_dim) if top is None else top
    if top < 1:
        raise VaelabError(f"--top must be at least 1, got {top}")
    return order[:top]


def _centre(view: LatentView, rows, index: int | None) -> tuple[torch.Tensor, torch.Tensor, str, str]:
    """The code a traversal keeps, each dimension's unit of span, and both in words."""
    if index is not None and not 0 <= index < len(rows):
        raise VaelabError(f"--index {index}: the split has {len(rows)} images, so indices run from 0 to "
                          f"{len(rows) - 1}")
    spread = _posterior_std(view, rows[0:1]) if index is None else _posterior_std(view, rows[index:index + 1])
    has_spread = bool((spread > 0).any())
    if index is None and has_spread:
        zeros = torch.zeros(view.latent_dim)
        return zeros, torch.ones(view.latent_dim), "the prior mean 0", "prior standard deviations"
    codes = view.encode(rows) if index is None or not has_spread else None
    if index is None:
        return codes.mean(0), _std(codes), "the mean code of the data", "standard deviations of the codes over the data"
    centre = view.encode(rows[index:index + 1])[0]
    if has_spread:
        return centre, spread[0], f"image {index}", f"posterior standard deviations of image {index}"
    return centre, _std(codes), f"image {index}", "standard deviations of the codes over the data"


@torch.inference_mode()
def _posterior_std(view: LatentView, rows) -> torch.Tensor:
    """σ of q(z|x) per dimension (zeros for an autoencoder's point code)."""
    return view.model.encode(rows.to(view.device)).variance.float().sqrt().cpu()


def _std(codes: torch.Tensor) -> torch.Tensor:
    return codes.std(0) if len(codes) > 1 else torch.ones(codes.shape[1])


def _label(view: LatentView, rows, index: int | None, label: int | None):
    """The class a conditional model decodes with; a plain model takes none (the view says so)."""
    if label is not None or not view.conditional:
        return label
    if index is not None and rows.y is not None:
        return int(rows.y[index])
    raise VaelabError(f"this model draws images of a chosen class: give --label (0 to {view.num_classes - 1})"
                      " or an image to centre on with --index")
