"""SEQ³, the sequence-to-sequence-to-sequence autoencoder (Baziotis et al. 2019): the code of a
sentence is itself a shorter sequence of words.

One bidirectional LSTM encoder (shared, as in the paper) reads a word sequence into states
h_1 .. h_n. The **compressor** is an attentional LSTM decoder (Luong et al. 2015: the "general"
score s_i = h_tᵀ W_a h_i, context c_t = Σ_i softmax(s)_i h_i, output õ_t = tanh(W_c [c_t; h_t]),
õ_t fed back beside the next input) that attends over the encoded sentence x and writes a
middle sequence y_1 .. y_m of vocabulary words, m = ⌈ratio · n⌉ for a sentence of n words. Each
y_t is a straight-through Gumbel-softmax sample of q_t = softmax(logits_t) (a hard one-hot
forward, the relaxed sample's gradient at temperature τ backward; Jang et al. 2017), and its
embedding is the next input. The **reconstructor**, the same kind of decoder, attends over the
encoded middle sequence (the encoder reads y's embeddings) and predicts x word by word, its
input words dropped to <unk> with probability 1 − word_keep so that it must read y. Every part
shares one embedding matrix E, and with ``tie_embeddings`` both decoders' output layers are E
itself: logits = E · W_o õ_t + b. The loss per sentence:

    L = −log p_rec(x | y)                                   reconstruction
        + λ   · Σ_t KL( p_LM(· | y_<t) ‖ q_t )              language-model prior (§2.3)
        + λ_T · (1 − cos( Σ_i idf(x_i) E x_i / Σ_i idf(x_i),  (1/m) Σ_t E q_t ))   topic (§2.4)

p_LM is a pretrained, frozen ``lstm-lm`` reading the sampled words (the paper's direction of
the KL: the compressor's distribution must cover the language model's next-word distribution).
With λ = 0 nothing asks y to be language: it can become a "secret code" only the reconstructor
reads. Middle words never include <pad>, <bos> or <eos>. Training takes each y_t as q_t's most
probable word (``draw="greedy"``, the default: the middle sequence evaluation reads, chosen on
validation sentences, docs/text.md "The secret code"; the relaxed gradient is
softmax(logits / τ)'s) or draws it from q_t (``draw="sample"``, the paper's; a run recorded
before the setting existed was trained so). τ may be annealed: τ_e = max(τ_min,
τ · exp(−r e)) at fractional epoch e.

``copy`` (off by default) is an extension beyond SEQ³'s reconstructor, not the paper's: a
**pointer-generator reconstructor** (See, Liu & Manning 2017, "Get To The Point") that may copy
the middle words it attends to. Its next-word distribution is the mixture

    p(w) = p_gen · p_vocab(w) + (1 − p_gen) · Σ_{i: y_i = w} a_t,i,
    p_gen = σ(w_g · [c_t; h_t; e(x_t)] + b_g),

a_t the reconstructor's attention over the middle positions (zero on padding), c_t its context,
h_t its LSTM state and e(x_t) its input word's embedding. The reconstruction term, the token
accuracy and the greedy reconstructions all read this mixture (in log space); it needs
``attention``.

``lm_fusion`` β (0, off, by default) is another extension beyond SEQ³: **shallow fusion**
(Gulcehre et al. 2015, "On Using Monolingual Corpora in Neural Machine Translation") of the
reconstructor with the frozen language model that is also the prior. The reconstructor's
next-word logits become

    logits_t + β · log p_LM(x_t | x_<t),

the language model reading the true prefix (never the dropped words), in training, in the
token accuracy and in the greedy reconstructions alike. The reconstructor then need only learn
what the language model cannot know: which words the middle sequence says come next.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ..config import Config, choice, require
from ..errors import VaelabError
from ..nn.text import BOS_ID, EOS_ID, SentenceDecoder, decoder_inputs, length_mask, lengths_of, lengths_from_ids, \
    run_lstm, trimmed, word_dropout
from .base import Batch, Loss
from .discrete_vae import gumbel_softmax, straight_through
from .registry import register
from .text_base import TextModel, input_shape_field, vocabulary_field


@dataclass(frozen=True)
class Seq3Config(Config):
    """Constructor arguments of :class:`Seq3` (``config.json``)."""

    input_shape: tuple[int] = input_shape_field()
    vocabulary: tuple[str, ...] = vocabulary_field()
    embedding_dim: int = field(default=128, metadata={"help": "word embedding size (one matrix shared by every part)"})
    hidden_dim: int = field(default=256, metadata={
        "help": "LSTM state size of the decoders and of each direction of the shared bidirectional encoder"})
    ratio: float = field(default=0.5, metadata={"help": "middle sequence length as a fraction of the sentence's words"})
    attention: bool = field(default=True, metadata={
        "help": "the compressor attends over the encoded sentence and the reconstructor over the encoded middle "
                "sequence (Luong attention, as the paper); off: each decoder reads only the encoder's last state"})
    tie_embeddings: bool = field(default=True, metadata={
        "help": "both decoders' output layers are the shared embedding matrix (the paper's tying); off: each has "
                "its own output layer"})
    word_keep: float = field(default=0.5, metadata={
        "help": "probability that a reconstructor input word is kept (else <unk>), so that it must read the "
                "middle sequence (the paper drops half; 1 = no word dropout)"})
    tau: float = field(default=0.5, metadata={"help": "Gumbel-softmax temperature (at the start, with --tau-decay)"})
    tau_decay: float = field(default=0.0, metadata={
        "help": "τ annealing: τ·exp(−rate·epoch), floored at --tau-min (0 = a constant τ)"})
    tau_min: float = field(default=0.1, metadata={"help": "the lowest τ the annealing reaches"})
    draw: str = field(default="greedy", metadata={
        "help": "how training picks each middle word: greedy (q_t's most probable word, as evaluation reads it; "
                "the default, chosen on validation sentences) or sample (a Gumbel-max draw from q_t, the paper's); "
                "both pass the relaxed gradient at τ"})
    lm_weight: float = field(default=0.0, metadata={
        "help": "λ, the weight of the language-model prior on the middle sequence (0 = none: a secret code)"})
    topic_weight: float = field(default=0.0, metadata={
        "help": "λ_T, the weight of the topic loss: 1 − cosine of the IDF-weighted mean embedding of the input "
                "words and the mean expected embedding of the middle words (0 = none)"})
    lm_run: str = field(default="", metadata={
        "metavar": "DIR", "help": "run directory of the trained lstm-lm that scores the middle sequence "
                                  "(its weights are copied in when training starts; needed when --lm-weight > 0)"})
    init_from_lm: bool = field(default=False, metadata={
        "help": "start the shared embedding from the --lm-run language model's (its top principal directions, "
                "scaled to unit spread, when the sizes differ), as the paper starts it from pretrained GloVe vectors"})
    copy: bool = field(default=False, metadata={
        "help": "a pointer-generator reconstructor (See, Liu & Manning 2017, \"Get To The Point\"; an extension "
                "beyond SEQ³'s reconstructor, off by default): p(w) = p_gen·p_vocab(w) + "
                "(1 − p_gen)·Σ_{i: y_i = w} a_t,i, a_t its attention over the middle sequence, "
                "p_gen = σ(w_g·[c_t; h_t; input]), so that it can copy the middle words it attends to "
                "(needs attention)"})
    point: bool = field(default=False, metadata={
        "help": "a pointer compressor (Vinyals et al. 2015's pointer network; an extension beyond SEQ³'s compressor, "
                "off by default): each middle word is a word of the input, chosen by the compressor's attention over "
                "the sentence, q_t(w) = Σ_{i: x_i = w} a_t,i, so that copying in order is its easiest move; the prior "
                "is then KL(q_t ‖ p_LM) (SEQ³'s KL(p_LM ‖ q_t) is infinite where q_t covers only the input's words) "
                "(needs attention)"})
    lm_fusion: float = field(default=0.0, metadata={
        "help": "β, shallow fusion (Gulcehre et al. 2015; an extension beyond SEQ³, off by default): the "
                "reconstructor's next-word logits plus β · the --lm-run language model's log-probabilities given the "
                "true prefix, so that it learns only what the language model cannot know (0 = off)"})
    lm_embedding_dim: int = field(default=0, metadata={"option": False, "help": "the prior's embedding size (from lm_run)"})
    lm_hidden_dim: int = field(default=0, metadata={"option": False, "help": "the prior's LSTM size (from lm_run)"})

    # settings whose default changed: a saved record lacking one was trained with this value (others read as default)
    recorded_before: ClassVar[dict] = {"draw": "sample"}

    def validate(self) -> None:
        require(len(self.input_shape) == 1 and self.input_shape[0] >= 2,
                f"input_shape must be one length of at least 2, got {list(self.input_shape)}")
        require(min(self.embedding_dim, self.hidden_dim) > 0, "sizes must be positive")
        require(0 < self.ratio <= 1, f"ratio must lie in (0, 1], got {self.ratio}")
        require(0 < self.word_keep <= 1, f"word_keep must lie in (0, 1], got {self.word_keep}")
        require(self.tau > 0 and self.tau_min > 0, f"tau and tau_min must be positive, got {self.tau}, {self.tau_min}")
        require(self.tau_decay >= 0, f"tau_decay must be >= 0, got {self.tau_decay}")
        choice("draw", self.draw, ("sample", "greedy"))
        require(self.lm_weight >= 0, f"lm_weight must be >= 0, got {self.lm_weight}")
        require(self.topic_weight >= 0, f"topic_weight must be >= 0, got {self.topic_weight}")
        require(self.lm_fusion >= 0, f"lm_fusion must be >= 0, got {self.lm_fusion}")
        require(self.attention or not self.copy, NEEDS_ATTENTION)
        require(self.attention or not self.point, POINT_NEEDS_ATTENTION)


def _lm_record(run: str) -> dict:
    path = Path(run) / "config.json"
    if not path.is_file():
        raise VaelabError(f"--lm-run {run} holds no config.json; give the directory of a trained lstm-lm run")
    from ..files import read_json
    record = read_json(path, "language model config")
    if record.get("model") != "lstm-lm" and "embedding_dim" not in record.get("config", record):
        raise VaelabError(f"--lm-run {run} is not an lstm-lm run; train one with vaelab train lstm-lm")
    return record.get("config", record)


def embedding_start(source: torch.Tensor, size: int) -> torch.Tensor:
    """A (V, size) start for an embedding from a trained one (V, D): the same matrix when D = size,
    else its coordinates along its top ``size`` principal directions (zero-padded when size > D);
    scaled so that its entries spread like nn.Embedding's N(0, 1) start. <pad>'s row is zero."""
    source = source.detach().double()
    if source.shape[1] == size:
        out = source.clone()
    else:
        centred = source - source.mean(0)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        out = torch.zeros(len(source), size, dtype=source.dtype)
        k = min(size, v.shape[0])
        out[:, :k] = centred @ v[:k].t()
    out = out / out[BANNED:].std().clamp(min=1e-12)
    out[0] = 0
    return out.float()


NEEDS_FUSION_LM = ("--lm-fusion above 0 fuses the reconstructor with a language model: give --lm-run DIR (a trained "
                   "lstm-lm run on the same data)")
NEEDS_LM = ("--lm-weight above 0 needs the language model that scores the middle sequence: give --lm-run DIR "
            "(a trained lstm-lm run on the same data)")
BANNED = EOS_ID + 1  # ids below this (<pad>, <bos>, <eos>) are never middle words
POINT_NEEDS_ATTENTION = ("--point (the pointer compressor) chooses each middle word by its attention over the "
                         "sentence, so it needs attention: drop --no-attention, or drop --point")
NEEDS_ATTENTION = ("--copy (the pointer-generator reconstructor) copies the middle words the reconstructor "
                   "attends to, so it needs attention: drop --no-attention, or drop --copy")


def copy_log_mixture(logp_vocab: torch.Tensor, gate: torch.Tensor, copy: torch.Tensor) -> torch.Tensor:
    """log(p_gen · p_vocab + (1 − p_gen) · copy) with p_gen = σ(gate), in log space: logsumexp(log p_gen
    + log p_vocab, log(1 − p_gen) + log copy). ``logp_vocab`` and ``copy`` are (…, V), or both taken at
    one word each (…); ``gate`` is (…). Where the copy mass is 0 the value is the first term alone, and
    the gradient with respect to the mass is still the mixture's, (1 − p_gen) / (p_gen · p_vocab), not
    log's infinite one (nor 0): exact in value and gradient everywhere (the model holds the middle words
    fixed in the mass, so that slope reaches no parameter there)."""
    gate = gate.unsqueeze(-1) if copy.dim() == gate.dim() + 1 else gate
    generated, switch = F.logsigmoid(gate) + logp_vocab, F.logsigmoid(-gate)  # log p_gen·p_vocab, log(1 − p_gen)
    some = copy > 0
    log_copy = torch.where(some, copy, torch.ones_like(copy)).log().masked_fill(~some, -math.inf)
    logp = torch.logaddexp(generated, switch + log_copy)
    slope = (switch - generated).clamp(max=80).exp()  # d log p / d copy at copy = 0 (capped below overflow)
    return logp + torch.where(some, torch.zeros_like(copy), copy * slope)  # + 0 forward, the slope backward


def pointer_logits(scores: torch.Tensor, x: torch.Tensor, vocabulary: int) -> torch.Tensor:
    """log q_t(w) (B, V) of a pointer over the sentence ``x`` (B, S): the attention over its
    positions (from the scores (B, S), padding already masked), positions holding <eos> left
    out, gathered onto the words there, q_t(w) = Σ_{i: x_i = w} a_t,i; words not in the
    sentence get log 1e-30 (no probability, a finite logit)."""
    scores = scores[:, :x.shape[1]].masked_fill(x < BANNED, -1e9)
    q = torch.zeros(len(x), vocabulary, dtype=scores.dtype, device=scores.device)
    return q.scatter_add_(1, x, scores.softmax(-1)).clamp(min=1e-30).log()


class AttentionDecoder(nn.Module):
    """An LSTM decoder stepping one word at a time over a memory of encoder states (B, S, 2H):
    Luong et al. 2015's "general" attention with input feeding. Without attention the output
    is the LSTM state itself. Each step leaves its attention weights a_t (B, S) in the carry
    (``"weights"``, zero on padded positions; ``"scores"``, the logits they are the softmax of),
    and with ``copy`` the pointer-generator's gate logit w_g · [c_t; h_t; input] + b_g (B,)
    (``"gate"``; p_gen = σ of it)."""

    def __init__(self, embedding: int, hidden: int, attention: bool, copy: bool = False):
        super().__init__()
        self.cell = nn.LSTMCell(embedding + hidden, hidden)
        self.attention = attention
        self.copy = copy
        if attention:
            self.score = nn.Linear(2 * hidden, hidden, bias=False)  # W_a, applied to the memory once
            self.combine = nn.Linear(2 * hidden + hidden, hidden)   # W_c
        if copy:  # built only when on: a model without it keeps its parameters, and their draws, as before
            self.gate = nn.Linear(2 * hidden + hidden + embedding, 1)  # w_g, b_g over [c_t; h_t; input]

    def start(self, memory: torch.Tensor, mask: torch.Tensor, state):
        keys = self.score(memory) if self.attention else None
        h, c = state
        return {"h": h, "c": c, "feed": torch.zeros_like(h), "memory": memory, "keys": keys, "mask": mask}

    def step(self, word: torch.Tensor, carry: dict) -> torch.Tensor:
        """õ_t (B, H) for input embeddings ``word`` (B, E); ``carry`` moves on a step."""
        h, c = self.cell(torch.cat([word, carry["feed"]], -1), (carry["h"], carry["c"]))
        out = h
        if self.attention:
            scores = torch.einsum("bsh,bh->bs", carry["keys"], h).masked_fill(~carry["mask"], -1e9)
            weights = scores.softmax(-1)  # exactly 0 on padded positions (exp underflows)
            context = torch.einsum("bs,bsh->bh", weights, carry["memory"])
            out = torch.tanh(self.combine(torch.cat([context, h], -1)))
            carry["weights"], carry["scores"] = weights, scores
            if self.copy:
                carry["gate"] = self.gate(torch.cat([context, h, word], -1)).squeeze(-1)
        carry.update(h=h, c=c, feed=out)
        return out


@register("seq3")
class Seq3(TextModel):
    Config = Seq3Config
    train_defaults = {"batch_size": 32, "epochs": 10}

    @classmethod
    def data_settings(cls, ds, settings: dict) -> dict:
        settings = super().data_settings(ds, settings)
        if settings.get("lm_weight", 0) > 0 and not settings.get("lm_run"):
            raise VaelabError(NEEDS_LM)
        if settings.get("lm_fusion", 0) > 0 and not settings.get("lm_run"):
            raise VaelabError(NEEDS_FUSION_LM)
        if settings.get("init_from_lm") and not settings.get("lm_run"):
            raise VaelabError("--init-from-lm starts the embedding from the language model's: give --lm-run DIR "
                              "(a trained lstm-lm run on the same data)")
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
        self.encoder = nn.LSTM(e, h, batch_first=True, bidirectional=True)  # reads x and y alike
        self.bridge = nn.Linear(2 * h, 2 * h)  # the encoder's last states → a decoder's (h_0, c_0)
        self.compressor = AttentionDecoder(e, h, config.attention)
        self.reconstructor = AttentionDecoder(e, h, config.attention, config.copy)  # copy: p_gen's gate
        if config.tie_embeddings:
            self.to_embedding = nn.Linear(h, e)  # W_o: logits = E · W_o õ + b
            self.output_bias = nn.Parameter(torch.zeros(v))
        else:
            self.compress_output, self.reconstruct_output = nn.Linear(h, v), nn.Linear(h, v)
        self.register_buffer("idf", torch.ones(v))
        self.tau = config.tau
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
        """The training sentences' IDF (for the topic loss); the trained language model's weights
        (a fresh run with ``lm_run``), and with ``init_from_lm`` its embedding as the start of E."""
        x = data.x.cpu()
        seen = torch.zeros(len(x), len(self.idf), dtype=torch.bool)
        seen[torch.arange(len(x)).unsqueeze(1).expand_as(x), x] = True  # sentence i holds word w
        docs = seen[:, BANNED:].sum(0).double()
        self.idf[BANNED:] = torch.log((len(x) + 1) / (docs + 1)).to(self.idf)
        if self.lm is None or not self.config.lm_run:
            return
        from ..io import load
        lm = load(self.config.lm_run)
        self.lm.load_state_dict(lm.decoder.state_dict())
        if self.config.init_from_lm:
            with torch.no_grad():
                self.embed.weight.copy_(embedding_start(lm.decoder.embed.weight, self.config.embedding_dim))

    def schedule(self, epoch: float) -> None:
        c = self.config
        self.tau = max(c.tau_min, c.tau * math.exp(-c.tau_decay * epoch)) if c.tau_decay > 0 else c.tau

    # -- shared pieces -----------------------------------------------------------------
    def encode(self, embedded: torch.Tensor, lengths: torch.Tensor):
        """(memory (B, S, 2H), its mask (B, S), a decoder's first state (h, c))."""
        memory, (h, _) = run_lstm(self.encoder, embedded, lengths)
        h0, c0 = torch.tanh(self.bridge(torch.cat([h[0], h[1]], -1))).chunk(2, -1)
        return memory, length_mask(lengths, embedded.shape[1]), (h0, c0)

    def logits(self, out: torch.Tensor, which: str) -> torch.Tensor:
        if self.config.tie_embeddings:
            return self.to_embedding(out) @ self.embed.weight.t() + self.output_bias
        return (self.compress_output if which == "compressor" else self.reconstruct_output)(out)

    def middle_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        words = (lengths - 1).clamp(min=1)
        return torch.ceil(words.double() * self.config.ratio).long().clamp(min=1)

    # -- the compressor: x -> middle words --------------------------------------------
    def compress(self, batch: Batch, hard: bool | None = None):
        """(one-hot middle words (B, M, V), the compressor's log-probabilities (B, M, V), middle
        lengths (B,)). Training draws straight-through Gumbel-softmax samples; evaluation takes
        the most probable word."""
        lengths = lengths_of(batch)
        x = trimmed(batch.x, lengths)
        memory, mask, state = self.encode(self.embed(x), lengths)
        carry = self.compressor.start(memory, mask, state)
        m = self.middle_lengths(lengths)
        word = self.embed.weight[BOS_ID].expand(len(x), -1)
        sample = self.training if hard is None else not hard
        onehots, logps = [], []
        for _ in range(int(m.max())):
            out = self.compressor.step(word, carry)
            if self.config.point:
                logits = pointer_logits(carry["scores"], x, len(self.idf))
            else:
                logits = self.logits(out, "compressor")
                logits = torch.cat([torch.full_like(logits[:, :BANNED], -1e9), logits[:, BANNED:]], 1)
            logps.append(logits.log_softmax(-1))
            if not sample:
                y = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
            elif self.config.draw == "greedy":  # the argmax forward, softmax(logits / τ)'s gradient backward
                y = straight_through((logits / self.tau).softmax(-1))
            else:
                y = gumbel_softmax(logits, self.tau, hard=True)
            onehots.append(y)
            word = y @ self.embed.weight
        return torch.stack(onehots, 1), torch.stack(logps, 1), m

    # -- the reconstructor: middle words -> x ------------------------------------------
    def reconstructor_steps(self, x: torch.Tensor, onehots: torch.Tensor, m: torch.Tensor, keep: float):
        """(õ_t (B, T, H), and with ``copy`` the attention a_t over the middle positions (B, T, M)
        and p_gen's gate logits (B, T), else None, None) of the reconstructor, teacher-forced on
        x's words (dropped to <unk> with probability 1 − keep), attending over the encoded middle
        sequence."""
        memory, mask, state = self.encode(onehots @ self.embed.weight, m)
        carry = self.reconstructor.start(memory, mask, state)
        inputs = self.embed(word_dropout(decoder_inputs(x), keep, self.unk_id))
        outs, weights, gates = [], [], []
        for t in range(x.shape[1]):
            outs.append(self.reconstructor.step(inputs[:, t], carry))
            if self.config.copy:
                weights.append(carry["weights"])
                gates.append(carry["gate"])
        if not self.config.copy:
            return torch.stack(outs, 1), None, None
        return torch.stack(outs, 1), torch.stack(weights, 1), torch.stack(gates, 1)

    def reconstructor_outputs(self, x: torch.Tensor, onehots: torch.Tensor, m: torch.Tensor, keep: float):
        """õ_t (B, T, H) of the reconstructor (:meth:`reconstructor_steps`)."""
        return self.reconstructor_steps(x, onehots, m, keep)[0]

    def copy_logp(self, out: torch.Tensor, weights: torch.Tensor, gate: torch.Tensor,
                  onehots: torch.Tensor, fused: torch.Tensor | None = None) -> torch.Tensor:
        """log p(w) (B, V) of the pointer-generator's mixture at one step, from õ_t (B, H), the
        attention a_t (B, M), the gate logit (B,) and the middle words' one-hots (B, M, V)
        (``fused``: the fusion term added to the vocabulary logits)."""
        # a_t @ onehots: the copy distribution over the middle words, held fixed (see reconstruction_nll)
        copy = torch.einsum("bm,bmv->bv", weights, onehots.detach())
        logits = self.logits(out, "reconstructor")
        logits = logits if fused is None else logits + fused
        return copy_log_mixture(logits.log_softmax(-1), gate, copy)

    def reconstruction_nll(self, batch: Batch, onehots: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """−log p_rec(x | y) per sentence (B,), over its real tokens (with ``copy``, of the mixture)."""
        lengths = lengths_of(batch)
        x = trimmed(batch.x, lengths)
        out, weights, gate = self.reconstructor_steps(x, onehots, m, self.config.word_keep if self.training else 1.0)
        rows = length_mask(lengths, x.shape[1]).nonzero(as_tuple=True)
        logits = self.logits(out[rows], "reconstructor")
        fused = self.fusion(x, lengths)
        if fused is not None:
            logits = logits + fused[rows]
        if self.config.copy:
            # (a_t @ onehots)[x_t] = Σ_i a_t,i · onehots[i, x_t]: the copy mass of each target word. The
            # middle words are held fixed here: the compressor learns from the reconstruction through the
            # encoded middle sequence only, as without copy. (Through the straight-through one-hots this
            # path pushes each missing target word in with slope (1 − p_gen) / (p_gen · p_vocab), largest
            # for rare words: on validation sentences the middle sequences became rare words, 11× real
            # perplexity, docs/text.md.) Only the target's entry enters the NLL
            picked = onehots.detach().gather(2, x.unsqueeze(1).expand(-1, onehots.shape[1], -1))  # (B, M, T)
            mass = torch.einsum("btm,bmt->bt", weights, picked)[rows]
            target = logits.log_softmax(-1).gather(1, x[rows].unsqueeze(1)).squeeze(1)
            nll = -copy_log_mixture(target, gate[rows], mass)
        else:
            nll = F.cross_entropy(logits, x[rows], reduction="none")
        return torch.zeros(len(x), dtype=nll.dtype, device=nll.device).index_add_(0, rows[0], nll)

    # -- the other terms -----------------------------------------------------------------
    def lm_prior(self, onehots: torch.Tensor, logq: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Σ_t KL(p_LM(· | y_<t) ‖ q_t) per sentence (B,); the language model reads the sampled
        words."""
        ids = onehots.argmax(-1).detach()
        inputs = torch.cat([torch.full_like(ids[:, :1], BOS_ID), ids[:, :-1]], 1)
        logp = self.lm.logits(inputs, m).log_softmax(-1)[..., BANNED:]
        logp = logp - logp.logsumexp(-1, keepdim=True)  # the LM, renormalised over the words y may take
        if self.config.point:  # KL(q_t ‖ p_LM): q_t lives on the input's words
            q = logq[..., BANNED:].exp()
            kl = (q * (logq[..., BANNED:] - logp)).sum(-1)
        else:
            kl = (logp.exp() * (logp - logq[..., BANNED:])).sum(-1)
        return (kl * length_mask(m, onehots.shape[1])).sum(1)

    def topic(self, x: torch.Tensor, lengths: torch.Tensor, logq: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """1 − cos(IDF-weighted mean embedding of x's words, mean expected embedding of y) (B,)."""
        words = length_mask(lengths - 1, x.shape[1]).float() * self.idf[x]
        source = (words.unsqueeze(-1) * self.embed(x)).sum(1) / words.sum(1, keepdim=True).clamp(min=1e-6)
        middle = (length_mask(m, logq.shape[1]).float().unsqueeze(-1) * (logq.exp() @ self.embed.weight)).sum(1)
        return 1 - F.cosine_similarity(source, middle / m.unsqueeze(1), dim=-1)

    def fusion(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor | None:
        """β · log p_LM(x_t | x_<t) (B, T, V), the language model reading the true prefix; None
        without fusion."""
        if not self.config.lm_fusion:
            return None
        if self.lm is None:
            raise VaelabError(NEEDS_FUSION_LM)
        with torch.no_grad():
            return self.config.lm_fusion * self.lm.logits(decoder_inputs(x), lengths).log_softmax(-1)

    def fusion_step(self, word: torch.Tensor, state):
        """(β · log p_LM(· | the words so far) (B, V), the language model's next state) for
        stepwise decoding; (None, None) without fusion."""
        if not self.config.lm_fusion:
            return None, None
        with torch.no_grad():
            out, state = self.lm.lstm(self.lm.embed(word).unsqueeze(1), state)
            return self.config.lm_fusion * self.lm.output(out[:, 0]).log_softmax(-1), state

    def loss(self, batch: Batch) -> Loss:
        c = self.config
        if self.lm is None and c.lm_weight > 0:
            raise VaelabError(NEEDS_LM)
        onehots, logq, m = self.compress(batch)
        recon = self.reconstruction_nll(batch, onehots, m).mean()
        terms, weights = {"recon": recon}, {"recon": 1.0}
        if self.lm is not None:
            terms["lm_prior"], weights["lm_prior"] = self.lm_prior(onehots, logq, m).mean(), c.lm_weight
        if c.topic_weight > 0:
            lengths = lengths_of(batch)
            terms["topic"] = self.topic(trimmed(batch.x, lengths), lengths, logq, m).mean()
            weights["topic"] = c.topic_weight
        return Loss(sum(weights[k] * terms[k] for k in terms), terms, weights)

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
        probable word (with ``copy``, the mixture's) gets right, reading the greedy middle sequence
        and the true prefix."""
        onehots, _, m = self.compress(batch, hard=True)
        lengths = lengths_of(batch)
        x = trimmed(batch.x, lengths)
        out, weights, gate = self.reconstructor_steps(x, onehots, m, 1.0)
        fused = self.fusion(x, lengths)
        if self.config.copy:  # the mixture's most probable word, a step (B, V) at a time
            guess = []
            for t in range(x.shape[1]):
                logp = self.copy_logp(out[:, t], weights[:, t], gate[:, t], onehots,
                                      None if fused is None else fused[:, t])
                logp[:, :EOS_ID] = -float("inf")
                guess.append(logp.argmax(-1))
            guess = torch.stack(guess, 1)
        else:
            logits = self.logits(out, "reconstructor")
            logits = logits if fused is None else logits + fused
            logits[..., :EOS_ID] = -float("inf")
            guess = logits.argmax(-1)
        right = (guess == x) & length_mask(lengths, x.shape[1])
        return right.sum(1).double() / lengths.double()

    @torch.no_grad()
    def reconstruct_from_middle(self, batch: Batch) -> Batch:
        """Greedy decodes of x from the greedy middle sequences (with ``copy``, of the mixture)."""
        onehots, _, m = self.compress(batch, hard=True)
        memory, mask, state = self.encode(onehots @ self.embed.weight, m)
        carry = self.reconstructor.start(memory, mask, state)
        n, steps = len(m), self.config.input_shape[0]
        out = torch.zeros(n, steps, dtype=torch.int64, device=m.device)
        done = torch.zeros(n, dtype=torch.bool, device=m.device)
        word = torch.full((n,), BOS_ID, dtype=torch.int64, device=m.device)
        lm_state = None
        for t in range(steps):
            out_t = self.reconstructor.step(self.embed(word), carry)
            fused, lm_state = self.fusion_step(word, lm_state)
            if self.config.copy:
                logits = self.copy_logp(out_t, carry["weights"], carry["gate"], onehots, fused)
            else:
                logits = self.logits(out_t, "reconstructor")
                logits = logits if fused is None else logits + fused
            logits[:, :EOS_ID] = -float("inf")
            word = logits.argmax(-1) if t < steps - 1 else torch.full_like(word, EOS_ID)
            out[:, t] = word.masked_fill(done, 0)
            done |= word == EOS_ID
            if bool(done.all()):
                break
        return Batch(out, extras={"lengths": lengths_from_ids(out)})

    @property
    def can_sample(self) -> bool:
        return False

    def end_of_run(self, run_dir, data: Batch, seed: int = 0) -> list[str]:
        from ..text_outputs import write_text_outputs
        return write_text_outputs(self, run_dir, data, seed)
