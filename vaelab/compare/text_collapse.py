"""Posterior collapse, shown: the plain sentence VAE beside each fix (Bowman et al. 2016 and after).

Every variant is a ``text-vae`` of one size trained on the same PTB sentences; they differ only
in the fix switched on:

- ``plain``: β = 1 from the first step, no word dropout, no free bits (the decoder learns to
  ignore z: KL → 0, no active unit);
- ``anneal``: β rises linearly from 0.1 to 1 over the first half of training;
- ``cyclical``: β rises over the first half of each of ``cycles`` periods (Fu et al. 2019);
- ``word-dropout``: decoder input words become <unk> with probability 0.5;
- ``free-bits``: each dimension's KL charged at least λ = 0.1 nats (Kingma et al. 2016);
- ``anneal+dropout``: Texar's reproduction (the paper profile's fixes).

Each is measured on the sentences of ``split`` (validation by default: this is a choice between
settings): ``nelbo`` (the bound, nats per sentence), ``nll`` (importance-sampled with
``nll_samples``), ``kl``, ``mutual_information`` I(x; z), ``active_units``, and the perplexities
of each over words + <eos>. ``curve_kl.png`` and ``curve_recon.png`` plot KL and reconstruction
against the training step for every variant: the training means of ``curve_points`` stretches of
steps per epoch (``train_curve`` in each run's metrics.jsonl), where collapse happens within the
first epoch.
"""
from __future__ import annotations

import json
import time

from ..data import load_dataset
from ..errors import VaelabError
from ..evaluation import evaluate
from ..viz.plots import line_plot
from .common import Comparison, fit, prepare_out

PLAIN = {"kl_anneal": "none", "word_keep": 1.0, "free_bits": 0.0}


def variants(epochs: int, cycles: int) -> dict[str, dict]:
    half = max(epochs / 2, 0.5)
    return {
        "plain": PLAIN,
        "anneal": {**PLAIN, "kl_anneal": "linear", "kl_start": 0.1, "kl_anneal_epochs": half},
        "cyclical": {**PLAIN, "kl_anneal": "cyclical", "kl_start": 0.0, "kl_anneal_epochs": max(epochs / cycles, 0.5)},
        "word-dropout": {**PLAIN, "word_keep": 0.5},
        "free-bits": {**PLAIN, "free_bits": 0.1},
        "anneal+dropout": {**PLAIN, "kl_anneal": "linear", "kl_start": 0.1, "kl_anneal_epochs": half,
                           "word_keep": 0.5},
    }


COLUMNS = ["variant", "nelbo", "nll", "kl", "mutual_information", "active_units", "ppl_bound", "ppl", "recon"]


def text_collapse(out, *, data: str | None = None, data_dir=None, variants_: tuple[str, ...] = (),
                  epochs: int = 6, sentences: int = 3000, train_size: int = 0, eval_size: int = 200,
                  split: str = "val",
                  hidden: int = 128, embedding: int = 128, latent_dim: int = 32, cycles: int = 3,
                  nll_samples: int = 500, batch_size: int = 32, seed: int = 0, threads: int = 0,
                  curve_points: int = 20,
                  progress: bool = True, **_) -> Comparison:
    """Train each variant (reusing finished runs in ``out``), measure it, plot its curves."""
    t0 = time.perf_counter()
    data = data or "ptb"
    if split not in ("val", "test"):
        raise VaelabError(f"--split {split}: measure on val (choices) or test (the table read once)")
    out = prepare_out(out)
    table = variants(epochs, cycles)
    chosen = variants_ or tuple(table)
    unknown = [v for v in chosen if v not in table]
    if unknown:
        raise VaelabError(f"unknown variant {unknown[0]!r}; choose from {', '.join(table)}")
    train = load_dataset(data, "train", data_dir=data_dir)
    train_size = train_size or sentences  # --train-size, where given, wins
    train = train.subset(slice(0, train_size)) if train_size else train
    held = load_dataset(data, split, data_dir=data_dir)
    held = held.subset(slice(0, eval_size)) if eval_size else held
    net = {"embedding_dim": embedding, "hidden_dim": hidden, "latent_dim": latent_dim, "decoder_dropout": 0.0}
    config = {"epochs": epochs, "batch_size": batch_size, "seed": seed, "threads": threads, "val_size": 0,
              "monitor": "loss", "curve_points": curve_points}
    rows, curves = [], {}
    for name in chosen:
        model = fit("text-vae", train, out / name, {**net, **table[name]}, config, progress)
        result = evaluate(model, held, nll_samples=nll_samples, seed=seed)
        rows.append({"variant": name, **{k: result.get(k) for k in COLUMNS if k != "variant"}})
        curves[name] = _curve(out / name / "metrics.jsonl")
    figures = _plot(out, curves)
    notes = [f"text-vae {embedding}/{hidden}/z{latent_dim}, decoder dropout 0, {epochs} epochs on the first "
             f"{len(train):,} PTB training sentences, batch {batch_size}; measured on the first {len(held):,} "
             f"sentences of {data} {split}",
             "nelbo: −ELBO, a bound (nats per sentence); nll: importance-sampled −log p(x) with "
             f"k = {nll_samples}; perplexities over words + <eos> (ppl_bound from nelbo, ppl from nll)",
             "active units: Cov_x(E_q[z_j]) > 0.01; mutual_information: I(x; z) under q, nats"]
    settings = {"data": data, "split": split, "epochs": epochs, "train_size": len(train), "eval_size": len(held),
                "network": net, "nll_samples": nll_samples, "variants": {n: table[n] for n in chosen}}
    return Comparison("text-collapse", "Posterior collapse in the sentence VAE, and its fixes", COLUMNS, rows,
                      settings, figures, notes, time.perf_counter() - t0)


def _curve(path) -> dict[str, list[float]]:
    """(step, training KL, training recon) from a run's metrics.jsonl: every stretch of
    ``train_curve`` where the run recorded one, else each epoch's mean."""
    curve = {"step": [], "kl": [], "recon": []}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            part = r.get("train_curve") or {k: [v] for k, v in (("step", r["step"]), *r["train"].items())}
            for key in curve:
                curve[key].extend(part[key])
    return curve


def _plot(out, curves: dict) -> list[str]:
    written = []
    for term, label in (("kl", "KL(q(z|x) || p(z)), nats per sentence"), ("recon", "reconstruction −log p(x|z), nats")):
        steps = next(iter(curves.values()))["step"]
        series = {name: c[term] for name, c in curves.items() if c["step"] == steps}
        path = out / f"curve_{term}.png"
        line_plot(steps, series, path, xlabel="training step", ylabel=label, title=f"{term} during training")
        written.append(path.name)
    return written
