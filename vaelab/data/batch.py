"""The unit every model entry point takes: inputs, optional targets, which rows are labelled.

It sits with the data, below the models, so samplers and derived data build it without
importing any model.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch


@dataclass
class Batch:
    """What every model entry point takes.

    ``x`` the inputs; ``y`` the targets where there are any: a class index per row, an
    attribute vector or a target tensor (the hidden part of an image); ``labelled`` a bool
    mask of the rows whose ``y`` is real (None: every row's, when ``y`` is given);
    ``extras`` named tensors a family needs besides (a pixel mask, say), one row per example.
    """

    x: torch.Tensor
    y: torch.Tensor | None = None
    labelled: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device) -> Batch:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(move(self.x), move(self.y), move(self.labelled), {k: move(v) for k, v in self.extras.items()})

    def select(self, index: torch.Tensor) -> Batch:
        """The rows ``index`` (a LongTensor) of every field."""
        pick = lambda t: None if t is None else t.index_select(0, index.to(t.device))  # noqa: E731
        return Batch(pick(self.x), pick(self.y), pick(self.labelled), {k: pick(v) for k, v in self.extras.items()})

    def __getitem__(self, rows: slice) -> Batch:
        cut = lambda t: None if t is None else t[rows]  # noqa: E731
        return Batch(cut(self.x), cut(self.y), cut(self.labelled), {k: cut(v) for k, v in self.extras.items()})

    def with_x(self, x: torch.Tensor) -> Batch:
        """The same batch with other inputs (binarized, corrupted, ...)."""
        return replace(self, x=x)

    def labelled_rows(self) -> torch.Tensor:
        """Bool mask of the rows that carry a real ``y`` (all, none or the ``labelled`` mask)."""
        if self.y is None:
            return torch.zeros(len(self), dtype=torch.bool, device=self.x.device)
        if self.labelled is None:
            return torch.ones(len(self), dtype=torch.bool, device=self.x.device)
        return self.labelled


def inputs(data: Batch | torch.Tensor) -> torch.Tensor:
    """The inputs x of a batch or of a bare tensor (for families that use x alone)."""
    return data.x if isinstance(data, Batch) else data


def as_batch(data: Batch | torch.Tensor, y: torch.Tensor | None = None) -> Batch:
    """A :class:`Batch` from a batch or a bare input tensor (so ``model.loss(x)`` works)."""
    if isinstance(data, Batch):
        return data if y is None else replace(data, y=y)
    return Batch(data, y)
