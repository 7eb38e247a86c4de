"""Blocks the sentence models share: masks from lengths, teacher-forced decoder inputs, word
dropout, an LSTM that reads only each sentence's true length, and the per-sentence sum of
−log p(token) computed on real tokens only (the softmax over the vocabulary, the costly part,
never sees padding).

Token ids follow :mod:`vaelab.data.text`: 0 ``<pad>``, 1 ``<bos>``, 2 ``<eos>``.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2


def trimmed(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``x`` cut to its batch's longest sentence (padding past it does nothing)."""
    return x[:, :int(lengths.max())] if len(lengths) else x


def length_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, steps) bool: True at each sentence's real tokens."""
    return torch.arange(steps, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def decoder_inputs(x: torch.Tensor) -> torch.Tensor:
    """Teacher forcing: ``<bos> w_1 .. w_n`` predicts ``w_1 .. w_n <eos>``."""
    return torch.cat([torch.full_like(x[:, :1], BOS_ID), x[:, :-1]], 1)


def word_dropout(inputs: torch.Tensor, keep: float, unk_id: int, generator=None) -> torch.Tensor:
    """Bowman et al. 2016: each decoder input word (not ``<bos>``, not padding) is replaced by
    ``<unk>`` with probability 1 − keep, so the decoder must lean on z."""
    if keep >= 1.0:
        return inputs
    drop = torch.rand(inputs.shape, device=inputs.device, generator=generator) >= keep
    drop &= (inputs != BOS_ID) & (inputs != PAD_ID)
    return inputs.masked_fill(drop, unk_id)


def run_lstm(lstm: nn.LSTM, inputs: torch.Tensor, lengths: torch.Tensor, state=None):
    """(outputs (B, T, H), (h, c) at each sentence's last real step) of ``lstm`` over padded
    ``inputs`` (B, T, E), reading only the real steps."""
    packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, last = lstm(packed, state)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=inputs.shape[1])
    return out, last


def sentence_nll(hidden: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                 output: nn.Linear) -> torch.Tensor:
    """Σ_t −log p(target_t) per sentence (B,), over the real tokens only."""
    rows = mask.nonzero(as_tuple=True)
    nll = F.cross_entropy(output(hidden[rows]), targets[rows], reduction="none")
    return torch.zeros(len(targets), device=hidden.device, dtype=nll.dtype).index_add_(0, rows[0], nll)


def lengths_of(batch) -> torch.Tensor:
    """The true lengths a text batch carries (words + <eos>), refused without them."""
    lengths = batch.extras.get("lengths") if hasattr(batch, "extras") else None
    if lengths is None:
        from ..errors import VaelabError
        raise VaelabError("a sentence model needs the lengths of its sentences (extras['lengths']); "
                          "give it text data (ptb, text:PATH)")
    return lengths


class SentenceDecoder(nn.Module):
    """An LSTM language model over a vocabulary, optionally reading a code ``z`` (B, C) at
    every step (concatenated to the input word's embedding) and starting from a given state.
    Dropout on the input embeddings and on the outputs (Zaremba et al. 2014's places)."""

    def __init__(self, vocab: int, embedding: int, hidden: int, code: int = 0, dropout_in: float = 0.0,
                 dropout_out: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(vocab, embedding, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(embedding + code, hidden, batch_first=True)
        self.drop_in, self.drop_out = nn.Dropout(dropout_in), nn.Dropout(dropout_out)
        self.output = nn.Linear(hidden, vocab)
        with torch.no_grad():  # <pad> and <bos> are never targets: start them with no mass
            self.output.bias[:EOS_ID] = -30.0
        self.code = code

    def _inputs(self, words: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        e = self.drop_in(self.embed(words))
        if self.code:
            e = torch.cat([e, z.unsqueeze(1).expand(-1, words.shape[1], -1)], -1)
        return e

    def nll(self, inputs: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor,
            z: torch.Tensor | None = None, state=None) -> torch.Tensor:
        """Σ_t −log p(target_t | inputs_≤t, z) per sentence (B,)."""
        out, _ = run_lstm(self.lstm, self._inputs(inputs, z), lengths, state)
        return sentence_nll(self.drop_out(out), targets, length_mask(lengths, targets.shape[1]), self.output)

    def logits(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Next-word logits (B, T, V) after each word of ``inputs`` (B, T), with no code and no
        dropout: a trained language model read by another model (a prior, a fusion, a judge)."""
        out, _ = run_lstm(self.lstm, self.embed(inputs), lengths)
        return self.output(out)

    @torch.no_grad()
    def generate(self, n: int, max_length: int, *, z: torch.Tensor | None = None, state=None,
                 greedy: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, max_length) ids drawn word by word (greedy: the most probable word) until each
        row's ``<eos>``; padding after it. ``<pad>`` and ``<bos>`` are never drawn."""
        device = self.output.weight.device
        words = torch.full((n, 1), BOS_ID, dtype=torch.int64, device=device)
        out = torch.full((n, max_length), PAD_ID, dtype=torch.int64, device=device)
        done = torch.zeros(n, dtype=torch.bool, device=device)
        for t in range(max_length):
            h, state = self.lstm(self._inputs(words, z), state)
            logits = self.output(h[:, -1])
            logits[:, :EOS_ID] = -float("inf")
            if t == max_length - 1:
                nxt = torch.full((n,), EOS_ID, dtype=torch.int64, device=device)
            elif greedy:
                nxt = logits.argmax(-1)
            else:
                nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)
            out[:, t] = torch.where(done, torch.full_like(nxt, PAD_ID), nxt)
            done |= nxt == EOS_ID
            if bool(done.all()):
                break
            words = nxt.unsqueeze(1)
        return out


def lengths_from_ids(ids: torch.Tensor) -> torch.Tensor:
    """True lengths (through the first ``<eos>``) of generated rows."""
    is_eos = ids == EOS_ID
    first = torch.where(is_eos.any(1), is_eos.float().argmax(1), torch.full((len(ids),), ids.shape[1] - 1,
                                                                            device=ids.device))
    return first.long() + 1
