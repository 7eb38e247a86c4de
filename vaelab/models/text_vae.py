"""The sentence VAE (Bowman et al. 2016, "Generating Sentences from a Continuous Space").

An LSTM encoder reads the sentence x = w_1 .. w_n <eos> into q(z|x) = N(μ(x), σ²(x)); an LSTM
decoder reads z (its initial state, and z beside every input word, as in Texar's
reproduction) and predicts x word by word. Per sentence,

    −ELBO(x) = E_q[−Σ_t log p(w_t | w_<t, z)] + KL(q(z|x) ‖ N(0, I))

The fixes for posterior collapse (KL → 0: the decoder ignores z) are options:

- KL annealing: the KL term's weight β rises from ``kl_start`` to 1: ``linear`` over
  ``kl_anneal_epochs``; ``sigmoid`` (Bowman et al.'s shape) centred there; ``cyclical`` (Fu et
  al. 2019) repeats a linear rise over the first half of every ``kl_anneal_epochs`` period.
- word dropout (Bowman et al.): decoder input words become <unk> with probability 1 − word_keep.
- free bits (Kingma et al. 2016): each latent dimension's batch-mean KL is charged at least
  ``free_bits`` nats, so pushing it below gains nothing.

The training objective is then recon + β·KL_charged; ``recon`` and ``kl`` are always the true
terms (their sum is the −ELBO, the bound ``nelbo`` that selects the best epoch).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import Config, choice, require
from ..nn.text import (SentenceDecoder, decoder_inputs, lengths_from_ids, lengths_of, run_lstm, trimmed,
                       word_dropout)
from .base import Batch, Loss
from .registry import register
from .text_base import TextModel, input_shape_field, vocabulary_field
from .vae import LOGVAR_RANGE

ANNEALING = ("none", "linear", "sigmoid", "cyclical")
LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class TextVAEConfig(Config):
    """Constructor arguments of :class:`TextVAE` (``config.json``). Defaults: Texar's
    reproduction of Bowman et al. (the ``paper`` profile), with every fix on."""

    input_shape: tuple[int] = input_shape_field()
    vocabulary: tuple[str, ...] = vocabulary_field()
    embedding_dim: int = field(default=256, metadata={"help": "word embedding size (encoder and decoder)"})
    hidden_dim: int = field(default=256, metadata={"help": "LSTM state size of the encoder and the decoder"})
    latent_dim: int = field(default=32, metadata={"help": "size of the latent code z"})
    decoder_dropout: float = field(default=0.5, metadata={
        "help": "dropout on the decoder's input embeddings and its LSTM outputs"})
    kl_anneal: str = field(default="linear", metadata={
        "help": "KL weight schedule: none (1 throughout), linear, sigmoid or cyclical"})
    kl_start: float = field(default=0.1, metadata={"help": "KL weight at the start of annealing",
                                                    "applies": {"kl_anneal": ("linear", "sigmoid", "cyclical")}})
    kl_anneal_epochs: float = field(default=10.0, metadata={
        "help": "epochs of the rise to 1 (cyclical: the period of each cycle)",
        "applies": {"kl_anneal": ("linear", "sigmoid", "cyclical")}})
    word_keep: float = field(default=0.5, metadata={
        "help": "probability that a decoder input word is kept (else <unk>; 1 = no word dropout)"})
    free_bits: float = field(default=0.0, metadata={
        "help": "nats of KL per latent dimension charged at least (0 = off)"})

    def validate(self) -> None:
        require(len(self.input_shape) == 1 and self.input_shape[0] >= 2,
                f"input_shape must be one length of at least 2, got {list(self.input_shape)}")
        require(min(self.embedding_dim, self.hidden_dim, self.latent_dim) > 0, "sizes must be positive")
        require(0 <= self.decoder_dropout < 1, f"decoder_dropout must lie in [0, 1), got {self.decoder_dropout}")
        choice("KL annealing", self.kl_anneal, ANNEALING)
        require(0 <= self.kl_start <= 1, f"kl_start must lie in [0, 1], got {self.kl_start}")
        require(self.kl_anneal_epochs > 0, f"kl_anneal_epochs must be positive, got {self.kl_anneal_epochs}")
        require(0 < self.word_keep <= 1, f"word_keep must lie in (0, 1], got {self.word_keep}")
        require(self.free_bits >= 0, f"free_bits must be >= 0 (0 = off), got {self.free_bits}")


def kl_weight(schedule: str, epoch: float, start: float, epochs: float) -> float:
    """β at fractional ``epoch`` under ``schedule`` (see the module docstring)."""
    if schedule == "none" or math.isinf(epoch):
        return 1.0
    if schedule == "linear":
        return min(1.0, start + (1.0 - start) * epoch / epochs)
    if schedule == "sigmoid":
        return start + (1.0 - start) / (1.0 + math.exp(-10.0 * (epoch / epochs - 0.5)))
    phase = (epoch % epochs) / epochs  # cyclical: rise over the first half of each period, then hold 1
    return min(1.0, start + (1.0 - start) * phase / 0.5)


@register("text-vae")
class TextVAE(TextModel):
    Config = TextVAEConfig
    train_defaults = {"batch_size": 32, "epochs": 100, "monitor": "nelbo"}

    def __init__(self, config: TextVAEConfig):
        super().__init__(config)
        v, e, h, d = max(len(config.vocabulary), 4), config.embedding_dim, config.hidden_dim, config.latent_dim
        self.embed = nn.Embedding(v, e, padding_idx=0)
        self.encoder = nn.LSTM(e, h, batch_first=True)
        self.to_posterior = nn.Linear(h, 2 * d)
        self.to_state = nn.Linear(d, 2 * h)
        self.decoder = SentenceDecoder(v, e, h, d, config.decoder_dropout, config.decoder_dropout)
        self.beta = kl_weight(config.kl_anneal, 0.0, config.kl_start, config.kl_anneal_epochs)

    # -- q(z|x) and p(x|z) ---------------------------------------------------------
    def posterior_params(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and clamped log-variance of q(z|x) from the encoder's last state."""
        lengths = lengths_of(batch)
        _, (h, _) = run_lstm(self.encoder, self.embed(trimmed(batch.x, lengths)), lengths)
        mu, logvar = self.to_posterior(h[-1]).chunk(2, -1)
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def kl_per_dim(self, batch: Batch) -> torch.Tensor:
        """KL(q(z_j|x) ‖ N(0, 1)) per sentence and dimension, (B, L)."""
        mu, logvar = self.posterior_params(batch)
        return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)

    def _state(self, z: torch.Tensor):
        h, c = torch.tanh(self.to_state(z)).chunk(2, -1)
        return h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous()

    def reconstruction_nll(self, x: torch.Tensor, lengths: torch.Tensor, z: torch.Tensor,
                           keep: float = 1.0) -> torch.Tensor:
        """−log p(x|z) per sentence (B,); ``keep`` < 1 applies word dropout to the inputs."""
        inputs = word_dropout(decoder_inputs(x), keep, self.unk_id)
        return self.decoder.nll(inputs, x, lengths, z, self._state(z))

    # -- the objective --------------------------------------------------------------
    def schedule(self, epoch: float) -> None:
        c = self.config
        self.beta = kl_weight(c.kl_anneal, epoch, c.kl_start, c.kl_anneal_epochs)

    def loss(self, batch: Batch) -> Loss:
        """recon + β·KL (free bits: each dimension's batch-mean KL charged at least λ)."""
        lengths = lengths_of(batch)
        x = trimmed(batch.x, lengths)
        mu, logvar = self.posterior_params(batch)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        keep = self.config.word_keep if self.training else 1.0
        recon = self.reconstruction_nll(x, lengths, z, keep).mean()
        kl_dims = (0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)).mean(0)
        kl = kl_dims.sum()
        charged = kl_dims.clamp(min=self.config.free_bits).sum() if self.config.free_bits > 0 else kl
        terms = {"recon": recon, "kl": kl, "nelbo": (recon + kl).detach()}
        weights = {"recon": 1.0, "kl": self.beta, "nelbo": 0.0}
        if self.config.free_bits > 0:
            terms["kl_charged_minus_kl"] = (charged - kl)
            weights["kl_charged_minus_kl"] = self.beta
        return Loss(recon + self.beta * charged, terms, weights)

    # -- evaluation -----------------------------------------------------------------
    def importance_log_weights(self, batch: Batch, k: int, generator=None) -> torch.Tensor:
        """log p(x|z_i) + log p(z_i) − log q(z_i|x), z_i ~ q(z|x): shape (B, k)."""
        lengths = lengths_of(batch)
        x = trimmed(batch.x, lengths)
        mu, logvar = self.posterior_params(batch)
        b, d = mu.shape
        if isinstance(generator, (list, tuple)):
            eps = torch.stack([torch.randn(k, d, generator=g, device=mu.device) for g in generator])
        else:
            eps = torch.randn(b, k, d, generator=generator, device=mu.device)
        z = mu.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps
        log_px = -self.reconstruction_nll(x.repeat_interleave(k, 0), lengths.repeat_interleave(k, 0),
                                          z.reshape(b * k, d)).view(b, k)
        log_pz = -0.5 * (z.square() + LOG_2PI).sum(-1)
        log_qz = -0.5 * (eps.square() + LOG_2PI + logvar.unsqueeze(1)).sum(-1)
        return log_px + log_pz - log_qz

    # -- text out --------------------------------------------------------------------
    @torch.no_grad()
    def decode_text(self, z: torch.Tensor, greedy: bool = True, generator: torch.Generator | None = None) -> Batch:
        """Sentences (as ids with lengths) decoded from codes z (B, L)."""
        ids = self.decoder.generate(len(z), self.config.input_shape[0], z=z, state=self._state(z),
                                    greedy=greedy, generator=generator)
        return Batch(ids, extras={"lengths": lengths_from_ids(ids)})

    @torch.no_grad()
    def generate(self, n: int, greedy: bool = False, generator: torch.Generator | None = None) -> Batch:
        """Sentences from z ~ N(0, I)."""
        z = torch.randn(n, self.config.latent_dim, generator=generator).to(self.to_state.weight.device)
        return self.decode_text(z, greedy, generator)

    @property
    def can_sample(self) -> bool:
        return False  # no image grid: text samples come from ``generate`` (vaelab sample prints them)

    def end_of_run(self, run_dir, data: Batch, seed: int = 0) -> list[str]:
        from ..text_outputs import write_text_outputs
        return write_text_outputs(self, run_dir, data, seed)
