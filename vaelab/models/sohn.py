"""Structured-output prediction (Sohn, Lee & Yan 2015): complete a digit from some of its quadrants.

x = the image with the hidden quadrants set to −1 (``quadrants`` 1, 2 or 3 given, see
:func:`vaelab.data.derive.quadrant_target_mask`), y = the hidden pixels, scored only there.
Paper's names beside the code's (per example, in nats; the code minimises the negatives):

    NN baseline     ŷ = f(x)                        ``SohnNN``: −log p(y|x) = Σ_target BCE(ŷ, y)  (exact)
    recognition     q(z | x, y)                     ``recognition`` (fed the whole image)
    prior network   p(z | x)                        ``prior`` (fed x with hidden pixels := ŷ of the
                                                    frozen baseline: the paper's recurrent connection)
    generation      p(y | x, z)                     ``generation`` (fed [z, x]; Bernoulli on target pixels)
    L_CVAE  = −KL(q(z|x,y) ‖ p(z|x)) + E_q log p(y|x,z)     terms ``cvae_kl``, ``cvae_recon`` (negated)
    L_GSNN  = E_{p(z|x)} log p(y|x,z)                        term ``gsnn_recon`` (negated)
    L_hybrid = α·L_CVAE + (1 − α)·L_GSNN                     ``alpha``: 1 = CVAE, 0 = GSNN

Plain images (a Batch of whole images, as ``vaelab train``/``eval`` give) are masked with
the model's own ``quadrants``; a batch in the completion form (x with hidden pixels, y the
whole image, ``extras["target_mask"]``) must hide exactly those pixels. Networks output the
target pixels only: the given pixels' outputs would never be scored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import Config, require
from ..data.derive import QUADRANT_FILL, quadrant_target_mask
from ..errors import VaelabError
from ..nn.gaussian import kl_diagonal_gaussians, log_normal_diag
from ..nn.mlp import activation as _activation
from ..nn.mlp import mlp
from . import fields
from .base import Batch, Loss, Model
from .registry import register
from .vae import gaussian_params

TARGET_MASK = "target_mask"
NELBO_PARTICLES = 10  # samples per row of the bound, as Pyro's table (one estimate of the same bound)


@dataclass(frozen=True)
class SohnNNConfig(Config):
    """The baseline x → ŷ: an MLP (784-500-500 as Pyro's reproduction) onto the target pixels."""

    input_shape: tuple[int, int, int] = fields.input_shape()
    quadrants: int = field(default=2, metadata={
        "help": "quadrants given: 1 = bottom-left, 2 = left half, 3 = all but the bottom-right"})
    hidden: tuple[int, ...] = fields.hidden((500, 500))
    activation: str = fields.activation("relu")

    def validate(self) -> None:
        require(self.quadrants in (1, 2, 3) and not isinstance(self.quadrants, bool),
                f"quadrants must be 1, 2 or 3 (1 = bottom-left given, 2 = left half, 3 = all but the "
                f"bottom-right), got {self.quadrants!r}")
        require(all(h > 0 for h in self.hidden), f"hidden layer sizes must be positive, got {list(self.hidden)}")
        _activation(self.activation)


@dataclass(frozen=True)
class SohnCVAEConfig(SohnNNConfig):
    """The conditional models: z = 200, 500-500 ReLU networks by default (as Pyro)."""

    latent_dim: int = fields.latent_dim(200)
    alpha: float = field(default=1.0, metadata={
        "help": "weight of L_CVAE in α·L_CVAE + (1−α)·L_GSNN: 1 = CVAE, 0 = GSNN, between = hybrid"})
    baseline: str = field(default="", metadata={
        "help": "run directory of a trained sohn-nn with the same --quadrants; its weights are copied in "
                "and frozen when training starts (then saved with this model)"})
    baseline_hidden: tuple[int, ...] = field(default=(500, 500), metadata={
        "help": "hidden layer sizes of that baseline"})

    def validate(self) -> None:
        super().validate()
        require(self.latent_dim > 0, f"latent_dim must be positive, got {self.latent_dim}")
        require(isinstance(self.alpha, (int, float)) and 0.0 <= self.alpha <= 1.0,
                f"alpha must lie in [0, 1] (1 = CVAE, 0 = GSNN), got {self.alpha}")
        require(all(h > 0 for h in self.baseline_hidden),
                f"baseline_hidden sizes must be positive, got {list(self.baseline_hidden)}")


def target_log_prob(logits: torch.Tensor, y_target: torch.Tensor) -> torch.Tensor:
    """log p(y|·) = Σ over target pixels of the Bernoulli log-probability (grey-level or binary y)."""
    return -F.binary_cross_entropy_with_logits(logits, y_target.expand_as(logits), reduction="none").sum(-1)


class _Completion(Model):
    """What every completion model shares: the target pattern and the task from a batch."""

    def __init__(self, config):
        super().__init__(config)
        c, h, w = config.input_shape
        mask = quadrant_target_mask(config.quadrants, h, w).expand(c, h, w).flatten()
        self.register_buffer("target", mask.nonzero().squeeze(1), persistent=False)
        self.register_buffer("target_flat", mask, persistent=False)
        self.pixels = c * h * w

    def task(self, batch: Batch | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y_target): x flat with hidden pixels at −1, y_target the target pixels (B, T)."""
        batch = batch if isinstance(batch, Batch) else Batch(batch)
        if TARGET_MASK in batch.extras:
            if batch.y is None or batch.y.shape != batch.x.shape:
                raise VaelabError(f"a batch with extras[{TARGET_MASK!r}] needs the whole image as y; derive it "
                                  "with vaelab.data.derive.quadrant_mask")
            given = batch.extras[TARGET_MASK].to(torch.bool).expand_as(batch.x).flatten(1)
            if not bool((given == self.target_flat).all()):
                raise VaelabError(f"the data hides other pixels than this model's --quadrants "
                                  f"{self.config.quadrants} setting; derive it with quadrant_mask(ds, "
                                  f"{self.config.quadrants}) or use a model trained for that setting")
            return batch.x.flatten(1).float(), batch.y.flatten(1).float().index_select(1, self.target)
        whole_y = batch.y is not None and batch.y.shape == batch.x.shape
        if whole_y or bool((batch.x < 0).any()):
            raise VaelabError(f"completion data needs extras[{TARGET_MASK!r}] marking the pixels to predict; "
                              "derive it with vaelab.data.derive.quadrant_mask, or pass whole images")
        whole = batch.x.flatten(1).float()
        return whole.masked_fill(self.target_flat, QUADRANT_FILL), whole.index_select(1, self.target)

    def as_completion(self, batch: Batch | torch.Tensor) -> Batch:
        """The batch in the completion form (x hidden at −1, y the whole image, the target
        mask): what evaluation's completion figures read; completion-form batches pass as they are."""
        batch = batch if isinstance(batch, Batch) else Batch(batch)
        if TARGET_MASK in batch.extras:
            self.task(batch[:1])  # checks the mask against this model's setting
            return batch
        x, _ = self.task(batch)
        mask = self.target_flat.view(1, *self.input_shape).expand_as(batch.x)
        return Batch(x.view_as(batch.x), batch.x, extras={TARGET_MASK: mask})

    def fill(self, x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """x with its target pixels replaced by ``values`` (B, T): an image a network can read."""
        return x.index_copy(1, self.target, values.to(x.dtype))

    def image(self, x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """The completed image (B, C, H, W): given pixels from x, target pixels from ``values``."""
        return self.fill(x, values).view(-1, *self.input_shape)

    def end_of_run(self, run_dir, data: Batch, seed: int = 0) -> list[str]:
        """``completions.png``: inputs, truths, mean completions (and samples, where there are any)."""
        from ..viz.completion import save_completion_panel

        if not len(data):
            return []
        save_completion_panel(self, data[:8], Path(run_dir) / "completions.png", samples=4, seed=seed)
        return ["completions.png"]


@register("sohn-nn")
class SohnNN(_Completion):
    """The deterministic baseline: ŷ = sigmoid(f(x)); its −log p(y|x) needs no sampling."""

    Config = SohnNNConfig

    def __init__(self, config: SohnNNConfig):
        super().__init__(config)
        self.net = mlp(self.pixels, config.hidden, len(self.target), config.activation)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss(self, batch: Batch) -> Loss:
        """−log p(y|x) = Σ_target BCE(ŷ, y), averaged over the batch."""
        x, y = self.task(batch)
        nll = -target_log_prob(self.logits(x), y).mean()
        return Loss(nll, {"target_nll": nll}, {"target_nll": 1.0})

    @torch.no_grad()
    def complete(self, batch: Batch) -> torch.Tensor:
        x, _ = self.task(batch)
        return self.image(x, torch.sigmoid(self.logits(x)))

    def completion_log_weights(self, batch: Batch, k: int, generator=None) -> torch.Tensor:
        """The exact log p(y|x), repeated k times: the estimate is exact for any k."""
        x, y = self.task(batch)
        return target_log_prob(self.logits(x), y).unsqueeze(1).expand(-1, k)


class SohnCVAE(_Completion):
    """CVAE, GSNN and their hybrid: one network set, the objective chosen by ``alpha``."""

    Config = SohnCVAEConfig

    def __init__(self, config: SohnCVAEConfig):
        super().__init__(config)
        d, t, latent, hid, act = self.pixels, len(self.target), config.latent_dim, config.hidden, config.activation
        self.baseline = SohnNN(SohnNNConfig(config.input_shape, config.quadrants, config.baseline_hidden,
                                            config.activation))
        self.baseline.requires_grad_(False)  # frozen: trained first, on its own objective
        self.recognition = mlp(d, hid, 2 * latent, act)    # q(z | x, y)
        self.prior = mlp(d, hid, 2 * latent, act)          # p(z | x)
        self.generation = mlp(latent + d, hid, t, act)     # p(y | x, z)

    # -- the networks -------------------------------------------------------------------
    def prior_params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z|x), fed x with its hidden pixels filled by the baseline's ŷ (recurrent connection)."""
        with torch.no_grad():
            y_hat = torch.sigmoid(self.baseline.logits(x))
        return gaussian_params(self.prior(self.fill(x, y_hat)))

    def recognition_params(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x, y), fed the whole image (x with its hidden pixels filled by the true y)."""
        return gaussian_params(self.recognition(self.fill(x, y)))

    def proposal_params(self, x, y, prior):
        """The proposal of the bound and the IS estimate: q(z|x,y), or the prior p(z|x) for a
        GSNN (α = 0), whose recognition network is never trained."""
        return self.recognition_params(x, y) if self.config.alpha > 0 else prior

    def generate(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Logits of p(y|x, z) over the target pixels, for z (B, L) or (B, k, L): the first layer
        is split so x's part is computed once per image, not once per sample."""
        first, rest = self.generation[0], self.generation[1:]
        latent = self.config.latent_dim
        x_part = F.linear(x, first.weight[:, latent:], first.bias)
        z_part = F.linear(z, first.weight[:, :latent])
        h = z_part + (x_part if z.dim() == 2 else x_part.unsqueeze(1))
        return rest(h)

    # -- objectives -----------------------------------------------------------------------
    def loss(self, batch: Batch) -> Loss:
        """−L_hybrid = α·(KL(q ‖ p(z|x)) + E_q[−log p(y|x,z)]) + (1 − α)·E_{p(z|x)}[−log p(y|x,z)]."""
        x, y = self.task(batch)
        mu_p, logvar_p = self.prior_params(x)
        alpha, terms, weights = float(self.config.alpha), {}, {}
        if alpha > 0:
            mu_q, logvar_q = self.recognition_params(x, y)
            z = mu_q + (0.5 * logvar_q).exp() * torch.randn_like(mu_q)
            terms["cvae_recon"] = -target_log_prob(self.generate(z, x), y).mean()
            terms["cvae_kl"] = kl_diagonal_gaussians(mu_q, logvar_q, mu_p, logvar_p).mean()
            weights.update(cvae_recon=alpha, cvae_kl=alpha)
        if alpha < 1:
            z = mu_p + (0.5 * logvar_p).exp() * torch.randn_like(mu_p)
            terms["gsnn_recon"] = -target_log_prob(self.generate(z, x), y).mean()
            weights["gsnn_recon"] = 1.0 - alpha
        total = sum(weights[k] * terms[k] for k in terms)
        return Loss(total, terms, weights)

    def _draws(self, mu, logvar, k: int, generator) -> torch.Tensor:
        """z (B, k, L) from N(mu, exp(logvar)), one generator per row where a list is given."""
        b, dim = mu.shape
        if isinstance(generator, (list, tuple)):
            eps = torch.stack([torch.randn(k, dim, generator=g, device=mu.device, dtype=mu.dtype) for g in generator])
        else:
            eps = torch.randn(b, k, dim, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu.unsqueeze(1) + (0.5 * logvar).exp().unsqueeze(1) * eps

    def completion_log_weights(self, batch: Batch, k: int, generator=None) -> torch.Tensor:
        """log p(y|x, z_i) + log p(z_i|x) − log r(z_i), z_i ~ r = the proposal (B, k); their
        logsumexp − log k estimates log p(y|x) over the target pixels."""
        x, y = self.task(batch)
        prior = self.prior_params(x)
        proposal = self.proposal_params(x, y, prior)
        z = self._draws(*proposal, k, generator)
        log_p_y = target_log_prob(self.generate(z, x), y.unsqueeze(1))
        log_p_z = log_normal_diag(z, prior[0].unsqueeze(1), prior[1].unsqueeze(1))
        log_r_z = log_normal_diag(z, proposal[0].unsqueeze(1), proposal[1].unsqueeze(1))
        return log_p_y + log_p_z - log_r_z

    @torch.no_grad()
    def completion_nelbo(self, batch: Batch, particles: int = NELBO_PARTICLES, generator=None) -> torch.Tensor:
        """Per row: E_r[−log p(y|x,z)] + KL(r ‖ p(z|x)) ≥ −log p(y|x), the mean over ``particles``
        draws of r (q(z|x,y); the prior for a GSNN, whose KL is then 0). A bound, not the CLL."""
        x, y = self.task(batch)
        prior = self.prior_params(x)
        proposal = self.proposal_params(x, y, prior)
        z = self._draws(*proposal, particles, generator)
        recon = -target_log_prob(self.generate(z, x), y.unsqueeze(1)).mean(1)
        return recon + kl_diagonal_gaussians(*proposal, *prior)

    # -- completions ----------------------------------------------------------------------
    @torch.no_grad()
    def complete(self, batch: Batch) -> torch.Tensor:
        """The mean of p(y|x, z) at the prior network's mean z (one deterministic completion)."""
        x, _ = self.task(batch)
        mu_p, _ = self.prior_params(x)
        return self.image(x, torch.sigmoid(self.generate(mu_p, x)))

    @torch.no_grad()
    def complete_samples(self, batch: Batch, n: int, generator=None) -> torch.Tensor:
        """(B, n, C, H, W): means of p(y|x, z) for n draws z ~ p(z|x), the completions' spread."""
        x, _ = self.task(batch)
        z = self._draws(*self.prior_params(x), n, generator)
        values = torch.sigmoid(self.generate(z, x))
        return torch.stack([self.image(x, values[:, i]) for i in range(n)], 1)

    # -- the baseline ---------------------------------------------------------------------
    def prepare(self, data) -> None:
        """A fresh run copies the baseline's weights in (resume and load restore them)."""
        self.attach_baseline(self.config.baseline)

    def attach_baseline(self, run: str) -> None:
        """Copy a trained ``sohn-nn`` run's weights into the frozen baseline; one line when the
        run is missing, is not a baseline, or was trained for another setting."""
        from ..io import load

        q = self.config.quadrants
        train = f"vaelab train sohn-nn --data mnist --quadrants {q} --out RUN"
        if not run:
            raise VaelabError(f"{self.name} needs a trained baseline: pass --baseline RUN, a sohn-nn run with "
                              f"--quadrants {q} ({train})")
        if not Path(run).is_dir():
            raise VaelabError(f"--baseline {run} does not exist; train one first: {train}")
        nn_model = load(run)
        if not isinstance(nn_model, SohnNN):
            raise VaelabError(f"--baseline {run} holds a '{nn_model.name}' run, not a sohn-nn baseline; {train}")
        if nn_model.config.quadrants != q:
            raise VaelabError(f"--baseline {run} was trained with --quadrants {nn_model.config.quadrants}, this "
                              f"model completes --quadrants {q}; pass a baseline trained for {q} ({train})")
        if (tuple(nn_model.config.hidden) != tuple(self.config.baseline_hidden)
                or tuple(nn_model.input_shape) != tuple(self.input_shape)
                or nn_model.config.activation != self.config.activation):
            raise VaelabError(f"--baseline {run} has hidden sizes {list(nn_model.config.hidden)} on "
                              f"{list(nn_model.input_shape)} images ({nn_model.config.activation}); pass "
                              f"--baseline-hidden {','.join(map(str, nn_model.config.hidden))} and the same "
                              "images and --activation")
        self.baseline.load_state_dict(nn_model.state_dict())


@dataclass(frozen=True)
class SohnGSNNConfig(SohnCVAEConfig):
    alpha: float = field(default=0.0, metadata={
        "help": "weight of L_CVAE in α·L_CVAE + (1−α)·L_GSNN: 0 = GSNN (the prior is then the proposal)"})


@dataclass(frozen=True)
class SohnHybridConfig(SohnCVAEConfig):
    alpha: float = field(default=0.5, metadata={
        "help": "weight of L_CVAE in α·L_CVAE + (1−α)·L_GSNN (1 = CVAE, 0 = GSNN)"})


register("sohn-cvae")(SohnCVAE)


@register("sohn-gsnn")
class SohnGSNN(SohnCVAE):
    """L_GSNN: trained with z from the prior network, the way it is used at test time."""

    Config = SohnGSNNConfig


@register("sohn-hybrid")
class SohnHybrid(SohnCVAE):
    """α·L_CVAE + (1 − α)·L_GSNN."""

    Config = SohnHybridConfig
