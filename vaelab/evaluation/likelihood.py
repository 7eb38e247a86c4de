"""Importance-sampled log-likelihood (Burda et al. 2016, Eq. 8 with k samples):

    log p(x) ≈ logsumexp_i [log p(x|z_i) + log p(z_i) − log q(z_i|x)] − log k,  z_i ~ q(z|x)

Points × samples are processed in chunks bounded by ``max_rows`` decoder evaluations,
combined with a running logsumexp, so any k fits in memory and exactly k samples are
always used. Each image draws from its own generator, seeded from (seed, image index),
so the estimate does not depend on the chunk size or on how many threads share the
work. Runs under inference mode: no graph is built. ``progress`` reports finished images
after each point batch, outside the sampling, so it cannot change an estimate.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

from ..data.batch import Batch
from ..data.sources import Dataset
from ..errors import VaelabError
from ..threads import threads
from .progress import Progress

DEFAULT_MAX_ROWS = 4096  # decoder rows per chunk: large enough for GEMM, small enough for cache


def image_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for image ``index`` under ``seed``."""
    digest = hashlib.sha256(f"vaelab-nll:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _batch(log_weights, xb: Batch, first: int, k: int, seed: int, per_chunk: int) -> torch.Tensor:
    gens = [torch.Generator(device=xb.x.device).manual_seed(image_seed(seed, first + i)) for i in range(len(xb))]
    total = None
    done = 0
    while done < k:
        m = min(per_chunk, k - done)
        lse = torch.logsumexp(log_weights(xb, m, generator=gens).double(), dim=1)
        total = lse if total is None else torch.logaddexp(total, lse)
        done += m
    return (total - math.log(k)).cpu()


def on_device(batch: Batch, device) -> Batch:
    """``batch`` on ``device`` with float32 inputs (labels and masks keep their dtypes; int64
    inputs are word ids and stay so)."""
    moved = batch.to(device)
    return moved if moved.x.dtype == torch.int64 else moved.with_x(moved.x.to(torch.float32))


@torch.inference_mode()
def _sequential(log_weights, device, x: Batch, first: int, k: int, seed: int, max_rows: int,
                done: Callable[[int], None] | None = None) -> torch.Tensor:
    """Estimates for the rows of ``x`` (whose first has index ``first``), one point batch
    after another; ``done(n)`` is told after each batch of n images."""
    points = max(1, min(len(x), max_rows // k))
    per_chunk = min(k, max(1, max_rows // points))
    parts = []
    for s in range(0, len(x), points):
        parts.append(_batch(log_weights, on_device(x[s:s + points], device), first + s, k, seed, per_chunk))
        if done is not None:
            done(parts[-1].shape[0])
    return torch.cat(parts)


def log_likelihood(model, data, k: int, *, seed: int = 0,
                   max_rows: int = DEFAULT_MAX_ROWS, progress: bool = False) -> torch.Tensor:
    """Per-example estimates of log p(x) (float64) with exactly ``k`` importance samples.

    ``data`` is a tensor of images, a :class:`~vaelab.data.batch.Batch` or a Dataset; its
    labels reach ``model.importance_log_weights``, so for a label-conditional model
    (``model.conditional``) the estimate is log p(x|y).

    On the CPU with several threads, contiguous shares of the images run concurrently,
    one thread each: the chunks are too small for torch's intra-op threads to pay off
    (about 15 % faster on two cores). ``progress`` reports images done, with rate and
    ETA, on stderr (see :mod:`vaelab.evaluation.progress`).
    """
    return estimate(model, model.importance_log_weights, as_rows(data), k, seed=seed, max_rows=max_rows,
                    progress=progress, what="log-likelihood")


def as_rows(data) -> Batch:
    """A Batch of every row of a tensor, a Batch or a Dataset (its labels, mask and extras kept)."""
    if isinstance(data, Batch):
        return data
    if isinstance(data, torch.Tensor):
        return Batch(data)
    if isinstance(data, Dataset):
        return data.batch()
    raise VaelabError(f"expected images (a tensor), a Batch or a Dataset, got {type(data).__name__}")


def estimate(model, log_weights, rows: Batch, k: int, *, seed: int = 0, max_rows: int = DEFAULT_MAX_ROWS,
             progress: bool = False, what: str = "log-likelihood") -> torch.Tensor:
    """logsumexp_i w_i − log k per row for ``log_weights(batch, m, generator=[one per row])``
    returning (B, m) log-weights: the engine of every importance-sampled figure (one seeded
    stream per row, chunked, threaded; see the module docstring)."""
    if k < 1:
        raise VaelabError(f"the number of importance samples must be at least 1, got {k}")
    if not progress:
        return _estimate(model, log_weights, rows, k, seed, max_rows, None)
    with Progress(len(rows), f"{what} (k = {k})") as bar:
        return _estimate(model, log_weights, rows, k, seed, max_rows, bar.update)


def _estimate(model, log_weights, x: Batch, k: int, seed: int, max_rows: int,
              done: Callable[[int], None] | None) -> torch.Tensor:
    device = next(model.parameters()).device
    points = max(1, min(len(x), max_rows // k))
    workers = min(torch.get_num_threads(), math.ceil(len(x) / points)) if device.type == "cpu" else 1
    if workers <= 1:
        return _sequential(log_weights, device, x, 0, k, seed, max_rows, done)
    share = math.ceil(len(x) / points / workers) * points  # whole point batches per thread
    with threads(1), ThreadPoolExecutor(workers) as pool:  # parallel over point batches, not inside ops
        parts = pool.map(lambda s: _sequential(log_weights, device, x[s:s + share], s, k, seed, max_rows, done),
                         range(0, len(x), share))
        return torch.cat(list(parts))
