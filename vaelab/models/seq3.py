"""SEQ³, the sequence-to-sequence-to-sequence autoencoder (Baziotis et al. 2019), as the lectures
tell it: the code of a sentence is itself a shorter sequence of words.

A compressor (an LSTM encoder of x, then an LSTM decoder) writes a middle sequence
y_1 .. y_m of vocabulary words, m = ⌈ratio · n⌉ for a sentence of n words; each y_t is drawn
by the straight-through Gumbel-softmax (a hard one-hot forward, the relaxed sample's gradient
backward; Jang et al. 2017), so the whole chain is trained end to end. A reconstructor (an LSTM
encoder of y, then an LSTM decoder) maps y back to x:

    L = −log p_rec(x | y) + λ · Σ_t KL(q_t ‖ p_LM(· | y_<t))

q_t is the compressor's distribution over the t-th middle word and p_LM a pretrained, frozen
``lstm-lm`` (the language-model prior, Baziotis et al. 2019, §2.3). With λ = 0 nothing asks y
to be language: it becomes a "secret code" only the reconstructor reads. Middle words never
include <pad>, <bos> or <eos>.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..config import Config, require
from ..errors import VaelabError
from ..nn.text import (BOS_ID, EOS_ID, SentenceDecoder, decoder_inputs, length_mask, lengths_of, run_lstm,
                       trimmed)
from .base import Batch, Loss
from .registry import register
from .text_base import TextModel, input_shape_field, vocabulary_field


@dataclass(frozen=True)
class Seq3Config(Config):
    """Constructor arguments of :class:`Seq3` (``config.json``)."""

    input_shape: tuple[int] = input_shape_field()
    vocabulary: tuple[str, ...] = vocabulary_field()
    embedding_dim: int = field(default=128, metadata={"help": "word embedding size (shared by every part)"})
    hidden_dim: int = field(default=256, metadata={"help": "LSTM state size of every encoder and decoder"})
    ratio: float = field(default=0.5, metadata={"help": "middle sequence length as a fraction of the sentence's words"})
    tau: float = field(default=0.5, metadata={"help": "Gumbel-softmax temperature"})
    lm_weight: float = field(default=0.0, metadata={
        "help": "λ, the weight of the language-model prior on the middle sequence (0 = none: a secret code)"})
    lm_run: str = field(default="", metadata={
        "metavar": "DIR", "help": "run directory of the trained lstm-lm that scores the middle sequence "
                                  "(its weights are copied in when training starts; needed when --lm-weight > 0)"})
    lm_embedding_dim: int = field(default=0, metadata={"option": False, "help": "the prior's embedding size (from lm_run)"})
    lm_hidden_dim: int = field(default=0, metadata={"option": False, "help": "the prior's LSTM size (from lm_run)"})

    def validate(self) -> None:
        require(len(self.input_shape) == 1 and self.input_shape[0] >= 2,
                f"input_shape must be one length of at least 2, got {list(self.input_shape)}")
        require(min(self.embedding_dim, self.hidden_dim) > 0, "sizes must be positive")
        require(0 < self.ratio <= 1, f"ratio must lie in (0, 1], got {self.ratio}")
        require(self.tau > 0, f"tau must be positive, got {self.tau}")
        require(self.lm_weight >= 0, f"lm_weight must be >= 0, got {self.lm_weight}")


def _lm_record(run: str) -> dict:
    path = Path(run) / "config.json"
    if not path.is_file():
        raise VaelabError(f"--lm-run {run} holds no config.json; give the directory of a trained lstm-lm run")
    from ..files import read_json
    record = read_json(path, "language model config")
    if record.get("model") != "lstm-lm" and "embedding_dim" not in record.get("config", record):
        raise VaelabError(f"--lm-run {run} is not an lstm-lm run; train one with vaelab train lstm-lm")
    return record.get("config", record)


NEEDS_LM = ("--lm-weight above 0 needs the language model that scores the middle sequence: give --lm-run DIR "
            "(a trained lstm-lm run on the same data)")


@register("seq3")
class Seq3(TextModel):
    Config = Seq3Config
    train_defaults = {"batch_size": 32, "epochs": 10}

    @classmethod
    def data_settings(cls, ds, settings: dict) -> dict:
        settings = super().data_settings(ds, settings)
        if settings.get("lm_weight", 0) > 0 and not settings.get("lm_run"):
            raise VaelabError(NEEDS_LM)
        if settings.get("lm_run"):
            lm = _lm_record(settings["lm_run"])
            if list(lm.get("vocabulary", [])) != list(settings["vocabulary"]):
                raise VaelabError(f"--lm-run {settings['lm_run']} was trained on another vocabulary than "
                                  f"{ds.name}'s; train the language model on the same data")
            settings = {**settings, "lm_embedding_dim": lm["embedding_dim"], "lm_hidden_dim": lm["hidden_dim"]}
        return settings

    def __init__(self, config: Seq3Config):
        super().__init__(config)
        v, e, h = max(len(config.vocabulary), 4), config.embedding_dim, config.hidden_dim
        self.embed = nn.Embedding(v, e, padding_idx=0)
        self.compress_encoder = nn.LSTM(e, h, batch_first=True)
        self.compress_decoder = nn.LSTM(e, h, batch_first=True)
        self.compress_output = nn.Linear(h, v)
        self.reconstruct_encoder = nn.LSTM(e, h, batch_first=True)
        self.reconstructor = SentenceDecoder(v, e, h)
        self.lm = None
        if config.lm_hidden_dim:
            self.lm = SentenceDecoder(v, config.lm_embedding_dim, config.lm_hidden_dim)
            self.lm.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.lm is not None:
            self.lm.eval()  # the prior is fixed: no dropout, no updates
        return self

    def prepare(self, data) -> None:
        """Copy the trained language model's weights in (a fresh run with ``lm_run``)."""
        if self.lm is None or not self.config.lm_run:
            return
        from ..io import load
        lm = load(self.config.lm_run)
        self.lm.load_state_dict(lm.decoder.state_dict())

    # -- the compressor: x -> middle words --------------------------------------------
    def middle_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        words = (lengths - 1).clamp(min=1)
        return torch.ceil(words.double() * self.config.ratio).long().clamp(min=1)

    def compress(self, batch: Batch, hard: bool | None = None):
        """(one-hot middle words (B, M, V), the compressor's log-probabilities (B, M, V), middle
        lengths (B,)). Training draws straight-through Gumbel-softmax samples; evaluation
        takes the most probable word."""
        lengths = lengths_of(batch)
        x = trimmed(batch.x, lengths)
        _, state = run_lstm(self.compress_encoder, self.embed(x), lengths)
        m = self.middle_lengths(lengths)
        steps = int(m.max())
        word = self.embed(torch.full((len(x), 1), BOS_ID, dtype=torch.int64, device=x.device))
        onehots, logps = [], []
        sample = self.training if hard is None else not hard
        for _ in range(steps):
            out, state = self.compress_decoder(word, state)
            logits = self.compress_output(out[:, -1])
            logits = torch.cat([torch.full_like(logits[:, :EOS_ID + 1], -1e9), logits[:, EOS_ID + 1:]], 1)
            logps.append(logits.log_softmax(-1))
            y = F.gumbel_softmax(logits, tau=self.config.tau, hard=True) if sample else \
                F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
            onehots.append(y)
            word = (y @ self.embed.weight).unsqueeze(1)
        return torch.stack(onehots, 1), torch.stack(logps, 1), m

    # -- the reconstructor: middle words -> x ------------------------------------------
    def reconstruction_nll(self, batch: Batch, onehots: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        lengths = lengths_of(batch)
        x = trimmed(batch.x, lengths)
        _, state = run_lstm(self.reconstruct_encoder, onehots @ self.embed.weight, m)
        return self.reconstructor.nll(decoder_inputs(x), x, lengths, state=state)

    def lm_prior(self, onehots: torch.Tensor, logq: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Σ_t KL(q_t ‖ p_LM(· | y_<t)) per sentence (B,)."""
        lm = self.lm
        bos = lm.embed.weight[BOS_ID].expand(len(m), 1, -1)
        inputs = torch.cat([bos, onehots[:, :-1] @ lm.embed.weight], 1)
        out, _ = run_lstm(lm.lstm, inputs, m)
        logp = lm.output(out).log_softmax(-1)
        kl = (logq.exp() * (logq - logp)).sum(-1)
        return (kl * length_mask(m, onehots.shape[1])).sum(1)

    def loss(self, batch: Batch) -> Loss:
        onehots, logq, m = self.compress(batch)
        recon = self.reconstruction_nll(batch, onehots, m).mean()
        terms, weights = {"recon": recon}, {"recon": 1.0}
        total = recon
        if self.lm is None and self.config.lm_weight > 0:
            raise VaelabError(NEEDS_LM)
        if self.lm is not None:
            prior = self.lm_prior(onehots, logq, m).mean()
            terms["lm_prior"], weights["lm_prior"] = prior, self.config.lm_weight
            total = total + self.config.lm_weight * prior
        return Loss(total, terms, weights)

    # -- looking inside ----------------------------------------------------------------
    @torch.no_grad()
    def middle(self, batch: Batch) -> Batch:
        """The middle sequences (greedy) as a text batch: ids, then <eos>, with lengths m + 1."""
        onehots, _, m = self.compress(batch, hard=True)
        ids = onehots.argmax(-1)
        out = torch.zeros(len(ids), self.config.input_shape[0], dtype=torch.int64, device=ids.device)
        steps = min(ids.shape[1], out.shape[1] - 1)
        out[:, :steps] = ids[:, :steps] * length_mask(m, steps)
        out[torch.arange(len(ids)), m.clamp(max=out.shape[1] - 1)] = EOS_ID
        return Batch(out, extras={"lengths": m.clamp(max=out.shape[1] - 1) + 1})

    @torch.no_grad()
    def token_accuracy(self, batch: Batch) -> torch.Tensor:
        """Per sentence: the fraction of its tokens (words + <eos>) that the reconstructor's most
        probable word gets right, reading the greedy middle sequence and the true prefix."""
        onehots, _, m = self.compress(batch, hard=True)
        lengths = lengths_of(batch)
        x = trimmed(batch.x, lengths)
        _, state = run_lstm(self.reconstruct_encoder, onehots @ self.embed.weight, m)
        out, _ = run_lstm(self.reconstructor.lstm, self.reconstructor.embed(decoder_inputs(x)), lengths, state)
        right = (self.reconstructor.output(out).argmax(-1) == x) & length_mask(lengths, x.shape[1])
        return right.sum(1).double() / lengths.double()

    @torch.no_grad()
    def reconstruct_from_middle(self, batch: Batch) -> Batch:
        """Greedy decodes of x from the greedy middle sequences."""
        from ..nn.text import lengths_from_ids

        onehots, _, m = self.compress(batch, hard=True)
        _, state = run_lstm(self.reconstruct_encoder, onehots @ self.embed.weight, m)
        ids = self.reconstructor.generate(len(m), self.config.input_shape[0], state=state, greedy=True)
        return Batch(ids, extras={"lengths": lengths_from_ids(ids)})

    @property
    def can_sample(self) -> bool:
        return False

    def end_of_run(self, run_dir, data: Batch, seed: int = 0) -> list[str]:
        from ..text_outputs import write_text_outputs
        return write_text_outputs(self, run_dir, data, seed)
