"""Figures as PNG files: 2-D latent maps coloured by label, and curves.

Figures are built on matplotlib's object API with the Agg canvas (no pyplot, no display,
no global backend switch), rendered to memory and written atomically, so a plot never
leaves a half-written PNG and works on headless machines.
"""
from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import VaelabError
from ..files import atomic_write_bytes
from ..outputs import png_as


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _write_png(fig, path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, png_as(buf.getvalue(), path))


def _array(values, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise VaelabError(f"{name} must be numbers (an array, tensor or list)") from None


def _codes_2d(codes, labels, title: str) -> tuple[np.ndarray, np.ndarray | None]:
    codes = _array(codes, "codes")
    if codes.ndim != 2 or codes.shape[1] != 2:
        raise VaelabError(f"codes for {title or 'the scatter plot'} must be (N, 2), got shape {codes.shape}; "
                          "reduce larger codes with project_2d(codes) first")
    if labels is None:
        return codes, None
    labels = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if labels.shape != (codes.shape[0],) or labels.dtype.kind not in "iu":
        raise VaelabError(f"labels must be N = {codes.shape[0]} integers, got {labels.dtype} {labels.shape}")
    return codes, labels


def _scatter(ax, codes: np.ndarray, labels: np.ndarray | None, title: str | None, class_names, point_size: float) -> None:
    if labels is None:
        ax.scatter(codes[:, 0], codes[:, 1], s=point_size, c="tab:blue", alpha=0.6, linewidths=0)
    else:
        classes = np.unique(labels)
        cmap = _colormap(len(classes))
        for i, c in enumerate(classes):
            pick = labels == c
            name = class_names[c] if class_names is not None and c < len(class_names) else str(c)
            ax.scatter(codes[pick, 0], codes[pick, 1], s=point_size, color=cmap(i), alpha=0.7, linewidths=0, label=name)
        if len(classes) <= 20:
            ax.legend(markerscale=max(1.0, 30 / point_size) ** 0.5, fontsize="small", loc="upper left",
                      bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)  # beside the axes, hiding nothing
    if title:
        ax.set_title(title)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")


def _colormap(n: int):
    from matplotlib import colormaps

    name = "tab10" if n <= 10 else "tab20" if n <= 20 else "viridis"
    cmap = colormaps[name]
    return (lambda i: cmap(i)) if n <= 20 else (lambda i: cmap(i / max(1, n - 1)))


def scatter_2d(codes, labels, path: str | os.PathLike, title: str | None = None, class_names: Sequence[str] | None = None,
               point_size: float = 4.0) -> None:
    """The classic 2-D latent figure: one point per example, coloured by its label, with a
    legend (``labels`` None gives one colour). Writes a PNG to ``path`` atomically."""
    codes, labels = _codes_2d(codes, labels, title or "")
    fig = _figure(6.0, 5.5)
    _scatter(fig.add_subplot(), codes, labels, title, class_names, point_size)
    _write_png(fig, path)


def scatter_panels(panels: Sequence[tuple], path: str | os.PathLike, ncols: int | None = None,
                   class_names: Sequence[str] | None = None, point_size: float = 4.0) -> None:
    """Several 2-D latent maps side by side, e.g. PCA vs autoencoder vs VAE codes.

    ``panels`` is a list of ``(codes, labels, title)``; ``ncols`` defaults to all in one row
    (at most 4 per row).
    """
    if not panels:
        raise VaelabError("scatter_panels needs at least one (codes, labels, title) panel")
    checked = []
    for i, panel in enumerate(panels):
        if not isinstance(panel, (tuple, list)) or len(panel) != 3:
            raise VaelabError(f"panel {i} must be a (codes, labels, title) tuple")
        codes, labels = _codes_2d(panel[0], panel[1], str(panel[2]))
        checked.append((codes, labels, str(panel[2])))
    ncols = ncols or min(len(checked), 4)
    nrows = math.ceil(len(checked) / ncols)
    fig = _figure(4.8 * ncols, 4.5 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (codes, labels, title) in zip(axes.flat, checked):
        _scatter(ax, codes, labels, title, class_names, point_size)
    for ax in list(axes.flat)[len(checked):]:
        ax.set_visible(False)
    _write_png(fig, path)


def line_plot(xs, series: dict, path: str | os.PathLike, xlabel: str = "", ylabel: str = "", title: str | None = None,
              logy: bool = False) -> None:
    """Curves sharing one x axis: ``series`` maps a legend name to y values (same length
    as ``xs``; NaN leaves a gap). ``logy`` puts y on a log scale (values must be > 0)."""
    xs = _array(xs, "xs")
    if xs.ndim != 1 or len(xs) == 0:
        raise VaelabError(f"xs must be a non-empty 1-D sequence, got shape {xs.shape}")
    if not series:
        raise VaelabError("line_plot needs at least one series (a dict of name -> y values)")
    fig = _figure(6.4, 4.4)
    ax = fig.add_subplot()
    for name, ys in series.items():
        ys = _array(ys, f"series {name!r}")
        if ys.shape != xs.shape:
            raise VaelabError(f"series {name!r} has {ys.size} values but xs has {len(xs)}; give one y per x")
        if logy and (ys[np.isfinite(ys)] <= 0).any():
            raise VaelabError(f"series {name!r} has values <= 0, which a log y axis cannot show; use logy=False")
        ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3, label=str(name))
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize="small")
    _write_png(fig, path)


PROJECTIONS = ("pca", "tsne")


def project_2d(codes, method: str = "pca", seed: int = 0) -> torch.Tensor:
    """Codes (N, d) as (N, 2) float32 points for plotting; 2-D codes are returned as they are.

    ``pca`` keeps the two directions of largest variance (fast, linear, distances along
    them are meaningful); ``tsne`` is scikit-learn's t-SNE (PCA init, seeded), which keeps
    neighbourhoods but not global distances, and costs seconds per thousand points.
    """
    if method not in PROJECTIONS:
        raise VaelabError(f"unknown projection {method!r}; choose one of {', '.join(PROJECTIONS)}")
    codes = _array(codes, "codes")
    if codes.ndim != 2 or codes.shape[0] < 2:
        raise VaelabError(f"codes must be (N, d) with N >= 2, got shape {codes.shape}")
    if not np.isfinite(codes).all():
        raise VaelabError("codes hold NaN or infinite values; check the encoder output")
    if codes.shape[1] == 2:
        return torch.from_numpy(codes).to(torch.float32)
    if codes.shape[1] == 1:
        raise VaelabError("codes are 1-D; plot them with line_plot or a histogram instead of a 2-D map")
    if method == "pca":
        from ..baselines.pca import PCA

        return PCA(2).fit(codes).encode(codes).to(torch.float32)
    from sklearn.manifold import TSNE

    perplexity = min(30.0, max(2.0, (codes.shape[0] - 1) / 3))
    points = TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity).fit_transform(codes)
    return torch.from_numpy(np.ascontiguousarray(points)).to(torch.float32)
