"""The model contract shared by every family: what a model takes (:class:`Batch`), what its
objective returns (:class:`Loss`), and how it asks for more than one optimiser (:class:`Phase`).

The trainer, evaluation and the CLI only use what is declared here, and ask a model what it
can do (``importance_log_weights``, ``classify``, ...) rather than what it is called.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterable

import torch
from torch import nn

from ..data.batch import Batch, as_batch, inputs  # noqa: F401  (the contract's types, one import away)


@dataclass
class Loss:
    """``total`` is the scalar to minimise; ``total == Σ weights[k] * terms[k]``.

    Every term is summed over data dimensions and averaged over the batch, so values
    read as nats per example. ``weights`` makes every multiplier visible.
    """

    total: torch.Tensor
    terms: dict[str, torch.Tensor]
    weights: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Phase:
    """One optimiser's part of a training step: the ``parameters`` it updates, the ``loss``
    it minimises on a batch, and its Adam settings where they differ from the run's
    (``lr`` None: the run's learning rate and schedule; ``lr_scale`` multiplies it)."""

    parameters: Callable[[], Iterable[nn.Parameter]]
    loss: Callable[[Batch], Loss]
    lr: float | None = None
    lr_scale: float = 1.0
    betas: tuple[float, float] | None = None


class Model(nn.Module):
    """Base class: a model is built from exactly one frozen config dataclass.

    Families implement ``loss(batch)``; a model trained by several optimisers in turn (an
    adversarial autoencoder, say) also declares ``phases()``. ``forward`` is ``loss`` so
    that ``DistributedDataParallel``'s hooks run around it.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type]
    # Training settings this family needs to keep its documented promise, where they differ
    # from TrainConfig's; they apply wherever the caller sets none (CLI and ``vaelab.train``).
    train_defaults: ClassVar[dict] = {}
    # True when the model's density is p(x|y) given ``batch.y`` (a label-conditional model):
    # evaluation then names its figures for it (``cnll``, ``celbo``), never ``nll``.
    conditional: ClassVar[bool] = False

    def __init__(self, config):
        super().__init__()
        self.config = config

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.config.input_shape)

    def forward(self, batch: Batch | torch.Tensor, phase: str | None = None) -> Loss:
        """``loss``, or the loss of ``phase``: the one call DDP's wrapper sees."""
        if phase is None:
            return self.loss(as_batch(batch))
        return self.phases()[phase].loss(as_batch(batch))

    def loss(self, batch: Batch | torch.Tensor) -> Loss:
        raise NotImplementedError

    def phases(self) -> dict[str, Phase]:
        """name -> :class:`Phase`, run in this order every step, one optimiser each. The
        default is one phase, all parameters on ``loss``: one-phase models declare nothing."""
        return {"model": Phase(self.parameters, lambda batch: self.loss(batch))}

    def schedule(self, epoch: float) -> None:
        """Called by the trainer before each step with the fractional epoch (warm-ups)."""

    def prepare(self, data: Batch | torch.Tensor) -> None:
        """Data-dependent initialisation before the first step of a fresh run."""

    def adopt_shapes(self, tensors: dict[str, torch.Tensor]) -> None:
        """Before saved tensors are loaded: resize buffers whose size ``prepare`` took from
        the training data (a model that keeps its labelled images); others have none."""

    @property
    def can_sample(self) -> bool:
        """Whether ``sample`` can draw now: a model may have the method but need a second stage
        first (a VQ-VAE's prior over its codes); pictures and reports skip samples otherwise."""
        return hasattr(self, "sample")

    def epoch_figures(self) -> dict[str, float]:
        """Figures the model kept over the epoch's training steps (a codebook's usage, say),
        read once at each epoch's end and then reset by the model; logged beside the training
        terms in ``metrics.jsonl`` and the progress line. None by default."""
        return {}

    def end_of_run(self, run_dir, data: Batch, seed: int = 0) -> list[str]:
        """Pictures written when training ends, into ``run_dir``; returns the file names.
        The default fits image models that sample and reconstruct; a family overrides it
        to write what suits it."""
        from ..viz.grids import save_reconstructions, save_samples

        written = []
        if self.can_sample:
            save_samples(self, run_dir / "samples.png", n=64, seed=seed)
            written.append("samples.png")
        if hasattr(self, "reconstruct") and len(data):
            save_reconstructions(self, data[:32], run_dir / "reconstructions.png")
            written.append("reconstructions.png")
        return written
