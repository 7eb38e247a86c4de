"""Reconstruction metrics shared by PCA, the autoencoders and the VAEs.

Two squared-error conventions exist and both are named explicitly: ``sse_per_example``
sums over pixels (the project's "nats per example" convention, and the quantity PCA's
discarded eigenvalues add up to) and ``mse_per_example`` averages over pixels (what PSNR
is defined from). All results are float64.
"""
from __future__ import annotations

import torch

from ..errors import VaelabError


def _pair(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.shape != y.shape:
        raise VaelabError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.ndim < 2 or x.shape[0] == 0 or x[0].numel() == 0:
        raise VaelabError(f"x and y must be batches (N, ...) of at least one example, got shape {tuple(x.shape)}")
    return (x.detach().to("cpu", torch.float64).reshape(x.shape[0], -1),
            y.detach().to("cpu", torch.float64).reshape(y.shape[0], -1))


def sse_per_example(x, y) -> torch.Tensor:
    """Squared error summed over every value of each example (N,)."""
    x, y = _pair(x, y)
    return (x - y).square().sum(1)


def mse_per_example(x, y) -> torch.Tensor:
    """Squared error averaged over every value of each example (N,)."""
    x, y = _pair(x, y)
    return (x - y).square().mean(1)


def psnr(x, y, data_range: float = 1.0, reduction: str = "none") -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, 10 log10(data_range^2 / MSE), per image (N,).

    ``reduction="mean"`` returns the mean of the per-image values (the usual way PSNR is
    reported for a set; not the PSNR of the pooled MSE). Identical images give +inf.
    """
    if reduction not in ("none", "mean"):
        raise VaelabError(f"unknown reduction {reduction!r}; choose none or mean")
    if not data_range > 0:
        raise VaelabError(f"data_range must be positive (1.0 for pixels in [0, 1], 255 for uint8), got {data_range!r}")
    values = 10 * torch.log10(data_range ** 2 / mse_per_example(x, y))
    return values.mean() if reduction == "mean" else values
