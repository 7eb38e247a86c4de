"""PixelCNN (van den Oord, Kalchbrenner & Kavukcuoglu 2016; the gated version of van den Oord et
al. 2016): a binary image modelled pixel by pixel, p(x) = Π_i p(x_i | x_<i) in raster order.

No latent variable and no bound: ``loss`` is the exact −log p(x) in nats per image (the term
``nll``), and :meth:`PixelCNN.exact_log_likelihood` gives evaluation the exact log p(x) per image
(reported as ``nll`` and ``bits_per_dim``, no importance samples). The network is
:class:`vaelab.nn.pixelcnn.GatedPixelCNN` (also the prior over a VQ-VAE's code maps).

Binary data only (x ∈ {0, 1}): MNIST is binarized by the trainer (dynamic binarization, as for
the Bernoulli VAE) and by evaluation (one fixed draw).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..config import Config, require
from ..data import binarize_static
from ..errors import VaelabError
from ..nn.pixelcnn import GatedPixelCNN
from .base import Batch, Loss, Model, as_batch
from . import fields
from .registry import register


@dataclass(frozen=True)
class PixelCNNConfig(Config):
    """Constructor arguments of :class:`PixelCNN` (saved as ``config.json``)."""

    input_shape: tuple[int, int, int] = fields.input_shape()
    layers: int = field(default=6, metadata={"help": "gated layers (each with a vertical and a horizontal stack)"})
    width: int = field(default=32, metadata={"help": "channels p of each stack (the gates use 2p)"})
    kernel: int = field(default=5, metadata={"help": "odd kernel size k: the vertical stack is (k//2+1)×k, "
                                                     "the horizontal 1×(k//2+1)"})
    head: int = field(default=64, metadata={"help": "channels of the 1×1 output network"})
    classes: int = field(default=0, metadata={"help": "class-conditional p(x|y) over this many classes "
                                                      "(0 = unconditional)"})
    completion_rows: int | None = field(default=None, metadata={
        "help": "rows given when completions.png completes test images",
        "default_text": "half the image height, 14 for MNIST"})

    # The trainer's and evaluation's "auto" binarization asks for a Bernoulli likelihood: each
    # pixel here is one (a 2-way softmax). A class attribute, not a setting.
    likelihood = "bernoulli"

    def __post_init__(self) -> None:
        """Left out, the rows given are the top half of whatever image height the data has
        (a fixed 14 would refuse 8×8 digits)."""
        if self.completion_rows is None and len(self.input_shape) == 3:
            object.__setattr__(self, "completion_rows", self.input_shape[1] // 2)
        super().__post_init__()

    def validate(self) -> None:
        require(len(self.input_shape) == 3 and all(s >= 1 for s in self.input_shape),
                f"input_shape must be C,H,W of positive sizes, got {self.input_shape}")
        require(self.layers >= 1, f"layers must be >= 1, got {self.layers}")
        require(self.width >= 1, f"width must be >= 1, got {self.width}")
        require(self.head >= 1, f"head must be >= 1, got {self.head}")
        require(self.kernel >= 3 and self.kernel % 2 == 1, f"kernel must be odd and >= 3 (e.g. 5), got {self.kernel}")
        require(self.classes == 0 or self.classes >= 2,
                f"classes must be 0 (unconditional) or at least 2, got {self.classes}")
        require(0 <= self.completion_rows < self.input_shape[1],
                f"--completion-rows must be in 0..{self.input_shape[1] - 1} (the image is {self.input_shape[1]} "
                f"rows tall), got {self.completion_rows}")


@register("pixelcnn")
class PixelCNN(Model):
    Config = PixelCNNConfig

    def __init__(self, config: PixelCNNConfig):
        super().__init__(config)
        self.net = self.network(config)

    @staticmethod
    def network(config) -> nn.Module:
        """The autoregressive network: logits (B, 2, C, H, W), ``log_prob``, ``sample``."""
        return GatedPixelCNN(channels=config.input_shape[0], categories=2, layers=config.layers,
                             hidden=config.width, kernel=config.kernel, head=config.head, classes=config.classes)

    @property
    def conditional(self) -> bool:  # evaluation names p(x|y) figures cnll, never nll
        return self.config.classes > 0

    # -- checks ---------------------------------------------------------------------------
    def _checked(self, data: Batch | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch = as_batch(data)
        x = batch.x
        if tuple(x.shape[1:]) != tuple(self.config.input_shape):
            raise VaelabError(f"{self.name}: images of shape {list(x.shape[1:])} given, this model takes "
                              f"{list(self.config.input_shape)} (C,H,W); resize them or build a model for that shape")
        if ((x != 0) & (x != 1)).any():
            raise VaelabError(f"{self.name} models binary images (every pixel 0 or 1), got grey levels; binarize them "
                              "(training: --binarize dynamic or static; Python: vaelab.data.binarize_static(x, seed))")
        return x, class_labels(self, batch.y, x.shape[0], x.device)

    # -- the density ----------------------------------------------------------------------
    def loss(self, batch: Batch | torch.Tensor) -> Loss:
        """The exact −log p(x) = −Σ_i log p(x_i | x_<i), nats per image."""
        nll = -self.exact_log_likelihood(batch).mean()
        return Loss(nll, {"nll": nll}, {"nll": 1.0})

    def exact_log_likelihood(self, batch: Batch | torch.Tensor) -> torch.Tensor:
        """log p(x) (log p(x|y) when class-conditional) per image, (B,): exact, no estimate."""
        x, y = self._checked(batch)
        return self.net.log_prob(x, y)

    # -- drawing --------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, y: torch.Tensor | int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` binary images (n, C, H, W) drawn pixel by pixel; a conditional model draws
        given ``y`` (one class or one per image; default the classes in turn)."""
        dev = next(self.parameters()).device
        labels = None
        if self.config.classes:
            labels = torch.arange(n, device=dev) % self.config.classes if y is None else class_labels(self, y, n, dev)
        _, h, w = self.config.input_shape
        return self.net.sample(n, (h, w), y=labels, generator=generator).float()

    @torch.no_grad()
    def complete_rows(self, data: Batch | torch.Tensor, rows: int | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Binary images with their first ``rows`` rows kept and the rest drawn from
        p(rest | given rows) (the Pixel-RNN paper's occluded completions)."""
        x, y = self._checked(data)
        _, h, w = self.config.input_shape
        rows = self.config.completion_rows if rows is None else rows
        if not 0 <= rows <= h:
            raise VaelabError(f"rows to keep must be in 0..{h}, got {rows}")
        return self.net.sample(x.shape[0], (h, w), y=y, generator=generator, given=x, given_rows=rows).float()

    def end_of_run(self, run_dir, data: Batch, seed: int = 0) -> list[str]:
        """samples.png (64 draws) and completions.png: for 8 images, the given top rows (the
        rest grey), then four completions each, then the original."""
        from ..viz.grids import save_png, save_samples

        save_samples(self, Path(run_dir) / "samples.png", n=64, seed=seed)
        written = ["samples.png"]
        if len(data):
            batch = as_batch(data)[:8]
            if ((batch.x != 0) & (batch.x != 1)).any():  # dynamically binarized training images
                batch = batch.with_x(binarize_static(batch.x.float(), seed))
            save_png(completion_grid(self, batch, seed=seed), Path(run_dir) / "completions.png")
            written.append("completions.png")
        return written


def class_labels(model, y, n: int, device) -> torch.Tensor | None:
    """``y`` checked as the class indices of ``n`` rows for a model conditioned on
    ``model.config.classes`` classes (None for an unconditional one); one class stands for all."""
    k = model.config.classes
    if k == 0:
        return None
    if y is None:
        raise VaelabError(f"this {model.name} is conditioned on {k} classes and needs each image's label: "
                          "pass a Batch(x, y) or a labelled dataset")
    y = torch.as_tensor(y, device=device)
    if y.dim() == 0:
        y = y.expand(n)
    if y.is_floating_point() or y.shape != (n,):
        raise VaelabError(f"{model.name} takes class indices as y ({n} integers), got shape {list(y.shape)} "
                          f"of {y.dtype}")
    bad = (y < 0) | (y >= k)
    if bad.any():
        raise VaelabError(f"label {int(y[bad][0])} is outside this {model.name}'s classes 0..{k - 1} "
                          f"(classes={k}); use labels in range or build it with more classes")
    return y.long()


def completion_grid(model: PixelCNN, batch: Batch, n_draws: int = 4, seed: int = 0, rows: int | None = None):
    """One row per image: the occluded input (hidden rows grey), ``n_draws`` completions, the
    original. ``batch.x`` must be binary."""
    from ..viz.grids import grid

    rows = model.config.completion_rows if rows is None else rows
    g = torch.Generator(device=batch.x.device).manual_seed(seed)
    draws = [model.complete_rows(batch, rows, generator=g) for _ in range(n_draws)]
    occluded = batch.x.float().clone()
    occluded[:, :, rows:] = 0.5
    columns = [occluded, *draws, batch.x.float()]
    images = torch.stack(columns, dim=1).flatten(0, 1)
    return grid(images.cpu(), nrow=len(columns))
