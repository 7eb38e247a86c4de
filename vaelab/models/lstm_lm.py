"""The LSTM language model, Bowman et al. 2016's baseline for the sentence VAE.

    log p(x) = Σ_{t=1}^{n+1} log p(w_t | w_<t),   w_{n+1} = <eos>

one sentence at a time (no context carried across sentences), so −log p(x) is exact and
per sentence: the loss is its mean over the batch, and the perplexity is
exp(Σ −log p(x) / Σ (n + 1)) over the words and the ``<eos>`` of each sentence.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import Config, require
from ..nn.text import SentenceDecoder, decoder_inputs, lengths_of, lengths_from_ids, trimmed
from .base import Batch, Loss
from .registry import register
from .text_base import TextModel, input_shape_field, vocabulary_field


@dataclass(frozen=True)
class LSTMLMConfig(Config):
    """Constructor arguments of :class:`LSTMLM` (``config.json``)."""

    input_shape: tuple[int] = input_shape_field()
    vocabulary: tuple[str, ...] = vocabulary_field()
    embedding_dim: int = field(default=256, metadata={"help": "word embedding size"})
    hidden_dim: int = field(default=256, metadata={"help": "LSTM state size"})
    dropout: float = field(default=0.5, metadata={"help": "dropout on the input embeddings and the LSTM outputs"})

    def validate(self) -> None:
        require(len(self.input_shape) == 1 and self.input_shape[0] >= 2,
                f"input_shape must be one length of at least 2, got {list(self.input_shape)}")
        require(self.embedding_dim > 0 and self.hidden_dim > 0, "embedding_dim and hidden_dim must be positive")
        require(0 <= self.dropout < 1, f"dropout must lie in [0, 1), got {self.dropout}")


@register("lstm-lm")
class LSTMLM(TextModel):
    Config = LSTMLMConfig
    train_defaults = {"batch_size": 32, "epochs": 30}

    def __init__(self, config: LSTMLMConfig):
        super().__init__(config)
        v = max(len(config.vocabulary), 4)
        self.decoder = SentenceDecoder(v, config.embedding_dim, config.hidden_dim, 0, config.dropout, config.dropout)

    def sentence_nll(self, batch: Batch) -> torch.Tensor:
        """−log p(x) per sentence (B,), nats."""
        lengths = lengths_of(batch)
        x = trimmed(batch.x, lengths)
        return self.decoder.nll(decoder_inputs(x), x, lengths)

    def loss(self, batch: Batch) -> Loss:
        """Mean over the batch of −log p(x): nats per sentence."""
        nll = self.sentence_nll(batch).mean()
        return Loss(nll, {"nll": nll}, {"nll": 1.0})

    def exact_log_likelihood(self, batch: Batch) -> torch.Tensor:
        return -self.sentence_nll(batch)

    @torch.no_grad()
    def generate(self, n: int, greedy: bool = False, generator: torch.Generator | None = None) -> Batch:
        ids = self.decoder.generate(n, self.config.input_shape[0], greedy=greedy, generator=generator)
        return Batch(ids, extras={"lengths": lengths_from_ids(ids)})

    @property
    def can_sample(self) -> bool:
        return False  # no image grid: text samples come from ``generate`` (vaelab sample prints them)

    def end_of_run(self, run_dir, data: Batch, seed: int = 0) -> list[str]:
        from ..text_outputs import write_text_outputs
        return write_text_outputs(self, run_dir, data, seed)
