"""The VAE under another prior p(z) than N(0, I): the adversarial autoencoder's 10-Gaussian
2-D mixture (:mod:`vaelab.nn.priors`), so an AAE and a VAE can be compared under the same prior
(``vaelab compare aae-vs-vae``).

    −ELBO = E_q[−log p(x|z)] + KL(q(z|x) ‖ p(z)),  KL ≈ log q(z|x) − log p(z) at the same z ~ q(z|x)

The KL to a mixture has no closed form, so the ``kl`` term is a one-sample Monte-Carlo estimate
(unbiased; its noise is in the gradient). With ``prior="normal"`` this is the plain VAE with its
closed-form KL. Importance sampling uses the same prior, so ``nll`` is −log p(x) under it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..config import choice, require
from ..nn.priors import prior_log_prob, sample_prior
from .base import Batch, Loss, inputs
from .registry import register
from .vae import VAE, VAEConfig

VAE_PRIORS = ("normal", "mixture")
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class PriorVAEConfig(VAEConfig):
    """:class:`~vaelab.models.vae.VAEConfig` plus ``prior``."""

    prior: str = field(default="normal", metadata={
        "help": "p(z): normal (N(0, I); exact KL: the vae) or mixture (10 Gaussians on a circle, 2-D; Monte-Carlo "
                "KL; needs --latent-dim 2)"})

    def validate(self) -> None:
        super().validate()
        choice("prior", self.prior, VAE_PRIORS)
        if self.prior == "mixture":
            require(self.latent_dim == 2, f"the mixture prior is 2-D, but latent_dim is {self.latent_dim}; "
                                          "pass --latent-dim 2, or use --prior normal for other sizes")


@register("vae-prior")
class PriorVAE(VAE):
    Config = PriorVAEConfig

    def _mixture(self) -> bool:
        return self.config.prior != "normal"

    def _log_q_minus_log_p(self, z, mu, logvar, eps) -> torch.Tensor:
        """log q(z|x) − log p(z) per sample (the last dimension summed)."""
        log_q = -0.5 * eps.square().sum(-1) - 0.5 * logvar.sum(-1) - mu.shape[-1] * HALF_LOG_2PI
        d = z.shape[-1]
        return log_q - prior_log_prob(self.config.prior, z.reshape(-1, d)).view(z.shape[:-1])

    def loss(self, batch: Batch | torch.Tensor) -> Loss:
        """−ELBO with the one-sample Monte-Carlo KL under the mixture prior (the VAE's otherwise)."""
        if not self._mixture():
            return super().loss(batch)
        x = inputs(batch)
        mu, logvar = self.posterior_params(x)
        eps = torch.randn_like(mu)
        z = torch.addcmul(mu, (0.5 * logvar).exp(), eps)
        recon = self.likelihood.nll_sum(self.decoder(z), x) / x.shape[0]
        kl = self._log_q_minus_log_p(z, mu, logvar, eps).mean()
        return Loss(recon + self.kl_weight * kl, {"recon": recon, "kl": kl}, {"recon": 1.0, "kl": self.kl_weight})

    def kl_per_dim(self, data: Batch | torch.Tensor) -> torch.Tensor:
        """Per dimension only under N(0, I); under the mixture the KL does not split by dimension (NaN)."""
        if not self._mixture():
            return super().kl_per_dim(data)
        mu, _ = self.posterior_params(data)
        return torch.full_like(mu, float("nan"))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Means of p(x|z) for z drawn from the prior."""
        p = next(self.parameters())
        z = sample_prior(self.config.prior, n, self.config.latent_dim, generator, p.device, p.dtype)
        return self.likelihood.mean(self.decoder(z))

    def importance_log_weights(self, data: Batch | torch.Tensor, k: int, generator=None) -> torch.Tensor:
        """log p(x|z_i) + log p(z_i) − log q(z_i|x), z_i ~ q(z|x): shape (B, k)."""
        if not self._mixture():
            return super().importance_log_weights(data, k, generator)
        x = inputs(data)
        mu, logvar = self.posterior_params(x)
        b, dim = mu.shape
        if isinstance(generator, (list, tuple)):
            eps = torch.stack([torch.randn(k, dim, generator=g, device=mu.device, dtype=mu.dtype) for g in generator])
        else:
            eps = torch.randn(b, k, dim, generator=generator, device=mu.device, dtype=mu.dtype)
        mu_k, logvar_k = mu.unsqueeze(1).expand(b, k, dim), logvar.unsqueeze(1).expand(b, k, dim)
        z = torch.addcmul(mu_k, (0.5 * logvar_k).exp(), eps)
        out = self.decoder(z.reshape(b * k, dim)).view(b, k, *self.out_shape)
        return self.likelihood.log_prob_samples(out, x) - self._log_q_minus_log_p(z, mu_k, logvar_k, eps)
