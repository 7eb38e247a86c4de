"""Kingma et al. (2014), Table 1: MNIST test error with N labels, for M1 (+ a classifier of its
codes), M2 and M1 + M2, beside the paper's and Pyro's figures.

Protocol (the paper's official code): the first 50,000 training images train, the last
10,000 validate (the epoch kept is the one of least validation error), the 10,000 test
images test; N/10 labels per class drawn by each label seed, the rest of the 50,000
unlabelled. As in the official code, M1 is one VAE trained once on all 50,000 images (the
epoch kept: least validation −ELBO) and shared by every labelled subset: the ``m1`` rows fit
its classifier to each subset's codes, the ``m1m2`` rows train M2 on its codes (one hidden
layer of 300 units for N = 100, else 500, as that code). One run per (N, model, seed) under
``out/runs``, the shared VAE in ``out/runs/m1-vae``; finished runs are reused and
interrupted ones resumed, so re-running the command continues the work, and the table is
rewritten after each run. Rows give the mean ± std over the seeds done.
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from ..errors import VaelabError
from ..evaluation import evaluate
from .common import Comparison, fit, prepare_out, split

MODELS = ("m1", "m2", "m1m2")
# Test error (%) of Kingma et al.'s Table 1 (secondary sources, see docs/semi-supervised.md)
# and of Pyro's ss-vae tutorial (M2 with the exact sum and the auxiliary loss).
PAPER = {("m1", 100): 11.82, ("m1", 600): 5.72, ("m1", 1000): 4.24, ("m1", 3000): 3.49,
         ("m2", 100): 11.97, ("m2", 600): 4.94, ("m2", 1000): 3.60, ("m2", 3000): 3.92,
         ("m1m2", 100): 3.33, ("m1m2", 600): 2.59, ("m1m2", 1000): 2.40, ("m1m2", 3000): 2.18}
PYRO = {("m2", 100): 6.81, ("m2", 600): 5.63, ("m2", 1000): 5.13, ("m2", 3000): 4.18}
GOAL = {("m2", 100): 6.8, ("m2", 600): 4.9, ("m2", 1000): 3.6, ("m2", 3000): 3.9,
        ("m1m2", 100): 3.33, ("m1m2", 600): 2.59, ("m1m2", 1000): 2.40, ("m1m2", 3000): 2.18}
VAL_SIZE = 10000
M1_SIZES = {"hidden": [600, 600], "latent_dim": 50, "activation": "softplus"}  # the paper's M1


def ssl(out: str | os.PathLike, *, data: str = "mnist", data_dir=None, labels=(100, 600, 1000, 3000),
        seeds: int = 3, models=MODELS, epochs: int = 100, m1_epochs: int = 100, alpha: float = 0.1,
        lr: float = 3e-4, labelled_batch_size: int = 0, train_size: int = 0, test_size: int = 0, seed: int = 0,
        threads: int = 0, progress: bool = True) -> Comparison:
    """Train (or reuse) every (N, model, label seed); one row per (N, model)."""
    _check(labels, seeds, models)
    start = time.perf_counter()
    out = prepare_out(out)
    train, test = split(data, data_dir, train_size, test_size)
    val_size = min(VAL_SIZE, len(train) // 6) if train_size else VAL_SIZE
    fit_part, val = train.subset(slice(0, len(train) - val_size)), train.subset(slice(len(train) - val_size, None))
    settings = {"data": data, "labels": list(labels), "seeds": seeds, "models": list(models), "epochs": epochs,
                "m1_epochs": m1_epochs, "alpha": alpha, "lr": lr, "labelled_batch_size": labelled_batch_size,
                "n_train": len(train) - val_size, "n_val": val_size, "n_test": len(test), "seed": seed}
    columns = ["labels", "model", "error_%", "std", "seeds", "paper_%", "pyro_%", "goal_%", "epochs", "s_per_epoch"]
    result = Comparison("ssl", f"MNIST test error with N labels ({len(test)} test images)", columns, [],
                        settings, [], _notes())
    per_seed = settings.setdefault("per_seed", [])
    common = {"seed": seed, "threads": threads, "lr": lr, "binarize": "none"}
    m1 = _SharedM1(out, fit_part, val, test, {**common, "epochs": m1_epochs, "val_size": 0}, progress) \
        if {"m1", "m1m2"} & set(models) else None
    for n in labels:
        for name in models:
            errors, epochs_run, seconds = [], [], []
            for s in range(seeds):
                tcfg = {**common, "epochs": epochs, "labels": n, "label_seed": s, "val_size": 0,
                        "monitor": "error", "labelled_batch_size": labelled_batch_size}
                run = out / "runs" / f"{name}-n{n}-seed{s}"
                if name == "m1":
                    error, run = m1.error(n, s), m1.run
                elif name == "m1m2":
                    error = m1.m2_error(run, n, s, alpha, tcfg, progress)
                else:
                    model = fit(name, fit_part, run, {"alpha": alpha}, tcfg, progress, val_data=val).eval()
                    error = 100 * evaluate(model, test)["classification_error"]
                    if s == 0:
                        result.figures += _pictures(model, test, out, n)
                errors.append(error)
                e, sec = _epochs(run)
                epochs_run.append(e)
                seconds.append(sec)
                per_seed.append({"labels": n, "model": name, "label_seed": s, "error_%": error, "epochs": e})
                result.rows = [r for r in result.rows if (r["labels"], r["model"]) != (n, name)]
                result.rows.append(_row(n, name, errors, epochs_run, seconds))
                result.seconds = time.perf_counter() - start
                result.write(out)  # a partial table survives an interrupted comparison
    return result


class _SharedM1:
    """One VAE of M1's sizes on every training image, trained (or reused) once; the ``m1``
    rows fit its classifier to each labelled subset's codes, the ``m1m2`` rows train M2 on
    its codes."""

    def __init__(self, out: Path, fit_part, val, test, tcfg: dict, progress: bool):
        self.run = out / "runs" / "m1-vae"
        self.vae = fit("vae", fit_part, self.run, M1_SIZES, {**tcfg, "monitor": "loss"}, progress,
                       val_data=val).eval()
        self.fit_part, self._val, self.test = fit_part, val, test

    def error(self, n: int, seed: int) -> float:
        """Test error (%) of M1 + an RBF SVM fitted to the codes of N labelled images."""
        from ..data.derive import labelled_subset
        from ..models.ssvae import M1

        model = M1.from_vae(self.vae, labelled_subset(self.fit_part, n // 10, seed).batch())
        return 100 * evaluate(model, self.test)["classification_error"]

    def codes(self, part: str, ds, keep):
        """The posterior means of ``ds`` (cached beside the VAE) in the dimensions ``keep``
        marks, as 1×1×D rows with their posterior std, labels kept."""
        from ..models.ssvae import code_rows

        return code_rows(self.vae, ds, self.run / f"codes-{part}.safetensors", keep=keep)

    def m2_error(self, run: Path, n: int, seed: int, alpha: float, tcfg: dict, progress: bool) -> float:
        """Test error (%) of M2 trained on the codes of the training images, N of them labelled:
        the dimensions active over those N (M1's rule), drawn from q(z1|x) at each step."""
        from ..data.derive import labelled_subset
        from ..models.ssvae import M1, M1M2Config

        keep = M1.from_vae(self.vae, labelled_subset(self.fit_part, n // 10, seed).batch()).active_dims()
        m2 = M1M2Config(m2_hidden=(300,) if n == 100 else (500,), alpha=alpha).stage_configs()[1]
        model = fit("m2", self.codes("train", self.fit_part, keep), run, m2, tcfg, progress,
                    val_data=self.codes("val", self._val, keep)).eval()
        return 100 * evaluate(model, self.codes("test", self.test, keep))["classification_error"]


def _row(n: int, name: str, errors: list[float], epochs: list[int], seconds: list[float]) -> dict:
    return {"labels": n, "model": name, "error_%": statistics.fmean(errors),
            "std": statistics.stdev(errors) if len(errors) > 1 else None, "seeds": len(errors),
            "paper_%": PAPER.get((name, n)), "pyro_%": PYRO.get((name, n)), "goal_%": GOAL.get((name, n)),
            "epochs": max(epochs), "s_per_epoch": statistics.fmean(seconds) if seconds else None}


def _epochs(run: Path) -> tuple[int, float]:
    """Epochs trained and the median seconds per epoch (a paused epoch does not move it)."""
    import json

    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    seconds = [r["seconds"] for r in records if isinstance(r.get("seconds"), (int, float))]
    return (int(records[-1]["epoch"]) if records else 0), (statistics.median(seconds) if seconds else 0.0)


def _pictures(model, test, out: Path, n: int) -> list[str]:
    """The class-fixed style grid (one row per class) and analogies of 8 test digits."""
    import torch

    from ..viz.analogy import save_analogies
    from ..viz.grids import grid, save_png

    g = torch.Generator().manual_seed(0)
    y = torch.arange(10).repeat_interleave(10)
    styles, analogies = out / f"m2_n{n}_styles.png", out / f"m2_n{n}_analogies.png"
    save_png(grid(model.sample(len(y), y=y, generator=g), nrow=10), styles)
    save_analogies(model, test.x[:8], test.y[:8], analogies)
    return [str(styles), str(analogies)]


def _notes() -> list[str]:
    return ["error_%: test misclassification of q(y|x) (m2, m1m2) or of an RBF SVM of M1's codes (m1; not the "
            "paper's transductive SVM), mean and std over label seeds; m2 and m1m2 at their epoch of least "
            "validation error",
            "m1, m1m2: one VAE of M1's sizes (600-600 softplus, z = 50) trained once on the unlabelled 50,000 "
            "and kept at its least validation -ELBO, shared by every labelled subset as in the official code; "
            "epochs of the m1 rows are that VAE's",
            "paper_%: Kingma et al. (2014) Table 1 as quoted by secondary sources (M1 row: M1+TSVM)",
            "pyro_%: Pyro's ss-vae tutorial, M2 with the exact sum and its auxiliary classification loss",
            "grey-level pixels under a Bernoulli likelihood (Pyro's setting), no binarization"]


def _check(labels, seeds: int, models) -> None:
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise VaelabError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    if seeds < 1:
        raise VaelabError(f"--seeds must be at least 1, got {seeds}")
    bad = [n for n in labels if n < 10 or n % 10]
    if bad:
        raise VaelabError(f"--labels {bad[0]} is not a positive multiple of the 10 classes (N/10 labels per class); "
                          "choose e.g. 100, 600, 1000, 3000")
