"""Completion: the conditional log-likelihood of the hidden pixels given the visible ones.

A model has the ``complete`` capability when it implements both

- ``complete(batch) -> Tensor``: ``batch.x`` (images with pixels hidden) completed, (B, C, H, W);
  the target pixels are ``batch.extras["target_mask"]`` (bool, True where a pixel is to be
  predicted) and ``batch.y`` holds the whole image;
- ``completion_log_weights(batch, k, generator=...) -> Tensor`` (B, k): importance log-weights
  whose logsumexp − log k estimates log p(y[target] | x), summed over the target pixels
  only (the given pixels are never scored). ``generator`` is one generator per row, as for
  ``importance_log_weights``.

Sohn, Lee & Yan (2015) report this figure as the negative conditional log-likelihood (CLL)
of the hidden quadrants. Its names here say what it is: ``target_cnll`` (nats per example),
``target_bits_per_dim`` (over the target pixels only) and ``target_mse`` (Σ over target
pixels of (y − completion)², per example).
"""
from __future__ import annotations

import math

import torch

from ..data.batch import Batch
from ..errors import VaelabError
from .likelihood import DEFAULT_MAX_ROWS, estimate, on_device

TARGET_MASK = "target_mask"


def can_complete(model) -> bool:
    return hasattr(model, "complete") and hasattr(model, "completion_log_weights")


def target_mask(batch: Batch) -> torch.Tensor:
    """The bool mask of target pixels, broadcast to y's shape; one line when it is missing."""
    if batch.y is None or TARGET_MASK not in batch.extras:
        raise VaelabError(f"completion needs the whole image as y and extras[{TARGET_MASK!r}] marking the pixels "
                          "to predict; derive the data with vaelab.data.derive.quadrant_mask")
    return batch.extras[TARGET_MASK].to(torch.bool).expand_as(batch.y)


def target_squared_error(model, batch: Batch) -> torch.Tensor:
    """Σ over target pixels of (y − completion)², one value per row."""
    mask = target_mask(batch)
    diff = (model.complete(batch).float() - batch.y.float()) * mask
    return diff.square().flatten(1).sum(1)


def conditional_log_likelihood(model, rows: Batch, k: int, *, seed: int = 0, max_rows: int = DEFAULT_MAX_ROWS,
                               progress: bool = False) -> torch.Tensor:
    """Per-row estimates of log p(y[target] | x) (float64) with exactly ``k`` samples."""
    target_mask(rows)
    return estimate(model, model.completion_log_weights, rows, k, seed=seed, max_rows=max_rows,
                    progress=progress, what="conditional log-likelihood of target pixels")


def completion_metrics(model, rows: Batch, k: int, *, seed: int, progress: bool, **kwargs) -> dict:
    """``target_cnll`` (± ``target_cnll_stderr``) and ``target_bits_per_dim`` over the target pixels;
    ``target_nelbo`` (the bound) for models that have one."""
    log_p = conditional_log_likelihood(model, rows, k, seed=seed, progress=progress, **kwargs)
    n = len(rows)
    pixels = float(target_mask(rows).flatten(1).sum(1).double().mean())
    cnll = float(-log_p.mean())
    bound = {"target_nelbo": completion_bound(model, rows, seed)} if hasattr(model, "completion_nelbo") else {}
    return {**bound, "target_cnll": cnll,
            "target_cnll_stderr": float(log_p.std() / math.sqrt(n)) if n > 1 else 0.0,
            "target_pixels": pixels,
            "target_bits_per_dim": cnll / (max(pixels, 1.0) * math.log(2))}


@torch.inference_mode()
def completion_bound(model, rows: Batch, seed: int, batch_size: int = 500) -> float:
    """The mean negative ELBO over the target pixels (``model.completion_nelbo``): a bound
    on −log p(y|x), never the CLL itself; seeded, so it repeats."""
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    total = sum(float(model.completion_nelbo(on_device(rows[i:i + batch_size], device), generator=g).sum())
                for i in range(0, len(rows), batch_size))
    return total / len(rows)
