"""Importance-sampled log-likelihood (Burda et al. 2016, Eq. 8 with k samples):

    log p(x) ≈ logsumexp_i [log p(x|z_i) + log p(z_i) − log q(z_i|x)] − log k,  z_i ~ q(z|x)

Points × samples are processed in chunks bounded by ``max_rows`` decoder evaluations,
combined with a running logsumexp, so any k fits in memory and exactly k samples are
always used. Runs under inference mode: no graph is built.
"""
from __future__ import annotations

import math

import torch

from ..errors import VaelabError

DEFAULT_MAX_ROWS = 4096  # decoder rows per chunk: large enough for GEMM, small enough for cache


@torch.inference_mode()
def log_likelihood(model, x: torch.Tensor, k: int, *, seed: int = 0,
                   max_rows: int = DEFAULT_MAX_ROWS) -> torch.Tensor:
    """Per-example estimates of log p(x) (float64) with exactly ``k`` importance samples."""
    if k < 1:
        raise VaelabError(f"the number of importance samples must be at least 1, got {k}")
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    points = max(1, min(x.shape[0], max_rows // k))
    per_chunk = min(k, max(1, max_rows // points))
    out = torch.empty(x.shape[0], dtype=torch.float64)
    for start in range(0, x.shape[0], points):
        xb = x[start:start + points].to(device, torch.float32)
        total = None
        done = 0
        while done < k:
            m = min(per_chunk, k - done)
            lse = torch.logsumexp(model.importance_log_weights(xb, m, generator=gen).double(), dim=1)
            total = lse if total is None else torch.logaddexp(total, lse)
            done += m
        out[start:start + xb.shape[0]] = (total - math.log(k)).cpu()
    return out
