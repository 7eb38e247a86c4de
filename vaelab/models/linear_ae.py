"""The linear autoencoder of the lectures: z = W (x − b), x̂ = Wᵀ z + b.

With squared error and b the data mean, the optimal decoder spans the same subspace as
the top ``latent_dim`` principal components (Baldi & Hornik 1989): PCA is the linear
autoencoder. W itself is not unique (any invertible mix of the basis is optimal), so
compare subspaces with :func:`vaelab.baselines.subspace.principal_angles`, not weights.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import Config, require
from .ae import Autoencoder
from .base import Batch, inputs
from . import fields
from .registry import register


@dataclass(frozen=True)
class LinearAEConfig(Config):
    """Constructor arguments of :class:`LinearAE`.

    ``tied``: the decoder is Wᵀ (the lecture model); false gives it its own matrix.
    ``center``: ``prepare`` sets the offset b to the training-data mean, which makes the
    optimum PCA's principal subspace; false keeps b = 0 (the uncentred subspace).
    """

    input_shape: tuple[int, int, int] = fields.input_shape()
    latent_dim: int = fields.latent_dim(16)
    tied: bool = field(
        default=True,
        metadata={"help": "decoder matrix = encoder matrix transposed (--no-tied: a separate decoder matrix)"})
    center: bool = field(
        default=True,
        metadata={"help": "subtract the training-data mean before encoding, so the optimum is PCA's subspace (--no-center: no offset)"})

    def validate(self) -> None:
        require(all(s > 0 for s in self.input_shape),
                f"input_shape must be positive C,H,W, got {list(self.input_shape)}")
        require(self.latent_dim > 0, f"latent_dim must be positive, got {self.latent_dim}")
        d = math.prod(self.input_shape)
        require(self.latent_dim <= d,
                f"latent_dim {self.latent_dim} exceeds the {d} input dimensions; choose at most {d}")


@register("linear-ae")
class LinearAE(Autoencoder):
    """Linear encoder and decoder, squared-error loss, no output nonlinearity."""

    Config = LinearAEConfig
    # Adam at a constant rate stalls a few degrees off PCA's subspace (minibatch noise: 4.4°
    # on MNIST, latent 10, 20 epochs at 1e-3); a cosine decay from a larger step reaches it.
    train_defaults = {"lr": 3e-3, "lr_schedule": "cosine"}

    def __init__(self, config: LinearAEConfig):
        super().__init__(config)
        d = math.prod(config.input_shape)
        # rows of norm ≈ 1, so WᵀW starts near the scale of a projection
        self.weight = nn.Parameter(torch.randn(config.latent_dim, d) / math.sqrt(d))
        self.decoder_weight = None if config.tied else nn.Parameter(
            torch.randn(d, config.latent_dim) / math.sqrt(d))
        self.register_buffer("offset", torch.zeros(*config.input_shape))

    @property
    def recon_loss(self) -> str:
        return "mse"

    @property
    def corruption(self) -> tuple[str, float]:
        return "none", 0.0

    def decoder_matrix(self) -> torch.Tensor:
        """The D×L decoder matrix (Wᵀ when tied); its columns span the learned subspace."""
        return self.weight.T if self.decoder_weight is None else self.decoder_weight

    def code(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.offset).flatten(1) @ self.weight.T

    def decoder_output(self, z: torch.Tensor) -> torch.Tensor:
        return (z @ self.decoder_matrix().T).view(-1, *self.config.input_shape) + self.offset

    def output_mean(self, out: torch.Tensor) -> torch.Tensor:
        return out

    def prepare(self, data: Batch | torch.Tensor) -> None:
        """b = mean training image (``center=True``)."""
        if self.config.center:
            with torch.no_grad():
                self.offset.copy_(inputs(data).float().mean(0).to(self.offset))
