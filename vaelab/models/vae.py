"""The VAE and β-VAE (Kingma & Welling 2014; Higgins et al. 2017).

Gaussian encoder with mean and log-variance heads, reparameterised sample, analytic
KL to N(0, I), a decoder likelihood from ``vaelab.nn.likelihoods``. The KL weight β
is in the config (1 = the ELBO); an optional linear warm-up raises it from 0.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import distributions as td
from torch import nn

from ..config import Config, choice, require
from ..nn.conv import ConvDecoder, ConvEncoder
from ..nn.init import glorot_, output_bias_from_data_
from ..nn.likelihoods import LIKELIHOODS, make_likelihood
from ..nn.mlp import mlp, validate_network
from .base import Batch, Loss, Model, inputs
from . import fields
from .registry import register

LOGVAR_RANGE = (-30.0, 20.0)
LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class VAEConfig(Config):
    """Constructor arguments of :class:`VAE` (saved as ``config.json``).

    ``hidden`` are the MLP layer sizes (for ``backbone="conv"``: dense layers after
    the convolutions, whose widths are ``channels``). ``sigma`` is the fixed σ of the
    ``gaussian`` likelihood. ``init="glorot"`` is the IWAE paper's initialisation;
    ``output_bias_from_data`` sets the decoder's output bias to the logit of the
    training-set mean pixel before training starts (also IWAE's choice).
    """

    input_shape: tuple[int, int, int] = fields.input_shape()
    latent_dim: int = fields.latent_dim(20)
    hidden: tuple[int, ...] = fields.hidden((400,))
    activation: str = fields.activation("relu")
    backbone: str = fields.backbone("mlp")
    channels: tuple[int, ...] = fields.channels((32, 64))
    likelihood: str = fields.likelihood()
    sigma: float = fields.sigma()
    beta: float = field(default=1.0, metadata={"help": "weight of the KL term (1 = the ELBO; >1 = β-VAE)"})
    kl_warmup_epochs: float = field(
        default=0.0,
        metadata={"flag": "--kl-warmup", "help": "epochs over which the KL weight rises linearly from 0 to β (0 = off)"})
    init: str = fields.init("torch")
    output_bias_from_data: bool = fields.output_bias_from_data(True)

    def validate(self) -> None:
        choice("backbone", self.backbone, ("mlp", "conv"))
        validate_network(self, self.backbone == "conv")
        choice("likelihood", self.likelihood, LIKELIHOODS)
        require(self.sigma > 0, f"sigma must be > 0, got {self.sigma}")
        require(self.beta >= 0, f"beta must be >= 0 (1 is the ELBO), got {self.beta}")
        require(self.kl_warmup_epochs >= 0,
                f"kl_warmup_epochs must be >= 0, got {self.kl_warmup_epochs}")


class _SampleAndKL(torch.autograd.Function):
    """z = μ + σ·ε and Σ KL(N(μ, σ²) ‖ N(0, 1)) in one node with hand-written gradients:
    the reparameterisation and the KL are a dozen tiny ops otherwise (training hot path)."""

    @staticmethod
    def forward(ctx, mu, logvar, eps):
        var = logvar.exp()
        std = var.sqrt()
        ctx.save_for_backward(mu, var, std, eps)
        z = torch.addcmul(mu, std, eps)
        kl = 0.5 * (mu.square() + var - 1.0 - logvar).sum()
        return z, kl

    @staticmethod
    def backward(ctx, grad_z, grad_kl):
        mu, var, std, eps = ctx.saved_tensors
        grad_mu = torch.add(grad_z, mu, alpha=float(grad_kl))
        grad_logvar = (grad_z * eps * std).add_(var - 1.0, alpha=float(grad_kl)).mul_(0.5)
        return grad_mu, grad_logvar, None


def vae_networks(config: VAEConfig, out_channels: int, extra: int = 0) -> tuple[nn.Module, nn.Module]:
    """The encoder (x -> mean and log-variance of q(z|...)) and decoder (z -> likelihood
    parameters) of ``config``'s backbone. ``extra`` conditioning inputs widen both: features
    after the flattened image (MLP) or channels beside it (conv) for the encoder, features
    after z for the decoder (a label-conditional model's one-hot y)."""
    c, h, w = config.input_shape
    latent, out_shape = config.latent_dim, (out_channels, h, w)
    if config.backbone == "mlp":
        encoder = nn.Sequential(nn.Flatten(), mlp(c * h * w + extra, config.hidden, 2 * latent, config.activation))
        decoder = nn.Sequential(mlp(latent + extra, tuple(reversed(config.hidden)), out_channels * h * w,
                                    config.activation), nn.Unflatten(1, out_shape))
    else:
        encoder = ConvEncoder((c + extra, h, w), config.channels, 2 * latent, config.activation, config.hidden)
        decoder = ConvDecoder(latent + extra, config.channels, config.input_shape, out_channels,
                              config.activation, config.hidden)
    return encoder, decoder


def gaussian_params(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split an encoder output into the mean and clamped log-variance of a diagonal Gaussian."""
    mu, logvar = h.chunk(2, dim=-1)
    return mu, logvar.clamp(*LOGVAR_RANGE)


@register("vae")
class VAE(Model):
    Config = VAEConfig

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        c, h, w = config.input_shape
        self.likelihood = make_likelihood(config.likelihood, config.sigma)
        out_c = c * self.likelihood.params_per_channel
        self.out_shape = (out_c, h, w)
        self.encoder, self.decoder = vae_networks(config, out_c, self.condition_width())
        if config.init == "glorot":
            glorot_(self)
        self.kl_weight = config.beta

    def condition_width(self) -> int:
        """Width of the conditioning input both networks take besides x or z (none here)."""
        return 0

    # -- the model's pieces -------------------------------------------------------
    def posterior_params(self, data: Batch | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and (clamped) log-variance of q(z|x)."""
        return gaussian_params(self.encoder(inputs(data)))

    def encode(self, data: Batch | torch.Tensor) -> td.Distribution:
        """q(z|x) as a diagonal Gaussian; ``.mean`` is the deterministic code."""
        mu, logvar = self.posterior_params(data)
        return td.Independent(td.Normal(mu, torch.exp(0.5 * logvar)), 1)

    def decode(self, z: torch.Tensor) -> td.Distribution:
        """p(x|z) as a ``torch.distributions`` object over images."""
        return self.likelihood.distribution(self.decoder(z))

    def prior(self) -> td.Distribution:
        p = next(self.parameters())
        zeros = torch.zeros(self.config.latent_dim, device=p.device, dtype=p.dtype)
        return td.Independent(td.Normal(zeros, torch.ones_like(zeros)), 1)

    @torch.no_grad()
    def reconstruct(self, data: Batch | torch.Tensor) -> torch.Tensor:
        """Mean of p(x | z = E[q(z|x)]): deterministic."""
        return self.likelihood.mean(self.decoder(self.posterior_params(inputs(data))[0]))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Means of p(x|z) for z ~ N(0, I); pass a generator for repeatable samples."""
        p = next(self.parameters())
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=p.device)
        return self.likelihood.mean(self.decoder(z))

    # -- objectives ---------------------------------------------------------------
    def schedule(self, epoch: float) -> None:
        warm = self.config.kl_warmup_epochs
        self.kl_weight = self.config.beta * (min(1.0, epoch / warm) if warm > 0 else 1.0)

    def loss(self, batch: Batch | torch.Tensor) -> Loss:
        """−ELBO = E_q[−log p(x|z)] + β·KL(q(z|x) ‖ N(0, I)), per example."""
        x = inputs(batch)
        mu, logvar = self.posterior_params(x)
        z, kl_sum = _SampleAndKL.apply(mu, logvar, torch.randn_like(mu))
        recon = self.likelihood.nll_sum(self.decoder(z), x) / x.shape[0]
        kl = kl_sum / x.shape[0]
        return Loss(recon + self.kl_weight * kl, {"recon": recon, "kl": kl},
                    {"recon": 1.0, "kl": self.kl_weight})

    def kl_per_dim(self, data: Batch | torch.Tensor) -> torch.Tensor:
        """KL(q(z_j|x) || N(0,1)) per example and latent dimension, shape (B, L)."""
        mu, logvar = self.posterior_params(data)
        return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)

    def importance_log_weights(self, data: Batch | torch.Tensor, k: int,
                               generator: torch.Generator | Sequence[torch.Generator] | None = None
                               ) -> torch.Tensor:
        """log p(x|z_i) + log p(z_i) − log q(z_i|x) for k samples z_i ~ q(z|x): shape (B, k).

        ``generator`` is one generator for the whole batch, or one per image (each image's
        samples then depend only on its own stream, not on how images are batched)."""
        x = inputs(data)
        mu, logvar = self.posterior_params(x)
        return self.log_weights(x, mu, logvar, k, generator)

    def log_weights(self, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, k: int,
                    generator=None, condition: torch.Tensor | None = None) -> torch.Tensor:
        """The importance log-weights for q = N(mu, exp(logvar)): shape (B, k).
        ``condition`` (B, C) is appended to every z at the decoder's input (p(x|z, y))."""
        b, dim = mu.shape
        std = torch.exp(0.5 * logvar)
        if isinstance(generator, (list, tuple)):
            eps = torch.stack([torch.randn(k, dim, generator=g, device=mu.device, dtype=mu.dtype)
                               for g in generator])
        else:
            eps = torch.randn(b, k, dim, generator=generator, device=mu.device, dtype=mu.dtype)
        z = torch.addcmul(mu.unsqueeze(1), std.unsqueeze(1), eps)
        z_in = z.view(b * k, dim) if condition is None else \
            torch.cat([z, condition.unsqueeze(1).expand(b, k, -1)], -1).view(b * k, -1)
        layers = self.decoder[0] if self.config.backbone == "mlp" else None
        if layers is not None and len(layers) >= 3 and hasattr(self.likelihood, "log_prob_linear"):
            # The last hidden layer is computed transposed, (F, b·k) with contiguous rows, so
            # the fast path can drop inactive hidden units with cheap row copies.
            hidden, act, last = layers[-3], layers[-2], layers[-1]
            prev = layers[:-3](z_in)
            h_t = act(torch.addmm(hidden.bias.unsqueeze(1), hidden.weight, prev.t()))
            log_px = self.likelihood.log_prob_linear(h_t.t().view(b, k, -1), last.weight, last.bias, x)
        else:
            out = self.decoder(z_in).view(b, k, *self.out_shape)
            log_px = self.likelihood.log_prob_samples(out, x)
        log_pz = -0.5 * z.square().sum(-1)
        log_qz = -0.5 * eps.square().sum(-1) - 0.5 * logvar.sum(-1, keepdim=True)
        return log_px + log_pz - log_qz

    def prepare(self, data: Batch | torch.Tensor) -> None:
        """Set the decoder's output bias so that it starts at the mean training image (for pixels:
        logit(mean), clipped as in IWAE)."""
        if not self.config.output_bias_from_data:
            return
        output_bias_from_data_(self.decoder, inputs(data), self.config.input_shape, self.likelihood.output_for_mean)
