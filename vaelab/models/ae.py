"""Deterministic autoencoders: ``ae`` (MLP or conv), ``conv-ae`` and the denoising ``dae``.

An autoencoder maps x to one code z = f(x) and back to x̂ = g(z); it is trained on the
reconstruction error alone. There is no prior over z and no posterior spread, so
``encode`` returns a point mass and no likelihood of x can be computed (the contrast
with the VAE that the lectures draw). The denoising autoencoder (Vincent et al. 2008)
corrupts its input during training and reconstructs the clean image.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import distributions as td
from torch import nn

from ..config import Config, choice, require
from ..nn.conv import ConvDecoder, ConvEncoder
from ..nn.corruption import CORRUPTIONS, corrupt
from ..nn.deterministic import PointMass, squared_error_likelihood
from ..nn.init import glorot_, output_bias_from_data_
from ..nn.likelihoods import Bernoulli
from ..nn.mlp import mlp, validate_network
from .base import Batch, Loss, Model, inputs
from . import fields
from .registry import register

RECON_LOSSES = ("mse", "bernoulli")


def validate_autoencoder(cfg, conv: bool) -> None:
    """An autoencoder's settings: the network checks every family shares, then its own."""
    validate_network(cfg, conv)
    choice("loss", cfg.loss, RECON_LOSSES)
    choice("corruption", cfg.corruption, CORRUPTIONS)
    require(cfg.noise_level >= 0 and cfg.noise_level == cfg.noise_level,
            f"noise_level must be >= 0, got {cfg.noise_level}")
    if cfg.corruption in ("masking", "salt-pepper"):
        require(cfg.noise_level <= 1,
                f"noise_level is a probability for {cfg.corruption} corruption; it must lie in [0, 1], "
                f"got {cfg.noise_level}")


@dataclass(frozen=True)
class AEConfig(Config):
    """Constructor arguments of :class:`AE` (saved as ``config.json``).

    ``hidden``, ``activation``, ``backbone``, ``channels`` and ``init`` mean what they
    mean for the VAE. ``loss`` is ``mse`` (squared error Σ(x − x̂)² with x̂ = sigmoid of
    the decoder output) or ``bernoulli`` (cross-entropy with logits; grey levels are
    valid targets). ``corruption`` and ``noise_level`` corrupt the input during training
    only (denoising); ``output_bias_from_data`` sets the decoder's output bias to the
    logit of the mean training pixel before training.
    """

    input_shape: tuple[int, int, int] = fields.input_shape()
    latent_dim: int = fields.latent_dim(32)
    hidden: tuple[int, ...] = fields.hidden((400,))
    activation: str = fields.activation("relu")
    backbone: str = fields.backbone("mlp")
    channels: tuple[int, ...] = fields.channels((32, 64))
    loss: str = fields.recon_loss("mse")
    corruption: str = fields.corruption("none")
    noise_level: float = fields.noise_level(0.25)
    init: str = fields.init("torch")
    output_bias_from_data: bool = fields.output_bias_from_data(True)

    def validate(self) -> None:
        choice("backbone", self.backbone, ("mlp", "conv"))
        validate_autoencoder(self, self.backbone == "conv")


class Autoencoder(Model):
    """Shared behaviour of the deterministic autoencoders.

    Subclasses provide ``code(x)`` (the encoder), ``decoder_output(z)`` (raw decoder
    output: logits for ``bernoulli``, pre-sigmoid values for ``mse``) and
    ``output_mean(out)`` (the reconstructed image).
    """

    @property
    def recon_loss(self) -> str:
        return self.config.loss

    @property
    def corruption(self) -> tuple[str, float]:
        return self.config.corruption, self.config.noise_level

    def code(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decoder_output(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def output_mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out)

    # -- the contract ---------------------------------------------------------------
    def encode(self, data: Batch | torch.Tensor) -> td.Distribution:
        """The code as a point mass: ``.mean``, ``.sample()`` and ``.rsample()`` are f(x)."""
        return PointMass(self.code(inputs(data)))

    def decode(self, z: torch.Tensor) -> td.Distribution:
        """The distribution whose negative log-density is the training loss (up to a
        constant for ``mse``: N(x̂, ½·I)); ``.mean`` is the reconstructed image."""
        out = self.decoder_output(z)
        if self.recon_loss == "bernoulli":
            return Bernoulli().distribution(out)
        return squared_error_likelihood(self.output_mean(out))

    @torch.no_grad()
    def reconstruct(self, data: Batch | torch.Tensor, corrupted: bool = False,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """x̂ = g(f(x)), deterministic. ``corrupted=True`` first applies the model's own
        corruption (drawn from ``generator``) to show denoising."""
        x = inputs(data)
        if corrupted:
            kind, level = self.corruption
            x = corrupt(x, kind, level, generator)
        return self.output_mean(self.decoder_output(self.code(x)))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, *, seed: int | None = None,
               codes: td.MultivariateNormal | None = None) -> torch.Tensor:
        """Decode codes z ~ N(0, I), or z ~ ``codes`` (e.g. :meth:`code_gaussian`).

        An autoencoder has no prior: nothing in training makes N(0, I) codes decode to
        images, which is why its samples are poor next to a VAE's. A Gaussian fitted to
        the training codes draws from where the decoder was trained. ``seed`` or
        ``generator`` makes draws repeatable.
        """
        p = next(self.parameters())
        if generator is None and seed is not None:
            generator = torch.Generator(device=p.device).manual_seed(seed)
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=p.device, dtype=p.dtype)
        if codes is not None:
            z = codes.loc.to(z) + z @ codes.scale_tril.to(z).T
        return self.output_mean(self.decoder_output(z))

    @torch.no_grad()
    def code_gaussian(self, x: torch.Tensor, batch_size: int = 1000) -> td.MultivariateNormal:
        """N(mean, covariance) of the codes of ``x`` (e.g. the training set), for ``sample(codes=...)``."""
        p = next(self.parameters())
        z = torch.cat([self.code(x[i:i + batch_size].to(p.device, p.dtype)).double()
                       for i in range(0, x.shape[0], batch_size)])
        mean = z.mean(0)
        centred = z - mean
        cov = centred.T @ centred / max(1, z.shape[0] - 1)
        cov = cov + 1e-6 * cov.diagonal().mean().clamp_min(1e-6) * torch.eye(z.shape[1], dtype=z.dtype,
                                                                             device=z.device)
        return td.MultivariateNormal(mean.to(p.dtype), scale_tril=torch.linalg.cholesky(cov).to(p.dtype))

    # -- the objective --------------------------------------------------------------
    def recon_sum(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction loss summed over pixels and the batch."""
        if self.recon_loss == "bernoulli":
            return Bernoulli().nll_sum(out, x)
        return F.mse_loss(self.output_mean(out), x, reduction="sum")

    def loss(self, batch: Batch | torch.Tensor) -> Loss:
        """``recon`` = Σ_pixels loss(x, g(f(x̃))) averaged over the batch, where x̃ is the
        corrupted input in training mode (denoising) and x itself in eval mode."""
        x = inputs(batch)
        kind, level = self.corruption
        inp = corrupt(x, kind, level) if self.training and kind != "none" else x
        recon = self.recon_sum(self.decoder_output(self.code(inp)), x) / x.shape[0]
        return Loss(recon, {"recon": recon}, {"recon": 1.0})


def mlp_autoencoder(config) -> tuple[nn.Sequential, nn.Sequential]:
    """Encoder ``Flatten, mlp(D -> hidden -> L)`` and its mirror ``mlp(L -> reversed hidden -> D), Unflatten``."""
    c, h, w = config.input_shape
    encoder = nn.Sequential(nn.Flatten(), mlp(c * h * w, config.hidden, config.latent_dim, config.activation))
    decoder = nn.Sequential(mlp(config.latent_dim, tuple(reversed(config.hidden)), c * h * w, config.activation),
                            nn.Unflatten(1, (c, h, w)))
    return encoder, decoder


@register("ae")
class AE(Autoencoder):
    """Deep autoencoder with an MLP or convolutional backbone (transposed-conv decoder)."""

    Config = AEConfig

    def __init__(self, config: AEConfig):
        super().__init__(config)
        c, h, w = config.input_shape
        if config.backbone == "mlp":
            self.encoder, self.decoder = mlp_autoencoder(config)
        else:
            self.encoder = ConvEncoder(config.input_shape, config.channels, config.latent_dim,
                                       config.activation, config.hidden)
            self.decoder = ConvDecoder(config.latent_dim, config.channels, config.input_shape, c,
                                       config.activation, config.hidden)
        if config.init == "glorot":
            glorot_(self)

    def code(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decoder_output(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def prepare(self, data: Batch | torch.Tensor) -> None:
        if self.config.output_bias_from_data:
            output_bias_from_data_(self.decoder, inputs(data), self.config.input_shape)


@dataclass(frozen=True)
class ConvAEConfig(AEConfig):
    """:class:`AEConfig` with the convolutional backbone as default (no dense layers)."""

    hidden: tuple[int, ...] = ()
    backbone: str = "conv"


@register("conv-ae")
class ConvAE(AE):
    """``ae`` with ``backbone="conv"`` by default: stride-2 convolutions down, transposed
    convolutions up, exactly C×H×W out for any image size."""

    Config = ConvAEConfig


@dataclass(frozen=True)
class DAEConfig(AEConfig):
    """:class:`AEConfig` with masking noise at 25% by default (Vincent et al. 2008)."""

    corruption: str = "masking"
    noise_level: float = 0.25

    def validate(self) -> None:
        super().validate()
        require(self.corruption != "none",
                "dae needs a corruption (gaussian, masking or salt-pepper); use the model 'ae' for none")


@register("dae")
class DAE(AE):
    """Denoising autoencoder: trained to reconstruct x from a corrupted x̃ (training mode
    only; evaluation and ``reconstruct`` see clean inputs unless ``corrupted=True``)."""

    Config = DAEConfig
