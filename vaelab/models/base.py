"""The model contract shared by every family (see DESIGN.md, "Contracts")."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn


@dataclass
class Loss:
    """``total`` is the scalar to minimise; ``total == Σ weights[k] * terms[k]``.

    Every term is summed over data dimensions and averaged over the batch, so values
    read as nats per example. ``weights`` makes every multiplier visible.
    """

    total: torch.Tensor
    terms: dict[str, torch.Tensor]
    weights: dict[str, float] = field(default_factory=dict)


class Model(nn.Module):
    """Base class: a model is built from exactly one frozen config dataclass."""

    name: ClassVar[str] = ""
    Config: ClassVar[type]
    phases: ClassVar[tuple[str, ...]] = ("model",)
    # Training settings this family needs to keep its documented promise, where they differ
    # from TrainConfig's; they apply wherever the caller sets none (CLI and ``vaelab.train``).
    train_defaults: ClassVar[dict] = {}

    def __init__(self, config):
        super().__init__()
        self.config = config

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.config.input_shape)

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Loss:
        raise NotImplementedError

    def schedule(self, epoch: float) -> None:
        """Called by the trainer before each step with the fractional epoch (warm-ups)."""

    def prepare(self, x_train: torch.Tensor) -> None:
        """Data-dependent initialisation before the first step of a fresh run."""
