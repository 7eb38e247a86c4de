"""Continuity and completeness of a latent space, seen side by side.

Completeness: does a random code decode to something plausible? Continuity: does a code
between two real images' codes decode to something between them, or to a blur? Four
panels answer both for one model: decoded random prior points, then real images A and B with
the decoded midpoints of their codes between them, tile for tile. A VAE's prior is where its
decoder was trained to look; an autoencoder has no prior, so its random codes come from a
Gaussian fitted to its codes of the data (N(0, I) would test nothing it was trained for).
"""
from __future__ import annotations

import os

import torch

from ..errors import VaelabError
from ..evaluation.likelihood import as_rows
from .latent import LatentView
from .manifold import _view, has_prior
from .panels import image_panels


def _partners(count: int, pick: torch.Tensor, y: torch.Tensor | None, g: torch.Generator) -> torch.Tensor:
    """A random partner row (of ``count``) for each picked row; of the same class where
    ``y`` is given (a conditional model decodes a midpoint given one class)."""
    if y is None:
        return torch.randint(0, count, (len(pick),), generator=g)
    out = []
    for i in pick.tolist():
        pool = torch.nonzero(y == y[i]).flatten()
        out.append(int(pool[torch.randint(0, len(pool), (1,), generator=g)]))
    return torch.tensor(out, dtype=torch.int64)


def _random_codes(view: LatentView, rows, n: int, g: torch.Generator) -> tuple[torch.Tensor, str]:
    """n random codes: from the prior, or from a Gaussian fitted to the codes of ``rows``."""
    eps = torch.randn(n, view.latent_dim, generator=g)
    if has_prior(view):
        return eps, "random codes ~ N(0, I), the prior"
    codes = view.encode(rows).double()
    if len(codes) <= view.latent_dim:
        raise VaelabError(f"fitting a Gaussian to {view.latent_dim}-D codes needs more than {view.latent_dim} "
                          f"images, got {len(codes)}; give more data")
    cov = torch.cov(codes.T) + 1e-6 * torch.eye(view.latent_dim, dtype=torch.float64)
    z = codes.mean(0) + eps.double() @ torch.linalg.cholesky(cov).T
    return z.float(), "random codes ~ Gaussian fit to codes"


def coverage_panels(model, data, n: int = 20, seed: int = 0) -> list[tuple[torch.Tensor, str]]:
    """(images, title) panels: decoded random codes; then n pairs of real images A and B
    with the decoded midpoints of their codes between them (repeatable for a seed)."""
    view = _view(model)
    rows = as_rows(data)
    if n < 1:
        raise VaelabError(f"--n must be at least 1 image per panel, got {n}")
    if len(rows) < 2:
        raise VaelabError(f"points between codes need at least 2 images, got {len(rows)}")
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(rows), generator=g)[:n]
    if view.conditional and rows.y is None:
        view.encode(rows[:1])  # the view's own one-line error: labelled images needed
    partner = _partners(len(rows), pick, rows.y if view.conditional else None, g)
    first, second = rows.select(pick), rows.select(partner)
    y = first.y if view.conditional else None
    middle = (view.encode(first) + view.encode(second)) / 2
    z, what = _random_codes(view, rows, len(pick), g)
    return [(view.decode(z, y), what),
            (first.x.float().clamp(0, 1), "real images A"),
            (view.decode(middle, y), "midpoints of the codes of A and B"),
            (second.x.float().clamp(0, 1), "real images B")]


def save_coverage(model, data, path: str | os.PathLike, n: int = 20, seed: int = 0) -> list[tuple[torch.Tensor, str]]:
    """The four coverage panels as one PNG; returns them."""
    panels = coverage_panels(model, data, n, seed)
    image_panels(panels, path)
    return panels
