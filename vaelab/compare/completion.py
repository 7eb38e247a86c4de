"""Sohn, Lee & Yan (2015): complete a digit from 1, 2 or 3 of its quadrants, four models each.

For every setting the NN baseline is trained first (the CVAE family's prior network reads
its prediction), then CVAE, GSNN and hybrid. Early stopping watches a validation split
carved from the training set (its last ``val_size`` images), never the test set (Pyro's
example stopped on the test set). On the test images: the negative ELBO over the hidden
pixels (a bound, CVAE family), the importance-sampled −log p(y|x) for each k (NN: exact),
beside Pyro's figures under its protocol. Finished models and evaluations in ``out`` are
reused and unfinished ones resumed, so re-running the same command continues the work;
the table is rewritten after each model.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path


from ..errors import VaelabError
from ..evaluation.conditional import completion_bound, conditional_log_likelihood
from ..files import atomic_write_json
from ..viz.completion import save_completion_panel
from .common import Comparison, fit, prepare_out, split

MODELS = {"nn": "sohn-nn", "cvae": "sohn-cvae", "gsnn": "sohn-gsnn", "hybrid": "sohn-hybrid"}
# Pyro's examples/cvae tutorial (50 epochs, patience 3, test set for stopping): the NN's exact
# −log p(y|x) and the CVAE's negative ELBO (10 particles), nats per image over hidden pixels.
ANCHORS = {("nn", 1): 100.4, ("nn", 2): 61.9, ("nn", 3): 25.4,
           ("cvae", 1): 71.8, ("cvae", 2): 51.0, ("cvae", 3): 24.2}
PANEL_IMAGES = 8
PANEL_SAMPLES = 5
EVAL_FILE = "completion-eval.json"


def completion(out: str | os.PathLike, *, data: str = "mnist", data_dir=None, quadrants=(1, 2, 3),
               models=tuple(MODELS), epochs: int = 100, patience: int = 3, lr_schedule: str = "constant",
               alpha: float = 0.5,
               latent_dim: int = 200, hidden=(500, 500), ks=(100, 1000), binarize: bool = False,
               val_size: int = 10000, train_size: int = 0, test_size: int = 0, seed: int = 0,
               threads: int = 0, progress: bool = True) -> Comparison:
    """Train (or reuse) and measure every (setting, model); one row each, anchors beside."""
    _check(quadrants, models, ks, alpha)
    start = time.perf_counter()
    out = prepare_out(out)
    train, test = split(data, data_dir, train_size, test_size)
    if not 0 < val_size < len(train):
        raise VaelabError(f"--val-size {val_size} must lie between 1 and the {len(train) - 1} training images "
                          "it is carved from")
    fit_part, val = train.subset(slice(0, len(train) - val_size)), train.subset(slice(len(train) - val_size, None))
    tcfg = {"epochs": epochs, "patience": patience, "lr_schedule": lr_schedule, "seed": seed, "threads": threads,
            "val_size": 0, "binarize": "dynamic" if binarize else "none"}
    settings = {"data": data, "quadrants": list(quadrants), "models": list(models), "epochs": epochs,
                "patience": patience, "lr_schedule": lr_schedule, "alpha": alpha, "latent_dim": latent_dim,
                "hidden": list(hidden),
                "ks": list(ks), "binarize": binarize, "n_train": len(fit_part), "n_val": len(val),
                "n_test": len(test), "seed": seed}
    columns = ["quadrants", "model", "val_loss", "target_nelbo", *[f"cll_k{k}" for k in ks], "pyro_anchor",
               "epochs", "s_per_epoch"]
    result = Comparison("completion", _title(data, len(test), binarize), columns, [], settings, [], _notes(binarize))
    for q in quadrants:
        base = (out / "runs" / f"q{q}" / "nn").resolve()
        for name in ("nn",) + tuple(m for m in models if m != "nn"):
            cfg = {"quadrants": q, "hidden": list(hidden)}
            if name != "nn":
                cfg.update(latent_dim=latent_dim, baseline=str(base), baseline_hidden=list(hidden))
                if name == "hybrid":
                    cfg["alpha"] = alpha
            run = out / "runs" / f"q{q}" / name
            model = fit(MODELS[name], fit_part, run, cfg, tcfg, progress, val_data=val).eval()
            if name not in models:
                continue
            row = {"quadrants": q, "model": name, **_measure(model, run, test, ks, binarize, seed, progress),
                   "pyro_anchor": ANCHORS.get((name, q)), **_epochs(run)}
            result.rows.append(row)
            figure = out / f"completions_q{q}_{name}.png"
            save_completion_panel(model, test.batch()[:PANEL_IMAGES], figure, samples=PANEL_SAMPLES, seed=seed)
            result.figures.append(str(figure))
            result.seconds = time.perf_counter() - start
            result.write(out)  # a partial table survives an interrupted comparison
    return result


def _check(quadrants, models, ks, alpha) -> None:
    bad = [q for q in quadrants if q not in (1, 2, 3)]
    if bad:
        raise VaelabError(f"--quadrants {','.join(map(str, bad))} does not exist; choose from 1, 2, 3 "
                          "(1 = bottom-left given, 2 = left half, 3 = all but the bottom-right)")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise VaelabError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    if not ks or any(k < 1 for k in ks):
        raise VaelabError(f"--ks must list importance sample counts >= 1, got {list(ks)}")
    if not 0.0 <= alpha <= 1.0:
        raise VaelabError(f"--alpha must lie in [0, 1] (1 = CVAE, 0 = GSNN), got {alpha}")


def _measure(model, run: Path, test, ks, binarize: bool, seed: int, progress: bool) -> dict:
    """The bound and the IS-CLL per k on the test images, cached in the run (keyed by what
    they depend on) so a resumed comparison does not recompute them."""
    key = {"n_test": len(test), "binarize": binarize, "seed": seed, "weights": _stamp(run)}
    path = run / EVAL_FILE
    cached = json.loads(path.read_text()) if path.is_file() else {}
    if cached.get("key") != key:
        cached = {"key": key, "values": {}}
    values = cached["values"]
    rows = _rows(model, test, binarize)
    if hasattr(model, "completion_nelbo") and "target_nelbo" not in values:
        values["target_nelbo"] = completion_bound(model, rows, seed)
    for k in ks:
        if f"cll_k{k}" not in values:
            t0 = time.perf_counter()
            values[f"cll_k{k}"] = float(-conditional_log_likelihood(model, rows, k, seed=seed,
                                                                    progress=progress).mean())
            values[f"cll_k{k}_seconds"] = round(time.perf_counter() - t0, 1)
        atomic_write_json(path, cached)
    atomic_write_json(path, cached)
    return dict(values)


def _rows(model, test, binarize: bool):
    """The test images as the completion task; binarized once with evaluation's fixed seed."""
    from ..data import binarize_static
    from ..evaluation import TEST_BINARIZATION_SEED

    batch = test.batch()
    if binarize:
        batch = batch.with_x(binarize_static(batch.x, TEST_BINARIZATION_SEED))
    return model.as_completion(batch)


def _stamp(run: Path) -> float:
    weights = run / "model.safetensors"
    return weights.stat().st_mtime if weights.exists() else 0.0


def _epochs(run: Path) -> dict:
    """Epochs trained, the median seconds per epoch (the median: an epoch during which the
    process was paused or interrupted does not move it) and ``val_loss``, the least validation
    loss (the kept epoch's; for the NN the exact −log p(y|x) of the validation images): the
    figure to choose settings such as ``--lr-schedule`` by, never the test columns."""
    path = run / "metrics.jsonl"
    records = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []
    seconds = [r["seconds"] for r in records if isinstance(r.get("seconds"), (int, float))]
    val = [r["val"]["loss"] for r in records if isinstance(r.get("val"), dict) and "loss" in r["val"]]
    return {"epochs": len(records), "s_per_epoch": round(statistics.median(seconds), 1) if seconds else None,
            "val_loss": min(val) if val else None}


def _title(data: str, n_test: int, binarize: bool) -> str:
    targets = "binarized targets" if binarize else "grey-level targets under a Bernoulli likelihood"
    return f"−log p(hidden quadrants | given) on {data} ({n_test} test images, {targets}), nats per image"


def _notes(binarize: bool) -> list[str]:
    return ["val_loss: the kept epoch's loss on the validation split (NN: its exact −log p(y|x)); choose settings "
            "(e.g. --lr-schedule) by it, not by the test columns",
            "target_nelbo: the negative ELBO over the hidden pixels, a bound ≥ −log p(y|x) (10 particles of "
            "q(z|x,y); a GSNN's proposal is its prior network); the anchor's CVAE figure is this quantity",
            "cll_kK: importance-sampled −log p(y|x) with K samples (NN: exact, the same for every K)",
            "pyro_anchor: Pyro's examples/cvae tutorial (test set used for early stopping; here a validation "
            "split carved from the training set)" + ("; Pyro used grey-level targets, these are binarized"
                                                     if binarize else "")]
