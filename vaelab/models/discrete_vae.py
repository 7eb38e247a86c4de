"""VAEs with discrete codes: one-hot (``catvae``) and binary (``binvae``).

``catvae`` has N categorical latent variables of K classes each (30 × 10 in Jang et al. 2017;
N = 1 is a single one-hot code that clusters the data). ``binvae`` has ``bits`` Bernoulli
latents (a binary code for retrieval). Both have a uniform prior (Cat(1/K) per variable,
Bernoulli(0.5) per bit) and a discrete posterior q(z|x) given by the encoder's logits.

The model is discrete; only the *training sample* is relaxed, so gradients reach the encoder:

- Gumbel-softmax / concrete (Jang et al. 2017; Maddison et al. 2017):
  y = softmax((logits + g) / τ), g ~ Gumbel(0, 1), a point in the simplex;
- binary concrete: y = sigmoid((logit + log u − log(1 − u)) / τ), u ~ U(0, 1), in (0, 1);
- ``straight_through``: the forward pass uses the hard code (argmax one-hot, or y > 1/2),
  the backward pass the relaxed sample's gradient.

τ follows ``schedule(epoch)``: τ = max(τ_min, τ0 · exp(−rate · epoch)), Jang et al.'s
annealing with the rate per epoch rather than per step, so a resumed run picks it up exactly.

The KL term is exact: KL(q(z|x) ‖ p(z)) = Σ_n Σ_k q_nk log(K q_nk) for the categorical
variables and Σ_j [q_j log 2q_j + (1 − q_j) log 2(1 − q_j)] for the bits; the relaxation is
never in the KL. In evaluation mode the loss draws *hard* codes from q(z|x), so its ``recon``
+ ``kl`` is the ELBO of the discrete model, and ``importance_log_weights`` samples hard codes
from q(z|x) as the proposal: ``vaelab eval --nll-samples K`` estimates log p(x) of the
discrete model, not of its relaxation. With a small code space (one categorical variable)
``enumerated_log_likelihood`` sums p(x|z) p(z) over every code: log p(x) exactly.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config, choice, require
from ..errors import VaelabError
from ..nn.conv import ConvDecoder, ConvEncoder
from ..nn.init import glorot_, output_bias_from_data_
from ..nn.likelihoods import LIKELIHOODS, make_likelihood
from ..nn.mlp import mlp, validate_network
from .base import Batch, Loss, Model, inputs
from . import fields
from .registry import register

ENUMERATION_LIMIT = 4096  # the most codes enumerated_log_likelihood sums over


def _temperature(default: float):
    return field(default=default, metadata={
        "help": "starting temperature τ0 of the relaxation (> 0; annealed towards --min-temperature)"})


def _min_temperature(default: float):
    return field(default=default, metadata={
        "help": "the temperature annealing stops at (> 0; Jang et al.: 0.5)"})


def _anneal_rate(default: float):
    return field(default=default, metadata={
        "help": "τ = max(τ_min, τ0·exp(−rate·epoch)); rate per epoch (0 = a constant τ0)"})


def _straight_through():
    return field(default=False, metadata={
        "help": "forward pass with the hard code, gradient of the relaxed sample (straight-through)"})


@dataclass(frozen=True)
class _DiscreteConfig(Config):
    """The settings and checks both families share: the networks, the likelihood and the
    relaxation's temperature schedule."""

    input_shape: tuple[int, int, int] = fields.input_shape()
    hidden: tuple[int, ...] = fields.hidden((512, 256))
    activation: str = fields.activation("relu")
    backbone: str = fields.backbone("mlp")
    channels: tuple[int, ...] = fields.channels((32, 64))
    likelihood: str = fields.likelihood()
    sigma: float = fields.sigma()
    temperature: float = _temperature(1.0)
    min_temperature: float = _min_temperature(0.5)
    anneal_rate: float = _anneal_rate(0.03)
    straight_through: bool = _straight_through()
    beta: float = field(default=1.0, metadata={"help": "weight of the KL term (1 = the ELBO)"})
    init: str = fields.init("torch")
    output_bias_from_data: bool = fields.output_bias_from_data(True)

    def validate(self) -> None:
        choice("backbone", self.backbone, ("mlp", "conv"))
        validate_network(self, self.backbone == "conv")
        choice("likelihood", self.likelihood, LIKELIHOODS)
        require(self.sigma > 0, f"sigma must be > 0, got {self.sigma}")
        require(self.temperature > 0,
                f"temperature must be > 0 (the relaxation divides by it), got {self.temperature}")
        require(self.min_temperature > 0,
                f"min_temperature must be > 0 (the relaxation divides by it), got {self.min_temperature}")
        require(self.min_temperature <= self.temperature,
                f"min_temperature ({self.min_temperature}) must be <= temperature ({self.temperature}): "
                "annealing only lowers τ")
        require(self.anneal_rate >= 0, f"anneal_rate must be >= 0 (0 keeps τ constant), got {self.anneal_rate}")
        require(self.beta >= 0, f"beta must be >= 0 (1 is the ELBO), got {self.beta}")


@dataclass(frozen=True)
class CatVAEConfig(_DiscreteConfig):
    """Constructor arguments of :class:`CatVAE` (saved as ``config.json``). The code is
    ``categories`` one-hot vectors of ``classes`` entries each (30 × 10: Jang et al.)."""

    categories: int = field(default=30, metadata={
        "help": "number N of categorical latent variables (1 = a single one-hot code: clustering)"})
    classes: int = field(default=10, metadata={"help": "classes K of each categorical variable (>= 2)"})

    @property
    def latent_dim(self) -> int:
        """Width of the code the decoder reads: N·K one-hot entries."""
        return self.categories * self.classes

    def validate(self) -> None:
        require(self.categories >= 1, f"categories must be >= 1 (the number of one-hot codes), got {self.categories}")
        require(self.classes >= 2, f"classes must be >= 2 (a one-hot code of one class carries nothing), "
                                   f"got {self.classes}")
        super().validate()


@dataclass(frozen=True)
class BinVAEConfig(_DiscreteConfig):
    """Constructor arguments of :class:`BinVAE` (saved as ``config.json``): a code of ``bits``
    Bernoulli latents."""

    bits: int = field(default=32, metadata={"help": "number of binary latents (the code's length in bits)"})

    @property
    def latent_dim(self) -> int:
        return self.bits

    def validate(self) -> None:
        require(self.bits >= 1, f"bits must be >= 1 (the length of the binary code), got {self.bits}")
        super().validate()


# -- the relaxations (functions of logits and noise, so tests can check them alone) --------------
def gumbel_softmax(logits: torch.Tensor, tau: float, hard: bool = False,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """A relaxed one-hot sample per row of the last dimension: softmax((logits + g) / τ);
    ``hard``: the argmax one-hot forward, the relaxed sample's gradient backward."""
    if tau <= 0:
        raise VaelabError(f"the temperature must be > 0, got {tau}")
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    g = -torch.log((-torch.log(u.clamp_min(1e-20))).clamp_min(1e-20))
    y = torch.softmax((logits + g) / tau, dim=-1)
    return straight_through(y) if hard else y


def straight_through(y: torch.Tensor) -> torch.Tensor:
    """The one-hot of each row's argmax forward, ``y``'s gradient backward."""
    return F.one_hot(y.argmax(-1), y.shape[-1]).to(y) - y.detach() + y


def binary_concrete(logits: torch.Tensor, tau: float, hard: bool = False,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """A relaxed Bernoulli sample per entry: sigmoid((logit + log u − log(1 − u)) / τ) in
    (0, 1); ``hard``: the bit (y > 1/2) forward, the relaxed sample's gradient backward."""
    if tau <= 0:
        raise VaelabError(f"the temperature must be > 0, got {tau}")
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    u = u.clamp(1e-6, 1 - 1e-6)
    y = torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / tau)
    if not hard:
        return y
    return (y > 0.5).to(y) - y.detach() + y


def _uniforms(shape: tuple[int, ...], generator, batch: int, like: torch.Tensor) -> torch.Tensor:
    """U(0, 1) noise of shape (batch, *shape): from one generator, or one per row."""
    if isinstance(generator, (list, tuple)):
        return torch.stack([torch.rand(shape, generator=g, device=like.device, dtype=like.dtype)
                            for g in generator])
    return torch.rand((batch, *shape), generator=generator, device=like.device, dtype=like.dtype)


class _DiscreteVAE(Model):
    """What both families share: networks, annealing, the loss, the honest estimators."""

    def __init__(self, config):
        super().__init__(config)
        c, h, w = config.input_shape
        self.likelihood = make_likelihood(config.likelihood, config.sigma)
        out_c = c * self.likelihood.params_per_channel
        self.out_shape = (out_c, h, w)
        width = config.latent_dim
        if config.backbone == "mlp":
            self.encoder = nn.Sequential(nn.Flatten(), mlp(c * h * w, config.hidden, width, config.activation))
            self.decoder = nn.Sequential(mlp(width, tuple(reversed(config.hidden)), out_c * h * w, config.activation),
                                         nn.Unflatten(1, self.out_shape))
        else:
            self.encoder = ConvEncoder((c, h, w), config.channels, width, config.activation, config.hidden)
            self.decoder = ConvDecoder(width, config.channels, config.input_shape, out_c,
                                       config.activation, config.hidden)
        if config.init == "glorot":
            glorot_(self)
        self.temperature = config.temperature

    # -- what a family defines --------------------------------------------------------------
    def logits(self, data: Batch | torch.Tensor) -> torch.Tensor:
        """The posterior's logits: (B, N, K) for catvae, (B, bits) for binvae."""
        raise NotImplementedError

    def relaxed(self, logits: torch.Tensor, hard: bool) -> torch.Tensor:
        raise NotImplementedError

    def kl(self, logits: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) ‖ p(z)) per row, exactly."""
        raise NotImplementedError

    def hard_samples(self, logits: torch.Tensor, k: int, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """k codes per row drawn from q(z|x), as decoder inputs (B, k, width), and log q(z|x) (B, k)."""
        raise NotImplementedError

    def mode(self, logits: torch.Tensor) -> torch.Tensor:
        """The most probable code under q(z|x), as decoder input (B, width)."""
        raise NotImplementedError

    def prior_codes(self, n: int, generator=None) -> torch.Tensor:
        raise NotImplementedError

    def all_codes(self) -> torch.Tensor:
        """Every code of the (small) code space as decoder inputs (M, width)."""
        raise NotImplementedError

    log_prior: float  # log p(z), the same for every code under the uniform prior
    code_space: int  # how many codes there are (K^N or 2^bits), an exact int

    # -- training -----------------------------------------------------------------------------
    def temperature_at(self, epoch: float) -> float:
        """τ = max(τ_min, τ0 · exp(−rate · epoch)) (epoch = inf: τ_min, as in evaluation)."""
        cfg = self.config
        if cfg.anneal_rate == 0:
            return cfg.temperature
        if math.isinf(epoch):
            return cfg.min_temperature
        return max(cfg.min_temperature, cfg.temperature * math.exp(-cfg.anneal_rate * epoch))

    def schedule(self, epoch: float) -> None:
        self.temperature = self.temperature_at(epoch)

    def loss(self, batch: Batch | torch.Tensor) -> Loss:
        """−ELBO = E_q[−log p(x|z)] + β·KL(q(z|x) ‖ p(z)) per example, the KL exact. Training
        samples z from the relaxation at the current τ; evaluation mode draws hard codes."""
        x = inputs(batch)
        logits = self.logits(x)
        if self.training:
            z = self.relaxed(logits, self.config.straight_through)
        else:
            z = self.hard_samples(logits, 1)[0][:, 0]
        recon = self.likelihood.nll_sum(self.decoder(z), x) / x.shape[0]
        kl = self.kl(logits).sum() / x.shape[0]
        beta = self.config.beta
        return Loss(recon + beta * kl, {"recon": recon, "kl": kl}, {"recon": 1.0, "kl": beta})

    def prepare(self, data: Batch | torch.Tensor) -> None:
        """Set the decoder's output bias to logit(mean training pixel), clipped as in IWAE."""
        if self.config.output_bias_from_data:
            output_bias_from_data_(self.decoder, inputs(data), self.config.input_shape)

    # -- using the model ----------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, data: Batch | torch.Tensor) -> torch.Tensor:
        """Mean of p(x | z = the most probable code under q(z|x)): deterministic."""
        return self.likelihood.mean(self.decoder(self.mode(self.logits(inputs(data)))))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Means of p(x|z) for codes z drawn from the uniform prior."""
        return self.likelihood.mean(self.decoder(self.prior_codes(n, generator)))

    # -- honest likelihoods -------------------------------------------------------------------
    def importance_log_weights(self, data: Batch | torch.Tensor, k: int,
                               generator: torch.Generator | Sequence[torch.Generator] | None = None
                               ) -> torch.Tensor:
        """log p(x|z_i) + log p(z_i) − log q(z_i|x) for k *hard* codes z_i ~ q(z|x): (B, k).
        ``generator``: one for the batch, or one per image (as the VAE's)."""
        x = inputs(data)
        logits = self.logits(x)
        z, log_q = self.hard_samples(logits, k, generator)
        b = x.shape[0]
        out = self.decoder(z.view(b * k, -1)).view(b, k, *self.out_shape)
        return self.likelihood.log_prob_samples(out, x) + self.log_prior - log_q

    def enumerated_log_likelihood(self, data: Batch | torch.Tensor) -> torch.Tensor:
        """log p(x) = logsumexp_z [log p(x|z) + log p(z)] over every code, per row (B,):
        exact, for code spaces of at most ``ENUMERATION_LIMIT`` codes (one categorical
        variable, or a few bits)."""
        if self.code_space > ENUMERATION_LIMIT:
            size = f"{self.code_space}" if self.code_space < 10 ** 9 else f"about 10^{len(str(self.code_space)) - 1}"
            raise VaelabError(f"the code space has {size} codes, more than the {ENUMERATION_LIMIT} an exact sum "
                              "allows; estimate log p(x) with --nll-samples instead")
        x = inputs(data)
        codes = self.all_codes()
        out = self.decoder(codes)
        b, m = x.shape[0], codes.shape[0]
        log_px = self.likelihood.log_prob_samples(out.unsqueeze(0).expand(b, m, *out.shape[1:]), x)
        return torch.logsumexp(log_px + self.log_prior, dim=1)


@register("catvae")
class CatVAE(_DiscreteVAE):
    """N categorical latents of K classes, Gumbel-softmax relaxation while training."""

    Config = CatVAEConfig

    def __init__(self, config: CatVAEConfig):
        super().__init__(config)
        n, k = config.categories, config.classes
        self.log_prior = -n * math.log(k)
        self.code_space = k ** n
        if n == 1:  # a single one-hot code clusters: expose q(y|x) as the clustering capability
            self.cluster_probs = self._cluster_probs

    def logits(self, data: Batch | torch.Tensor) -> torch.Tensor:
        cfg = self.config
        return self.encoder(inputs(data)).view(-1, cfg.categories, cfg.classes)

    def relaxed(self, logits: torch.Tensor, hard: bool) -> torch.Tensor:
        return gumbel_softmax(logits, self.temperature, hard).flatten(1)

    def kl(self, logits: torch.Tensor) -> torch.Tensor:
        log_q = torch.log_softmax(logits, -1)
        return (log_q.exp() * (log_q + math.log(self.config.classes))).sum((1, 2))

    def hard_samples(self, logits, k, generator=None):
        b, n, classes = logits.shape
        log_q = torch.log_softmax(logits, -1)
        u = _uniforms((k, n, classes), generator, b, logits).clamp_min(1e-20)
        idx = (log_q.unsqueeze(1) - torch.log((-torch.log(u)).clamp_min(1e-20))).argmax(-1)  # Gumbel-max: exact samples
        log_q_z = log_q.unsqueeze(1).expand(b, k, n, classes).gather(-1, idx.unsqueeze(-1)).squeeze(-1).sum(-1)
        return F.one_hot(idx, classes).to(logits).flatten(2), log_q_z

    def mode(self, logits):
        return F.one_hot(logits.argmax(-1), self.config.classes).to(logits).flatten(1)

    def prior_codes(self, n, generator=None):
        p = next(self.parameters())
        cfg = self.config
        idx = torch.randint(cfg.classes, (n, cfg.categories), generator=generator, device=p.device)
        return F.one_hot(idx, cfg.classes).to(p).flatten(1)

    def all_codes(self):
        p = next(self.parameters())
        cfg = self.config
        grids = torch.cartesian_prod(*[torch.arange(cfg.classes, device=p.device)] * cfg.categories)
        return F.one_hot(grids.view(-1, cfg.categories), cfg.classes).to(p).flatten(1)

    @torch.no_grad()
    def _cluster_probs(self, data: Batch | torch.Tensor) -> torch.Tensor:
        """q(y|x) of the single one-hot code, (B, K): the cluster probabilities."""
        return torch.softmax(self.logits(data)[:, 0], -1)


@register("binvae")
class BinVAE(_DiscreteVAE):
    """``bits`` Bernoulli latents, binary-concrete relaxation while training."""

    Config = BinVAEConfig

    def __init__(self, config: BinVAEConfig):
        super().__init__(config)
        self.log_prior = -config.bits * math.log(2)
        self.code_space = 2 ** config.bits

    def logits(self, data: Batch | torch.Tensor) -> torch.Tensor:
        return self.encoder(inputs(data))

    def relaxed(self, logits: torch.Tensor, hard: bool) -> torch.Tensor:
        return binary_concrete(logits, self.temperature, hard)

    def kl(self, logits: torch.Tensor) -> torch.Tensor:
        q = torch.sigmoid(logits)
        # q log 2q + (1 − q) log 2(1 − q), with log q = logsigmoid(l), log(1 − q) = logsigmoid(−l)
        return (q * F.logsigmoid(logits) + (1 - q) * F.logsigmoid(-logits)).sum(1) + logits.shape[1] * math.log(2)

    def hard_samples(self, logits, k, generator=None):
        b, bits = logits.shape
        u = _uniforms((k, bits), generator, b, logits)
        z = (u < torch.sigmoid(logits).unsqueeze(1)).to(logits)
        l = logits.unsqueeze(1)
        log_q = (z * F.logsigmoid(l) + (1 - z) * F.logsigmoid(-l)).sum(-1)
        return z, log_q

    def mode(self, logits):
        return (logits > 0).to(logits)

    def prior_codes(self, n, generator=None):
        p = next(self.parameters())
        return (torch.rand(n, self.config.bits, generator=generator, device=p.device) < 0.5).to(p)

    def all_codes(self):
        p = next(self.parameters())
        bits = self.config.bits
        m = torch.arange(2 ** bits, device=p.device)
        return ((m.unsqueeze(1) >> torch.arange(bits, device=p.device)) & 1).to(p)

    @torch.no_grad()
    def binary_codes(self, data: Batch | torch.Tensor) -> torch.Tensor:
        """The most probable code under q(z|x) (each bit: q > 1/2), bool (B, bits)."""
        return self.logits(data) > 0
