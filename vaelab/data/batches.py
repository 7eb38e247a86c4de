"""Minibatches drawn from in-memory tensors: one permutation per epoch, one index per step.

This replaces a per-sample Dataset + collate path, which dominates CPU time for small
models. Dynamic binarization (x ~ Bernoulli(grey level), fresh every time an image is
used) happens here, from its own seeded generator so it can be checkpointed.
"""
from __future__ import annotations

import math
from typing import Iterator

import torch

BINARIZE = ("none", "dynamic", "static")


class Batches:
    """Iterate over shuffled minibatches of ``x`` (and ``y``) for one epoch at a time."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None, batch_size: int, *,
                 order: torch.Generator, binarize: torch.Generator | None = None,
                 drop_last: bool = False):
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.order, self.binarize = order, binarize
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = self.x.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        return self.epoch()

    def epoch(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """One epoch's batches from batch ``start`` on. The permutation is drawn whole, so a
        resumed epoch sees the same order; skipped batches draw no binarization noise."""
        n = self.x.shape[0]
        perm = torch.randperm(n, generator=self.order).to(self.x.device)
        for i in range(start, len(self)):
            idx = perm[i * self.batch_size:(i + 1) * self.batch_size]
            xb = self.x.index_select(0, idx)
            if self.binarize is not None:
                xb = binarize_with(xb, self.binarize)
            yield xb, (None if self.y is None else self.y.index_select(0, idx))


def binarize_with(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Bernoulli(x) drawn on the generator's device (CPU generators for CPU data)."""
    if x.device.type == generator.device.type:
        return torch.bernoulli(x, generator=generator)
    return torch.bernoulli(x.cpu(), generator=generator).to(x.device)

