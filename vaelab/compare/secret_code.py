"""The secret code of a sequence-to-sequence-to-sequence autoencoder, and the prior that makes
it readable (Baziotis et al. 2019).

``seq3`` models are trained on the same PTB sentences at each language-model prior weight λ
(λ = 0: nothing asks the middle sequence to be language). Each is measured on the sentences of
``split``:

- ``middle_ppl``: the perplexity of the greedy middle sequences (words + <eos>) under the
  trained ``lstm-lm`` that is also the prior;
- ``real_ppl``: the same language model's perplexity of real sentences of the same lengths
  (one drawn, seeded, from the training sentences for each middle sequence), and
  ``ppl_ratio`` = middle_ppl / real_ppl (readability: near 1 reads like PTB, ≫ 1 a code);
- ``copied``: the fraction of middle words that occur in the input sentence;
- ``token_accuracy``: the fraction of the sentence's tokens (words + <eos>) that the
  reconstructor's most probable word gets right, reading the middle sequence and the true prefix;
- ``lm_accuracy``: the same for the language model alone, reading only the true prefix: what a
  reconstructor gets without reading the middle sequence at all;
- ``q_top``, ``q_entropy``: the compressor's q_t along the greedy middle sequence: the mean
  probability of its most probable word (the chance that a training draw with ``draw="sample"``
  is the word evaluation reads) and the mean entropy (nats);
- ``recon``, ``lm_prior``, ``topic``: the loss terms on those sentences (nats, nats, 1 − cosine).

Examples (input, middle sequence, greedy reconstruction) at each weight go into the notes.
"""
from __future__ import annotations

import math
import time

import torch

from ..data import load_dataset
from ..data.batch import Batch
from ..errors import VaelabError
from ..io import load
from ..nn.text import EOS_ID, decoder_inputs, length_mask, lengths_of, trimmed
from ..text_outputs import words
from .common import Comparison, fit, prepare_out

COLUMNS = ["lm_weight", "middle_ppl", "real_ppl", "ppl_ratio", "copied", "token_accuracy", "lm_accuracy", "q_top", "q_entropy", "recon",
           "lm_prior", "topic"]


@torch.no_grad()
def _lm_nll(lm, batch: Batch, batch_size: int = 500) -> tuple[float, int]:
    """(Σ −log p(x), Σ tokens) of ``batch`` under the language model."""
    total, tokens = 0.0, 0
    for i in range(0, len(batch), batch_size):
        part = batch[i:i + batch_size]
        total += float(lm.sentence_nll(part).double().sum())
        tokens += int(part.extras["lengths"].sum())
    return total, tokens


@torch.no_grad()
def lm_accuracy(lm, batch: Batch) -> float:
    """The mean over sentences of the fraction of tokens (words + <eos>) that the language
    model's most probable next word gets right, reading the true prefix (``token_accuracy``'s
    measure for a reader of nothing else)."""
    lengths = lengths_of(batch)
    x = trimmed(batch.x, lengths)
    logits = lm.decoder.logits(decoder_inputs(x), lengths)
    logits[..., :EOS_ID] = -float("inf")
    right = (logits.argmax(-1) == x) & length_mask(lengths, x.shape[1])
    return float((right.sum(1).double() / lengths.double()).mean())


def _same_lengths(pool: Batch, lengths: torch.Tensor, seed: int) -> Batch:
    """For each length, one sentence of ``pool`` of that length (seeded); lengths no sentence
    has are skipped."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for n in lengths.tolist():
        candidates = (pool.extras["lengths"] == n).nonzero().squeeze(1)
        if len(candidates):
            rows.append(int(candidates[torch.randint(len(candidates), (1,), generator=g)]))
    return pool.select(torch.tensor(rows, dtype=torch.int64))


@torch.no_grad()
def secret_code_measures(model, lm, data: Batch, pool: Batch, seed: int = 0) -> dict:
    """The measures of the module docstring for one seq3 ``model`` on ``data``."""
    model.eval()
    lm.eval()
    middle = model.middle(data)
    nll, tokens = _lm_nll(lm, middle)
    real = _same_lengths(pool, middle.extras["lengths"], seed)
    real_nll, real_tokens = _lm_nll(lm, real)
    _, logq, m = model.compress(data, hard=True)
    steps = (torch.arange(logq.shape[1]).unsqueeze(0) < m.unsqueeze(1)).double()
    top = (logq.max(-1).values.exp().double() * steps).sum() / steps.sum()
    entropy = ((-(logq.exp() * logq.clamp(min=-1e4)).sum(-1)).double() * steps).sum() / steps.sum()
    copied = []
    for x, y, n, m in zip(data.x, middle.x, data.extras["lengths"], middle.extras["lengths"]):
        inside = set(x[:int(n) - 1].tolist())
        copied += [int(w) in inside for w in y[:int(m) - 1].tolist()]
    middle_ppl, real_ppl = math.exp(nll / tokens), math.exp(real_nll / max(real_tokens, 1))
    loss = model.loss(data)
    return {"middle_ppl": middle_ppl, "real_ppl": real_ppl, "ppl_ratio": middle_ppl / real_ppl,
            "copied": sum(copied) / max(len(copied), 1),
            "token_accuracy": float(model.token_accuracy(data).mean()), "lm_accuracy": lm_accuracy(lm, data),
            "q_top": float(top),
            "q_entropy": float(entropy),
            **{k: float(v) for k, v in loss.terms.items()}}


def examples(model, data: Batch, n: int = 3) -> list[str]:
    part = data[:n]
    out = []
    for x, y, r in zip(words(model, part), words(model, model.middle(part)),
                       words(model, model.reconstruct_from_middle(part))):
        out.append(f"`{x}` → `{y}` → `{r}`")
    return out


def secret_code(out, *, lm_run: str | None = None, data_dir=None, weights: tuple[float, ...] = (0.0, 0.1, 0.3),
                epochs: int = 4, sentences: int = 6000, train_size: int = 0, eval_size: int = 200,
                split: str = "val", hidden: int = 128, embedding: int = 64, ratio: float = 0.5,
                word_keep: float = 0.5, topic_weight: float = 10.0, tau: float = 0.5, tau_decay: float = 0.0,
                draw: str = "greedy", batch_size: int = 32, lr: float = 0.0,
                init_from_lm: bool = False, copy: bool = False, point: bool = False, lm_fusion: float = 0.0,
                seed: int = 0, threads: int = 0, progress: bool = True, **_) -> Comparison:
    """Train a seq3 at each prior weight (reusing finished runs in ``out``) and measure each."""
    t0 = time.perf_counter()
    if not lm_run:
        raise VaelabError("compare secret-code needs the trained language model: --lm-run DIR (vaelab train "
                          "lstm-lm --data ptb --out DIR)")
    if split not in ("val", "test"):
        raise VaelabError(f"--split {split}: measure on val (choices) or test (the table read once)")
    out = prepare_out(out)
    lm = load(lm_run)
    train = load_dataset("ptb", "train", data_dir=data_dir)
    pool = train.batch()
    train = train.subset(slice(0, train_size or sentences)) if (train_size or sentences) else train
    held = load_dataset("ptb", split, data_dir=data_dir)
    held = (held.subset(slice(0, eval_size)) if eval_size else held).batch()
    net = {"embedding_dim": embedding, "hidden_dim": hidden, "ratio": ratio, "word_keep": word_keep,
           "topic_weight": topic_weight, "tau": tau, "lm_run": str(lm_run)}
    net["draw"] = draw  # a run recorded without it drew samples (seq3's recorded_before)
    if tau_decay:
        net["tau_decay"] = tau_decay
    if init_from_lm:
        net["init_from_lm"] = True
    if copy:  # recorded only when on, so that the runs of earlier commands still match
        net["copy"] = True
    if point:
        net["point"] = True
    if lm_fusion:
        net["lm_fusion"] = float(lm_fusion)
    config = {"epochs": epochs, "batch_size": batch_size, "seed": seed, "threads": threads, "val_size": 0}
    if lr:
        config["lr"] = lr
    rows, notes = [], []
    for w in weights:
        model = fit("seq3", train, out / f"lm-weight-{w:g}", {**net, "lm_weight": float(w)}, config, progress)
        rows.append({"lm_weight": w, **secret_code_measures(model, lm, held, pool, seed)})
        notes += [f"λ = {w:g}: {e}" for e in examples(model, held)]
    notes = [f"seq3 {embedding}/{hidden} (attentional compressor and reconstructor, tied embeddings, reconstructor "
             f"word keep {word_keep:g}, topic weight {topic_weight:g}, τ {tau:g}"
             f"{f' annealed at rate {tau_decay:g}' if tau_decay else ''}, training middle words drawn by {draw}"
             f"{', embedding started from the language model' if init_from_lm else ''}"
             f"{', a pointer-generator reconstructor that can copy middle words' if copy else ''}"
             f"{', a pointer compressor choosing each middle word among the input' if point else ''}"
             f"{f', the reconstructor fused with the language model (β {lm_fusion:g})' if lm_fusion else ''}), "
             f"middle {ratio:g}× the words, {epochs} epochs (batches of {batch_size}"
             f"{f', learning rate {lr:g}' if lr else ''}) on the first {len(train):,} "
             f"PTB training sentences; measured on the first {len(held):,} sentences of ptb {split}; the prior "
             f"and judge is the lstm-lm in {lm_run}",
             "middle_ppl / real_ppl: perplexities (words + <eos>) of the middle sequences and of real sentences "
             "of the same lengths under that lstm-lm; copied: middle words found in the input; token_accuracy: "
             "the reconstructor's most probable word, reading the true prefix", *notes]
    settings = {"data": "ptb", "split": split, "weights": list(weights), "epochs": epochs, "train_size": len(train),
                "eval_size": len(held), "batch_size": batch_size, "lr": lr or None, "network": net}
    return Comparison("secret-code", "The secret code of seq3, and the language-model prior", COLUMNS, rows,
                      settings, [], notes, time.perf_counter() - t0)
