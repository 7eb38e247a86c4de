"""The label-conditional VAE: the generative model M2 of Kingma, Rezende, Mohamed & Welling
(2014), "Semi-supervised learning with deep generative models", without its classifier,
trained on labelled data only.

    p(z) = N(0, I),   p(x | y, z) = Bernoulli or Gaussian(decoder([z, onehot(y)])),
    q(z | x, y) = N(μ, σ²)(encoder([x, onehot(y)]))
    −ELBO(x, y) = E_q[−log p(x | y, z)] + KL(q(z | x, y) ‖ p(z))  ≥  −log p(x | y)

Every entry point reads the class indices from ``batch.y``. The networks, likelihoods, the
fused sample-and-KL node and the importance sampler are the VAE's, widened by the one-hot
label. What it estimates is log p(x|y), so evaluation reports ``cnll``, never ``nll``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import require
from ..errors import VaelabError
from . import fields
from .base import Batch, Loss, inputs
from .registry import register
from .vae import VAE, VAEConfig, _SampleAndKL, gaussian_params

SAMPLES_PER_CLASS = 10  # columns of the end-of-run grid, one row per class


def sample_labels(n: int, y, num_classes: int, device) -> torch.Tensor:
    """The classes of ``n`` samples: ``y`` one class for all or n classes, or None for the
    classes cycled 0, 1, ..., K−1, 0, ... (one line naming the shape otherwise)."""
    if y is None:
        return torch.arange(n, device=device) % num_classes
    y = torch.as_tensor(y, dtype=torch.int64, device=device)
    if y.ndim == 0:
        return y.expand(n)
    if tuple(y.shape) != (n,):
        raise VaelabError(f"sample: y must be one class or {n} classes (one per sample), "
                          f"got shape {tuple(y.shape)}")
    return y


@dataclass(frozen=True)
class CVAEConfig(VAEConfig):
    """:class:`~vaelab.models.vae.VAEConfig` plus ``num_classes``, the K of y ∈ {0..K−1}.

    The defaults (16-D z, β = 4, 40 epochs: ``CVAE.train_defaults``) are the configuration
    chosen on the validation split for label-conditioned samples that read as their class,
    in every class (benchmarks/cvae_defaults.py, docs/conditional.md); β = 1 gives the ELBO."""

    latent_dim: int = fields.latent_dim(16)
    beta: float = field(default=4.0, metadata={
        "help": "weight of the KL term (1 = the ELBO; the default 4 keeps the class out of z, so samples "
                "read as the class asked for)"})
    num_classes: int = field(default=10, metadata={
        "help": "K, the classes y = 0..K-1 of the labels (every label of the data must be below it)"})

    def validate(self) -> None:
        super().validate()
        require(self.num_classes >= 2, f"num_classes must be at least 2, got {self.num_classes}")


@register("cvae")
class CVAE(VAE):
    Config = CVAEConfig
    conditional = True
    train_defaults = {"epochs": 40}

    def condition_width(self) -> int:
        return self.config.num_classes

    # -- the label ------------------------------------------------------------------
    def one_hot(self, y: torch.Tensor, dtype=torch.float32,
                fix: str = "build it with num_classes covering every label, or drop those rows") -> torch.Tensor:
        """onehot(y) for class indices 0..K−1; an attribute vector per row (float, width K, e.g.
        several attributes at once) is taken as it is. Anything else is refused in one line."""
        k = self.config.num_classes
        if y.is_floating_point() and y.ndim == 2:
            if y.shape[1] != k:
                raise VaelabError(f"attribute vectors of width {y.shape[1]} given, but this {self.name} conditions on "
                                  f"{k} values (num_classes={k}); pass vectors of width {k} or class indices")
            return y.to(dtype)
        if y.dtype != torch.int64 or y.ndim != 1:
            raise VaelabError(f"{self.name} takes class indices as y (int64, one per image), got {y.dtype} "
                              f"{tuple(y.shape)}; pass labels such as a dataset's y")
        low, high = torch.aminmax(y) if len(y) else (0, 0)  # one pass over the labels, every training step
        if int(low) < 0 or int(high) >= k:
            bad = (y < 0) | (y >= k)
            raise VaelabError(f"label {int(y[bad][0])} is outside this {self.name}'s classes 0..{k - 1} "
                              f"(num_classes={k}); {fix}")
        return torch.eye(k, dtype=dtype, device=y.device).index_select(0, y)  # F.one_hot checks the range again

    def observed(self, data: Batch | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, onehot(y)) of a fully labelled batch."""
        x = inputs(data)
        if not isinstance(data, Batch) or data.y is None:
            raise VaelabError("cvae models p(x|y) and needs each image's class label: pass a Batch(x, y) or "
                              "labelled data (a Dataset with y)")
        unlabelled = 0 if data.labelled is None else int((~data.labelled).sum())  # None: every row labelled
        if unlabelled:
            raise VaelabError(f"cvae needs a label for every image, but {unlabelled} rows are unlabelled; "
                              "train it on the labelled rows (Dataset.split_labelled)")
        return x, self.one_hot(data.y.to(x.device), x.dtype)

    def _encoder_input(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[x, onehot(y)]: concatenated after the flattened image (MLP) or as K constant planes (conv)."""
        if self.config.backbone == "mlp":
            return torch.cat([x.flatten(1), y], 1)
        return torch.cat([x, y[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)

    # -- the model's pieces -----------------------------------------------------------
    def posterior_params(self, data: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and (clamped) log-variance of q(z|x, y)."""
        x, y = self.observed(data)
        return gaussian_params(self.encoder(self._encoder_input(x, y)))

    def decode(self, z: torch.Tensor, y: torch.Tensor):
        """p(x|y, z) for class indices ``y``."""
        return self.likelihood.distribution(self.decoder(torch.cat([z, self.one_hot(y, z.dtype)], 1)))

    @torch.no_grad()
    def reconstruct(self, data: Batch | torch.Tensor) -> torch.Tensor:
        """Mean of p(x | y, z = E[q(z|x, y)]). Images given without labels are reconstructed
        under the class the model finds likeliest, argmax_y ELBO(x, y) at the posterior mean."""
        if not isinstance(data, Batch) or data.y is None:
            data = Batch(inputs(data), self.likeliest_class(inputs(data)))
        x, y = self.observed(data)
        mu, _ = gaussian_params(self.encoder(self._encoder_input(x, y)))
        return self.likelihood.mean(self.decoder(torch.cat([mu, y], 1)))

    @torch.no_grad()
    def likeliest_class(self, x: torch.Tensor) -> torch.Tensor:
        """argmax_y of log p(x|y, μ) − KL(q(z|x, y) ‖ p(z)) (deterministic; y uniform a priori)."""
        scores = []
        for c in range(self.config.num_classes):
            y = self.one_hot(torch.full((len(x),), c, dtype=torch.int64, device=x.device), x.dtype)
            mu, logvar = gaussian_params(self.encoder(self._encoder_input(x, y)))
            out = self.decoder(torch.cat([mu, y], 1))
            kl = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(1)
            scores.append(self.likelihood.log_prob(out, x) - kl)
        return torch.stack(scores, 1).argmax(1)

    @torch.no_grad()
    def sample(self, n: int, y: torch.Tensor | int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Means of p(x|y, z) for z ~ N(0, I). ``y``: one class for all, n classes, or None
        for the classes cycled 0, 1, ..., K−1, 0, ...; a generator makes it repeatable."""
        p = next(self.parameters())
        y = sample_labels(n, y, self.config.num_classes, p.device)
        y = self.one_hot(y, p.dtype, fix=f"choose labels from 0 to {self.config.num_classes - 1}")
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=p.device)
        return self.likelihood.mean(self.decoder(torch.cat([z, y], 1)))

    # -- objectives -------------------------------------------------------------------
    def loss(self, batch: Batch) -> Loss:
        """−ELBO(x, y) = E_q(z|x,y)[−log p(x|y, z)] + β·KL(q(z|x, y) ‖ N(0, I)), per example."""
        x, y = self.observed(batch)
        mu, logvar = gaussian_params(self.encoder(self._encoder_input(x, y)))
        z, kl_sum = _SampleAndKL.apply(mu, logvar, torch.randn_like(mu))
        recon = self.likelihood.nll_sum(self.decoder(torch.cat([z, y], 1)), x) / x.shape[0]
        kl = kl_sum / x.shape[0]
        return Loss(recon + self.kl_weight * kl, {"recon": recon, "kl": kl},
                    {"recon": 1.0, "kl": self.kl_weight})

    def importance_log_weights(self, data: Batch, k: int, generator=None) -> torch.Tensor:
        """log p(x|y, z_i) + log p(z_i) − log q(z_i|x, y), z_i ~ q(z|x, y): shape (B, k); their
        logsumexp − log k estimates log p(x|y)."""
        x, y = self.observed(data)
        mu, logvar = gaussian_params(self.encoder(self._encoder_input(x, y)))
        return self.log_weights(x, mu, logvar, k, generator, condition=y)

    def prepare(self, data: Batch | torch.Tensor) -> None:
        """Check the labels against ``num_classes`` (when given), then the VAE's output bias."""
        if isinstance(data, Batch) and data.y is not None:
            self.observed(data)
        super().prepare(data)

    def end_of_run(self, run_dir, data: Batch, seed: int = 0) -> list[str]:
        """``samples.png``: one row per class, 10 samples each; ``reconstructions.png`` given the labels."""
        from ..viz.grids import grid, save_png, save_reconstructions

        run_dir = Path(run_dir)
        k = self.config.num_classes
        g = torch.Generator(device=next(self.parameters()).device).manual_seed(seed)
        y = torch.arange(k).repeat_interleave(SAMPLES_PER_CLASS)
        save_png(grid(self.sample(len(y), y=y, generator=g), nrow=SAMPLES_PER_CLASS), run_dir / "samples.png")
        written = ["samples.png"]
        if len(data):
            save_reconstructions(self, data[:32], run_dir / "reconstructions.png")
            written.append("reconstructions.png")
        return written
