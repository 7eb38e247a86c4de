"""Samplers: which rows make each training step's :class:`~vaelab.data.batch.Batch`.

A sampler holds its data as tensors and draws every epoch's order at the epoch's start from
its own generators, so the states of those generators at an epoch's start (``epoch_state``)
are all a checkpoint needs to replay the epoch exactly from any step. One ``randperm`` and
an ``index_select`` per step: no per-sample Dataset and collate path.

Dynamic binarization (x ~ Bernoulli(grey level), fresh every time an image is used) is
drawn here from its own generator, for the whole global batch, so a run sharded over ranks
sees exactly the numbers one process would.

Sharding (``rank``, ``world``): every rank draws the same global batch and keeps a
contiguous share of it, so ``--batch-size`` stays the global batch. ``share`` tells the
trainer what fraction of the global batch a rank holds, to weight its mean loss so that
DDP's gradient average is the global batch's mean gradient even when shares differ.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator

import torch

from ..errors import VaelabError
from ..files import read_json
from .batch import Batch

BINARIZE = ("none", "dynamic", "static")


def resolve_binarize(setting: str, model, run: str | os.PathLike | None = None) -> str:
    """``setting``, or for "auto": what the run in ``run`` recorded (inputs are then encoded
    the way its encoder saw them), else dynamic for a Bernoulli likelihood and none otherwise.
    The one home of the "auto" rule: training, evaluation, codes and the CLI all ask here."""
    if setting != "auto":
        return setting
    recorded = _recorded_binarize(Path(run)) if run is not None else None
    if recorded is not None:
        return recorded
    return "dynamic" if getattr(getattr(model, "config", None), "likelihood", None) == "bernoulli" else "none"


def _recorded_binarize(run: Path) -> str | None:
    """The binarization ``run.json`` resolved at training time (None: no usable record)."""
    path = run / "run.json"
    if not path.is_file():
        return None
    try:
        value = read_json(path, "run record").get("resolved", {}).get("binarize")
    except (VaelabError, AttributeError):
        return None
    return value if value in BINARIZE else None


def binarize_with(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Bernoulli(x) drawn on the generator's device (CPU generators for CPU data)."""
    if x.device.type == generator.device.type:
        return torch.bernoulli(x, generator=generator)
    return torch.bernoulli(x.cpu(), generator=generator).to(x.device)


def _shard(n: int, rank: int, world: int) -> slice:
    """Rank ``rank``'s contiguous share of ``n`` rows (shares differ by at most one row)."""
    return slice(rank * n // world, (rank + 1) * n // world)


class Sampler:
    """Base: generators, sharding and binarization shared by every sampler."""

    def __init__(self, seed: int, binarize: bool, rank: int = 0, world: int = 1):
        if not 0 <= rank < world:
            raise VaelabError(f"rank {rank} is outside a world of {world} processes")
        self.rank, self.world = rank, world
        self.generators = {"order": torch.Generator().manual_seed(seed)}
        if binarize:
            self.generators["binarize"] = torch.Generator().manual_seed(seed + 1)
        self.share = 1.0  # this rank's fraction of the latest global batch

    ORDER_KEYS: tuple[str, ...] = ("order",)

    def epoch_state(self) -> dict[str, torch.Tensor]:
        """States of the generators an epoch's order is drawn from, taken before the epoch:
        with them (and the binarization stream's current state) a checkpoint replays it."""
        return {k: self.generators[k].get_state() for k in self.ORDER_KEYS}

    def _finish(self, batch: Batch) -> Batch:
        """Binarize the global batch, then keep this rank's share."""
        if "binarize" in self.generators:
            batch = batch.with_x(binarize_with(batch.x, self.generators["binarize"]))
        if self.world == 1:
            return batch
        part = _shard(len(batch), self.rank, self.world)
        self.share = (part.stop - part.start) * self.world / len(batch)
        return batch[part]


class ShuffledSampler(Sampler):
    """Plain shuffled epochs over ``data``: one permutation per epoch, ``batch_size`` rows a
    step (the last step takes the rest unless ``drop_last``)."""

    def __init__(self, data: Batch, batch_size: int, *, seed: int = 0, binarize: bool = False,
                 drop_last: bool = False, rank: int = 0, world: int = 1):
        super().__init__(seed, binarize, rank, world)
        if batch_size < world:
            raise VaelabError(f"batch size {batch_size} is smaller than the {world} processes sharing each batch; "
                              f"use --batch-size {world} or more")
        self.data, self.batch_size, self.drop_last = data, batch_size, drop_last

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def epoch(self, start: int = 0) -> Iterator[Batch]:
        """This epoch's batches from step ``start`` on. The permutation is drawn whole, so a
        resumed epoch sees the same order; skipped steps draw no binarization noise."""
        perm = torch.randperm(len(self.data), generator=self.generators["order"]).to(self.data.x.device)
        for i in range(start, len(self)):
            yield self._finish(self.data.select(perm[i * self.batch_size:(i + 1) * self.batch_size]))


class SemiSupervisedSampler(Sampler):
    """Labelled and unlabelled rows in every step (Kingma et al. 2014's M2 protocol).

    The unlabelled set defines the epoch (``unlabelled_batch`` rows a step); the labelled set
    is cycled, ``labelled_batch`` rows a step, each pass in a fresh order. Each step's batch is
    the labelled rows then the unlabelled ones, with ``labelled`` marking which are which.
    """

    ORDER_KEYS = ("order", "labelled_order")

    def __init__(self, labelled: Batch, unlabelled: Batch, labelled_batch: int, unlabelled_batch: int, *,
                 seed: int = 0, binarize: bool = False, rank: int = 0, world: int = 1):
        super().__init__(seed, binarize, rank, world)
        if labelled.y is None or len(labelled) == 0:
            raise VaelabError("the semi-supervised sampler needs labelled rows with labels; "
                              "derive them with vaelab.data.labelled_subset")
        if len(unlabelled) == 0:
            raise VaelabError("the semi-supervised sampler needs unlabelled rows: the unlabelled set defines an epoch")
        if min(labelled_batch, unlabelled_batch) < 1:
            raise VaelabError(f"labelled and unlabelled batch sizes must be at least 1, got "
                              f"{labelled_batch} and {unlabelled_batch}")
        self.generators["labelled_order"] = torch.Generator().manual_seed(seed + 2)
        self.labelled, self.unlabelled = labelled, unlabelled
        self.labelled_batch, self.unlabelled_batch = labelled_batch, unlabelled_batch

    def __len__(self) -> int:
        return math.ceil(len(self.unlabelled) / self.unlabelled_batch)

    def _labelled_order(self, rows: int) -> torch.Tensor:
        """Enough labelled indices for ``rows`` draws: fresh permutations, one after another."""
        n = len(self.labelled)
        passes = [torch.randperm(n, generator=self.generators["labelled_order"]) for _ in range(math.ceil(rows / n))]
        return torch.cat(passes)[:rows].to(self.labelled.x.device)

    def epoch(self, start: int = 0) -> Iterator[Batch]:
        perm = torch.randperm(len(self.unlabelled), generator=self.generators["order"]).to(self.unlabelled.x.device)
        lab = self._labelled_order(len(self) * self.labelled_batch)
        for i in range(start, len(self)):
            a = self.labelled.select(lab[i * self.labelled_batch:(i + 1) * self.labelled_batch])
            b = self.unlabelled.select(perm[i * self.unlabelled_batch:(i + 1) * self.unlabelled_batch])
            yield self._finish(_concat(a, b))


def _concat(labelled: Batch, unlabelled: Batch) -> Batch:
    """Labelled rows then unlabelled ones; the unlabelled rows' y is a copy of a labelled
    row's shape filled with zeros (never read: the mask says so)."""
    y_u = torch.zeros((len(unlabelled), *labelled.y.shape[1:]), dtype=labelled.y.dtype, device=labelled.y.device)
    mask = torch.cat([torch.ones(len(labelled), dtype=torch.bool), torch.zeros(len(unlabelled), dtype=torch.bool)])
    extras = {k: torch.cat([v, unlabelled.extras[k]]) for k, v in labelled.extras.items() if k in unlabelled.extras}
    return Batch(torch.cat([labelled.x, unlabelled.x]), torch.cat([labelled.y, y_u]),
                 mask.to(labelled.x.device), extras)


class LengthBucketSampler(ShuffledSampler):
    """Shuffled epochs of sequences batched by length, for data that carries
    ``extras["lengths"]``: rows of similar length share a step, so little of each step is
    padding. Each epoch draws one permutation, sorts it by length within pools of
    ``pool_batches`` batches, cuts it into batches and draws their order; both draws come from
    the order generator, so ``epoch_state`` replays a resumed epoch exactly, and sharding and
    the number of steps are those of :class:`ShuffledSampler`."""

    def __init__(self, data: Batch, batch_size: int, *, pool_batches: int = 50, **kwargs):
        super().__init__(data, batch_size, **kwargs)
        if "lengths" not in data.extras:
            raise VaelabError("the length-bucketing sampler needs extras['lengths'] (one length per row)")
        self.lengths, self.pool = data.extras["lengths"].cpu(), batch_size * max(1, pool_batches)

    def epoch(self, start: int = 0) -> Iterator[Batch]:
        n, b = len(self.data), self.batch_size
        perm = torch.randperm(n, generator=self.generators["order"])
        pools = [p[self.lengths[p].argsort(stable=True)] for p in perm.split(self.pool)]
        rows = torch.cat(pools).split(b)[:len(self)]
        order = torch.randperm(len(rows), generator=self.generators["order"])
        for i in range(start, len(self)):
            yield self._finish(self.data.select(rows[int(order[i])].to(self.data.x.device)))
