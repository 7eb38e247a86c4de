"""The denoising VAE of Im, Ahn, Memisevic & Bengio (2017), "Denoising criterion for
variational auto-encoding framework".

The VAE's networks and likelihoods (:mod:`vaelab.models.vae`), with the encoder fed a
corrupted copy x̃ ~ p(x̃|x) of each training image while the decoder reconstructs the clean
x. The training objective is the paper's

    L_dvae(x) = E_{p(x̃|x)} E_{q(z|x̃)} [log p(x, z) − log q(z|x̃)]
              = E_{p(x̃|x)} [ E_{q(z|x̃)} log p(x|z) − KL(q(z|x̃) ‖ p(z)) ]

estimated with ``corruptions_m`` corruptions of each image and ``samples_k`` codes per
corruption (the KL analytic, as in the VAE). ``loss`` returns −L_dvae (β-weighted KL)
with the terms ``dvae_recon`` = E[−log p(x|z)] and ``dvae_kl`` = E_x̃ KL(q(z|x̃) ‖ p(z)),
deliberately not called ``recon``/``kl``: they are not the clean-input ELBO's terms, and
evaluation must not add them up into a figure named ``elbo``.

L_dvae is a training objective, never reported as a likelihood or as an ELBO (evaluation
names it ``dvae_objective``). The lecture notes call it tighter than the ELBO; it is not
tighter than the ELBO of the encoder the corruption induces, q̃(z|x) = E_{p(x̃|x)} q(z|x̃):
L_dvae = ELBO(q̃) − I(x̃; z | x) ≤ ELBO(q̃) ≤ log p(x). (Each inner expectation is an ELBO
with q(·|x̃) as proposal, so the exact L_dvae does lie below log p(x); its M×K estimate only
in expectation.) Against the clean-input ELBO it can lie on either side, so it says little
about the model's likelihood. What evaluation reports as ``nll`` is the importance-sampled
−log p(x) of the clean image with the clean-input encoder q(z|x) as proposal
(``importance_log_weights``, the VAE's), a valid estimator whatever the training did.
Measured numbers on MNIST and Frey Face: docs/dvae.md.

The corruption is :func:`vaelab.nn.corruption.corrupt` drawing from torch's global RNG,
which the trainer seeds and checkpoints, so resuming is bit-identical. A noise level of 0
draws nothing: with M = K = 1 the model is then the VAE, draw for draw.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import choice, require
from ..nn.corruption import corrupt
from .base import Batch, Loss, inputs
from .registry import register
from .vae import VAE, VAEConfig, _SampleAndKL

DVAE_CORRUPTIONS = ("salt-pepper", "masking", "gaussian", "none")
BINARY_CORRUPTIONS = ("salt-pepper", "masking")  # a probability per pixel; x̃ stays binary if x is


@dataclass(frozen=True)
class DVAEConfig(VAEConfig):
    """:class:`~vaelab.models.vae.VAEConfig` plus the corruption p(x̃|x) and the estimator's
    M corruptions × K samples.

    Gaussian corruption of a Bernoulli-likelihood model is refused: the Bernoulli decoder
    says the pixels are binary, and x + N(0, σ²) makes grey pixels that no image of such data
    has, so the encoder would learn from inputs outside the data's support. Salt-and-pepper
    and masking keep binary pixels binary and grey pixels inside [0, 1], so they suit either
    likelihood (impulse noise and dropped pixels happen to grey images too).
    """

    corruption: str = field(default="salt-pepper", metadata={
        "help": "p(x̃|x) seen by the encoder: salt-pepper or masking (binary or grey data), gaussian "
                "(real-valued data: gaussian likelihoods only) or none"})
    noise_level: float = field(default=0.1, metadata={
        "help": "corruption strength: the per-pixel probability for salt-pepper and masking (in [0, 1]), "
                "σ for gaussian"})
    corruptions_m: int = field(default=1, metadata={
        "help": "M, corrupted copies of each image per step"})
    samples_k: int = field(default=1, metadata={
        "help": "K, codes z ~ q(z|x̃) per corrupted copy"})

    def validate(self) -> None:
        super().validate()
        choice("corruption", self.corruption, DVAE_CORRUPTIONS)
        level = self.noise_level
        require(level == level and abs(level) != float("inf"), f"noise_level must be a number, got {level}")
        if self.corruption in BINARY_CORRUPTIONS:
            require(0 <= level <= 1, f"noise_level is the probability that a pixel is corrupted by "
                                     f"{self.corruption}; it must lie in [0, 1], got {level}")
        require(level >= 0, f"noise_level is the gaussian corruption's σ; it must be >= 0, got {level}")
        require(not (self.corruption == "gaussian" and self.likelihood == "bernoulli"),
                "gaussian corruption makes grey pixels, but a bernoulli likelihood models binary "
                "images; use --corruption salt-pepper or masking (or a gaussian likelihood)")
        for name, value in (("corruptions_m (M)", self.corruptions_m), ("samples_k (K)", self.samples_k)):
            require(value >= 1, f"{name} must be at least 1, got {value}")


@register("dvae")
class DVAE(VAE):
    Config = DVAEConfig
    objective_name = "dvae_objective"  # what evaluation calls L_dvae: a training objective, no bound

    def corrupted(self, x: torch.Tensor) -> torch.Tensor:
        """x̃ ~ p(x̃|x) for every row of ``x``; ``x`` itself (no draw) at noise level 0."""
        kind, level = self.config.corruption, self.config.noise_level
        return x if kind == "none" or level == 0 else corrupt(x, kind, level)

    def loss(self, batch: Batch | torch.Tensor) -> Loss:
        """−L_dvae per example: (1/MK) Σ_m Σ_k −log p(x|z_mk) + β·(1/M) Σ_m KL(q(z|x̃_m) ‖ p(z)),
        x̃_m ~ p(x̃|x), z_mk ~ q(z|x̃_m). In training and evaluation alike: it is the model's
        objective, not the clean-input ELBO (:meth:`clean_loss`)."""
        x = inputs(batch)
        m, k = self.config.corruptions_m, self.config.samples_k
        rows = x.shape[0] * m * k
        xm = x if m == 1 else x.repeat(m, *([1] * (x.ndim - 1)))  # row j·B + i: copy j of image i
        mu, logvar = self.posterior_params(self.corrupted(xm))
        if k > 1:
            mu, logvar = mu.repeat(k, 1), logvar.repeat(k, 1)
        z, kl_sum = _SampleAndKL.apply(mu, logvar, torch.randn_like(mu))
        target = x if m * k == 1 else x.repeat(m * k, *([1] * (x.ndim - 1)))
        recon = self.likelihood.nll_sum(self.decoder(z), target) / rows
        kl = kl_sum / rows
        return Loss(recon + self.kl_weight * kl, {"dvae_recon": recon, "dvae_kl": kl},
                    {"dvae_recon": 1.0, "dvae_kl": self.kl_weight})

    def clean_loss(self, batch: Batch | torch.Tensor) -> Loss:
        """The VAE's −ELBO with the clean-input encoder q(z|x): terms ``recon`` and ``kl``;
        −(recon + kl) at β = 1 is a lower bound on log p(x)."""
        return super().loss(batch)
