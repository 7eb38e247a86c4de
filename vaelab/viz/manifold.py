"""The decoded latent manifold, the class-fixed style grid, and continuity / completeness.

Kingma & Welling's figure decodes an n×n grid of codes z = Φ⁻¹(u), u = (k + ½)/n evenly
spaced in (0, 1): each cell holds the same prior mass, so the picture shows the decoder
where the prior says codes lie, not on an arbitrary square. With more than two latent
dimensions one plane is drawn (by default the two that carry the most information) and the
other coordinates sit at the prior mean 0. An autoencoder has no prior: its grid takes the
same quantiles of its own codes instead. A label-conditional model decodes the same grid
once per class: the style grid, where the class is fixed and z varies the handwriting.

Continuity and completeness (do nearby codes decode alike, does every code decode to
something plausible) are shown by decoding random prior points and points between the
codes of two real images, beside those real images.
"""
from __future__ import annotations

import math
import os
import textwrap
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import VaelabError, VaelabWarning
from ..words import count
from .grids import grid
from .latent import LatentView
from .plots import _figure, _write_png

MAX_SIDE = 50  # tiles per side: beyond this the tiles are too small to read


@dataclass
class Manifold:
    """Decoded grids of one plane of the latent space.

    Tile ``r * n + c`` (row r from the top, column c from the left) decodes
    ``codes[r * n + c]``: coordinate ``dims[0]`` = ``across[c]`` and ``dims[1]`` =
    ``up[n - 1 - r]`` (so ``dims[1]`` grows upwards, as on a plot), the rest at ``rest``.
    """

    images: torch.Tensor  # (panels, n*n, C, H, W) in [0, 1]: one grid per class, or one
    codes: torch.Tensor  # (n*n, L)
    dims: tuple[int, int]
    across: torch.Tensor  # (n,) values of z[dims[0]], left to right
    up: torch.Tensor  # (n,) values of z[dims[1]], bottom to top
    rest: torch.Tensor  # (L,) the other coordinates (entries dims[0], dims[1] unused)
    labels: list[int] | None  # the class of each panel (label-conditional models)
    caption: list[str]  # how the grid was placed, one line each

    @property
    def n(self) -> int:
        return len(self.across)


def _view(model) -> LatentView:
    return model if isinstance(model, LatentView) else LatentView(model)


def has_prior(view: LatentView) -> bool:
    """Whether the model defines p(z) (a VAE does; an autoencoder's codes follow no prior)."""
    return callable(getattr(view.model, "prior", None))


def grid_side(n: int) -> int:
    """``n`` checked: at least 2, and capped at MAX_SIDE with a warning."""
    if not isinstance(n, int) or n < 2:
        raise VaelabError(f"--n must be at least 2 (tiles per side of the grid), got {n}")
    if n > MAX_SIDE:
        warnings.warn(f"--n {n} is more tiles per side than can be read; drawing {MAX_SIDE}×{MAX_SIDE}", VaelabWarning)
        return MAX_SIDE
    return n


def choose_plane(view: LatentView, dims: Sequence[int] | None, data=None) -> tuple[tuple[int, int], str]:
    """The two dimensions to draw and why: ``dims`` as given, else the two ranked highest by
    ``LatentView.dimension_order`` on ``data``, else 0 and 1."""
    size = view.latent_dim
    if size < 2:
        raise VaelabError("the latent space is 1-D; a manifold grid needs at least 2 latent dimensions")
    if dims is not None:
        dims = tuple(int(d) for d in dims)
        if len(dims) != 2:
            raise VaelabError(f"--dims takes two latent dimensions I,J, got {len(dims)} ({','.join(map(str, dims))})")
        bad = [d for d in dims if not 0 <= d < size]
        if bad:
            raise VaelabError(f"--dims {dims[0]},{dims[1]}: dimension {bad[0]} is outside the latent space "
                              f"(dimensions run from 0 to {size - 1})")
        if dims[0] == dims[1]:
            raise VaelabError(f"--dims {dims[0]},{dims[1]} names one dimension twice; give two different ones")
        return dims, "plane given by --dims"
    if size == 2:
        return (0, 1), "the whole 2-D latent space"
    if data is None:
        return (0, 1), "plane of dimensions 0 and 1 (give --data to choose the two most informative)"
    ranked = view.dimension_order(data)
    return (ranked.order[0], ranked.order[1]), f"the two dimensions of highest {ranked.measure}"


def _quantiles(n: int) -> torch.Tensor:
    return (torch.arange(n, dtype=torch.float64) + 0.5) / n


def grid_values(n: int, codes: torch.Tensor | None = None) -> torch.Tensor:
    """n values along one axis: Φ⁻¹((k + ½)/n) of N(0, 1), or the same quantiles of ``codes`` (1-D)."""
    u = _quantiles(n)
    if codes is None:
        return torch.special.ndtri(u).float()
    return torch.quantile(codes.double(), u).float()


def grid_codes(across: torch.Tensor, up: torch.Tensor, dims: tuple[int, int], rest: torch.Tensor) -> torch.Tensor:
    """(n*n, L) codes in tile order: row r from the top, column c from the left (see Manifold)."""
    n = len(across)
    z = rest.float().repeat(n * n, 1)
    rows, cols = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    z[:, dims[0]] = across[cols.reshape(-1)]
    z[:, dims[1]] = up[n - 1 - rows.reshape(-1)]
    return z


def _placement(view: LatentView, n: int, dims: tuple[int, int], data) -> tuple:
    """(across, up, rest, caption line): axis values and the resting point, from the prior
    or from the codes of ``data``."""
    size = view.latent_dim
    if has_prior(view):
        rest_note = "; the other coordinates at 0 (the prior mean)" if size > 2 else ""
        return (grid_values(n), grid_values(n), torch.zeros(size),
                f"grid: z = Φ⁻¹((k + ½)/{n}) of N(0, 1), equal prior mass per cell{rest_note}")
    if data is None:
        raise VaelabError(f"a '{_name(view)}' has no prior, so its grid spans the range of its codes: "
                          "give data (--data SPEC) to encode")
    codes = view.encode(data)
    rest_note = "; the other coordinates at the codes' median" if size > 2 else ""
    return (grid_values(n, codes[:, dims[0]]), grid_values(n, codes[:, dims[1]]), codes.median(0).values,
            f"grid: quantiles (k + ½)/{n} of the codes of {count(len(codes), 'image')} "
            f"(an autoencoder has no prior){rest_note}")


def _classes(view: LatentView, by_class: bool, label: int | None) -> list[int] | None:
    """The classes to decode with: every one, or ``label``; None for a model without labels."""
    if not view.conditional:
        if by_class or label is not None:
            flag = "--by-class" if by_class else "--label"
            raise VaelabError(f"a '{_name(view)}' decodes without labels; drop {flag} (the style grid is for "
                              "label-conditional models such as cvae)")
        return None
    if label is None:
        return list(range(view.num_classes))
    if not 0 <= label < view.num_classes:
        raise VaelabError(f"--label {label} is outside this model's classes 0..{view.num_classes - 1}")
    return [int(label)]


def decoded_manifold(model, n: int = 20, dims: Sequence[int] | None = None, data=None, label: int | None = None,
                     by_class: bool = False) -> Manifold:
    """Decode an n×n grid over one plane of the latent space (see the module docstring).

    ``data`` (images, a Batch or a Dataset) ranks the dimensions when ``dims`` is None and
    gives an autoencoder's grid its range. A label-conditional model decodes the grid once
    per class (``by_class``; that is also its default) or for ``label`` alone.
    """
    view = _view(model)
    n = grid_side(n)
    classes = _classes(view, by_class, label)
    plane, why = choose_plane(view, dims, data)
    across, up, rest, spans = _placement(view, n, plane, data)
    z = grid_codes(across, up, plane, rest)
    images = torch.stack([view.decode(z, c) for c in classes]) if classes else view.decode(z)[None]
    return Manifold(images, z, plane, across, up, rest, classes, [why, spans])


def save_manifold(manifold: Manifold, path: str | os.PathLike, title: str | None = None, ncols: int = 5) -> None:
    """The grid(s) as a PNG with the axis values of both dimensions and the caption lines."""
    m = manifold
    panels = len(m.images)
    ncols = min(panels, ncols)
    nrows = math.ceil(panels / ncols)
    arrays = [np.asarray(grid(g, nrow=m.n, pad=0, scale=1)) for g in m.images]
    side = max(3.0, arrays[0].shape[1] / 100)
    width = ncols * (side + 1.0)
    caption = [textwrap.fill(line, int(width * 14)) for line in m.caption]  # about 14 small characters an inch
    lines = sum(line.count("\n") + 1 for line in caption)
    fig = _figure(width, nrows * (side + 0.9) + 0.4 + 0.2 * lines)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, (ax, array) in enumerate(zip(axes.flat, arrays)):
        _draw_grid(ax, array, m)
        if m.labels is not None:
            ax.set_title(f"class {m.labels[k]}", fontsize="medium")
    for ax in list(axes.flat)[panels:]:
        ax.set_visible(False)
    fig.suptitle(title or f"decoded manifold: z[{m.dims[0]}] across, z[{m.dims[1]}] up")
    fig.supxlabel("\n".join(caption), fontsize="small")
    _write_png(fig, path)


def _draw_grid(ax, array: np.ndarray, m: Manifold) -> None:
    n = m.n
    ax.imshow(array, cmap="gray" if array.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest",
              extent=(0, n, 0, n))
    ticks = sorted({round(k * (n - 1) / 4) for k in range(5)})
    ax.set_xticks([k + 0.5 for k in ticks], [f"{float(m.across[k]):.2g}" for k in ticks], fontsize="small")
    ax.set_yticks([k + 0.5 for k in ticks], [f"{float(m.up[k]):.2g}" for k in ticks], fontsize="small")
    ax.set_xlabel(f"z[{m.dims[0]}]")
    ax.set_ylabel(f"z[{m.dims[1]}]")


def _name(view: LatentView) -> str:
    return getattr(view.model, "name", type(view.model).__name__)


def draw_manifold(run: str | os.PathLike, output: str | os.PathLike | None = None, *, n: int = 20,
                  dims: Sequence[int] | None = None, data: str | None = None, data_dir=None, split: str = "test",
                  limit: int = 0, by_class: bool = False, label: int | None = None, coverage: bool = False,
                  seed: int = 0) -> tuple[str, list[str]]:
    """``vaelab manifold``: the decoded manifold (or style grids) of the model in ``run`` as a
    PNG, or with ``coverage`` the continuity / completeness panels on ``data``. Returns the
    file written (default manifold.png or coverage.png) and lines saying what it shows."""
    from ..io import load
    from .coverage import save_coverage
    from .run_images import run_images

    view = LatentView(load(run))
    images = run_images(run, view.model, data, split, data_dir, limit) if data else None
    if coverage:
        if images is None:
            raise VaelabError("--coverage decodes between the codes of real images; give --data SPEC")
        if by_class or label is not None or dims is not None:
            raise VaelabError("--by-class, --label and --dims shape the grid; --coverage draws no grid, drop them")
        output = str(output or "coverage.png")
        panels = save_coverage(view, images, output, n=n, seed=seed)
        return output, [f"panels: {', '.join(title for _, title in panels)}"]
    output = str(output or "manifold.png")
    m = decoded_manifold(view, n, dims, images, label, by_class)
    what = "style grids (class fixed, z varied)" if m.labels is not None else "decoded manifold"
    save_manifold(m, output, title=f"{_name(view)}: {what}, z[{m.dims[0]}] across, z[{m.dims[1]}] up")
    return output, m.caption
