"""Spectrogram pictures of speech models: clips above their reconstructions, and conversion
panels (source / target reference / converted), each clip cut to its true frames."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def _figure(rows: int, cols: int, width: float = 2.4, height: float = 1.6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    return fig, axes


def _show(ax, x, title: str = "") -> None:
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    ax.imshow(x, origin="lower", aspect="auto", cmap="magma", vmin=-2.0, vmax=2.0, interpolation="nearest")
    ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def _png(fig) -> bytes:
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def save_figure(fig, path) -> Path:
    """A matplotlib figure as a PNG at ``path``, written atomically; the figure is closed."""
    from ..files import atomic_write_bytes

    atomic_write_bytes(path, _png(fig))
    return Path(path)


def save_spectrogram_pairs(model, batch, path) -> Path:
    """Row 1: the clips' log-mel spectrograms; row 2: the model's reconstructions."""
    from ..files import atomic_write_bytes

    atomic_write_bytes(path, spectrogram_pairs_png(model, batch))
    return Path(path)


def spectrogram_pairs_png(model, batch) -> bytes:
    """PNG bytes of :func:`save_spectrogram_pairs`'s picture."""
    x_hat = model.reconstruct(batch)
    lengths = batch.extras.get("lengths", torch.full((len(batch),), batch.x.shape[2]))
    fig, axes = _figure(2, len(batch))
    for i in range(len(batch)):
        t = int(lengths[i])
        _show(axes[0, i], batch.x[i, :, :t], "input" if i == 0 else "")
        _show(axes[1, i], x_hat[i, :, :t], "reconstruction" if i == 0 else "")
    return _png(fig)


def save_conversion_panels(panels: list[tuple[str, list[np.ndarray]]], path) -> Path:
    """One row per (title, [source, reference, converted]) of log-mel arrays (M, T)."""
    fig, axes = _figure(len(panels), 3)
    for r, (title, arrays) in enumerate(panels):
        for c, (name, x) in enumerate(zip(("source", "reference", "converted"), arrays)):
            _show(axes[r, c], x, f"{title}: {name}" if c == 0 else name)
    return save_figure(fig, path)
