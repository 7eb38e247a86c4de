"""Discrete codes and autoregressive models beside the VAE, on binarized MNIST: one table of
−log p(x) (or the bound a model has) and a sheet of samples per model.

| model | figure |
|---|---|
| ``vae`` 784-400-20 | −log p(x), importance-sampled (k samples, the posterior as proposal) |
| ``vae`` of the IWAE paper's size (200-200 tanh, z = 50) | the same |
| ``pixelcnn`` | −log p(x), exact |
| ``vqvae`` + its ``vq-prior`` | −log p(x|z_q) − log p(z_q), a **bound** ≥ −log p(x) |
| ``catvae`` 30 × 10 Gumbel-softmax | −log p(x), importance-sampled with the categorical posterior |

Every model trains on the same images with dynamic binarization and is measured on one fixed
binarization of the test images (seed 123, as the IWAE code does). Each run lives in
``OUT/runs/NAME`` and re-running resumes or reloads it, so a long profile can be finished
by later invocations; a row's figures are kept beside its run and measured again only when
the weights, the test images, k or the seed changed.
"""
from __future__ import annotations

import json
import os
import time

from ..errors import VaelabError
from ..evaluation import evaluate
from ..files import atomic_write_json
from ..models import names
from ..viz.grids import save_samples
from .common import Comparison, fit, prepare_out, split

ENTRIES = {  # name: (row label, model, settings)
    "vae": ("VAE 784-400-20", "vae", {"latent_dim": 20, "hidden": [400], "activation": "relu",
                                      "likelihood": "bernoulli"}),
    "vae-iwae": ("VAE, IWAE architecture (200-200 tanh, z = 50)", "vae",
                 {"latent_dim": 50, "hidden": [200, 200], "activation": "tanh", "likelihood": "bernoulli"}),
    "pixelcnn": ("gated PixelCNN", "pixelcnn", {}),
    "vqvae": ("VQ-VAE (K = 512) + PixelCNN prior", "vqvae", {"codebook_size": 512, "likelihood": "bernoulli",
                                                             "revive": True}),
    "catvae": ("Gumbel-softmax VAE (30 × 10 categorical)", "catvae", {}),
}
EVALUATION_FILE = "compare-discrete.json"  # a row's measured figures, reused while nothing they depend on changed
COLUMNS = ["model", "figure", "nats", "bits_per_dim", "epochs", "train_seconds", "samples"]


def discrete(out: str | os.PathLike, *, data: str = "mnist", data_dir=None, models: tuple[str, ...] = tuple(ENTRIES),
             epochs: int = 10, model_epochs: dict | None = None, prior_epochs: int = 10, train_size: int = 0,
             test_size: int = 0, nll_samples: int = 1000, seed: int = 0, threads: int = 0,
             progress: bool = True) -> Comparison:
    """Train each of ``models`` (keys of ``ENTRIES``) for ``epochs``, or ``model_epochs[name]``
    where given (a PixelCNN epoch costs what dozens of VAE epochs do), a VQ-VAE's prior for
    ``prior_epochs``, and measure it on the test images; writes ``table.md``, ``results.json``
    and ``samples-NAME.png``."""
    model_epochs = dict(model_epochs or {})
    unknown = [m for m in models if m not in ENTRIES]
    if unknown or not models:
        raise VaelabError(f"unknown model(s) {', '.join(unknown) or '(none given)'} for compare discrete; choose "
                          f"from {', '.join(ENTRIES)}")
    missing = [ENTRIES[m][1] for m in models if ENTRIES[m][1] not in names()]
    if missing:
        raise VaelabError(f"this vaelab has no model {missing[0]!r}; leave it out with --models")
    if set(model_epochs) - set(models):
        raise VaelabError(f"epochs given for {', '.join(sorted(set(model_epochs) - set(models)))}, which is not among "
                          f"the models compared ({', '.join(models)})")
    if min(epochs, prior_epochs, *model_epochs.values()) < 1 or nll_samples < 1:
        raise VaelabError("epochs, prior epochs and nll samples must each be at least 1")
    start = time.perf_counter()
    out = prepare_out(out)
    train, test = split(data, data_dir, train_size, test_size)
    tcfg = {"epochs": epochs, "seed": seed, "threads": threads, "binarize": "dynamic"}
    rows = [_row(name, train, test, {**tcfg, "epochs": model_epochs.get(name, epochs)}, prior_epochs, nll_samples,
                 seed, out, progress) for name in models]
    return Comparison(
        "discrete", f"Discrete codes and autoregressive models on {data} ({len(test)} test images, binarized once)",
        COLUMNS, rows,
        settings={"data": data, "n_train": len(train), "n_test": len(test), "epochs": epochs,
                  "model_epochs": model_epochs,
                  "prior_epochs": prior_epochs, "nll_samples": nll_samples, "seed": seed},
        figures=[r["samples"] for r in rows],
        notes=["nats: −log p(x) per test image; for the VQ-VAE the bound −log p(x|z_q) − log p(z_q) ≥ −log p(x) "
               "(its posterior is a point mass, so this is its negative ELBO)",
               f"importance-sampled rows use k = {nll_samples} samples; the PixelCNN's figure is exact",
               "train_seconds: wall time of training on this machine (the VQ-VAE's includes its prior's)"],
        seconds=time.perf_counter() - start)


def _row(name: str, train, test, tcfg: dict, prior_epochs: int, nll_samples: int, seed: int, out, progress) -> dict:
    label, model_name, settings = ENTRIES[name]
    run = out / "runs" / name
    t0 = time.perf_counter()
    model = fit(model_name, train, run, settings, tcfg, progress)
    if hasattr(model, "code_shape"):  # codes without a density: fit the prior over them as its second stage
        model = _with_prior(run, train, {**tcfg, "epochs": prior_epochs}, progress)
    seconds = _training_seconds(run)
    k = nll_samples if hasattr(model, "importance_log_weights") else 0  # exact or bounded figures need none
    key = _evaluation_key(model, test, k, seed)
    result = _cached(run, key)
    if result is None:
        result = evaluate(model.eval(), test, nll_samples=k, binarize="static", seed=seed, progress=progress)
        atomic_write_json(run / EVALUATION_FILE, {"key": key, "result": result})
    if "nll_bound" in result:
        figure, nats, bits = "bound ≥ −log p(x)", result["nll_bound"], result["bits_per_dim_bound"]
    elif result.get("nll_method") == "exact":
        figure, nats, bits = "−log p(x), exact", result["nll"], result["bits_per_dim"]
    else:
        figure, nats, bits = f"−log p(x), IS k = {nll_samples}", result["nll"], result["bits_per_dim"]
    png = f"samples-{name}.png"
    save_samples(model, out / png, n=64, seed=seed)
    if progress:
        print(f"{label}: {figure} {nats:.2f} nats ({time.perf_counter() - t0:.0f} s)", flush=True)
    return {"model": label, "figure": figure, "nats": nats, "bits_per_dim": bits, "epochs": _epochs(run),
            "train_seconds": round(seconds, 1), "samples": png}


def _evaluation_key(model, test, k: int, seed: int) -> str:
    """What a row's figures depend on: the weights (and the prior's), the test images, k, the seed."""
    from ..data.derive import fingerprint, model_fingerprint

    from torch import nn

    prior = getattr(model, "prior", None)  # a VQ-VAE's attached prior (a VAE's `prior` is a method)
    parts = [fingerprint(model, test.x), model_fingerprint(prior) if isinstance(prior, nn.Module) else "", str(k),
             str(seed)]
    return "/".join(parts)


def _cached(run, key: str) -> dict | None:
    """The figures an earlier invocation measured for exactly this key, else None."""
    try:
        stored = json.loads((run / EVALUATION_FILE).read_text())
    except (OSError, ValueError):
        return None
    return stored.get("result") if isinstance(stored, dict) and stored.get("key") == key else None


def _with_prior(run, train, tcfg: dict, progress: bool):
    """The VQ-VAE in ``run`` with its prior, trained (or resumed) to ``tcfg['epochs']``."""
    from ..io import PRIOR_DIR, load
    from ..training.prior import train_prior

    resume = (run / PRIOR_DIR / "run.json").is_file()
    train_prior(run, config={k: v for k, v in tcfg.items() if k != "binarize"}, data=train, resume=resume,
                progress=progress)
    return load(run)


def _epochs(run) -> str:
    """Epochs the run trained (and its prior's, where it has one), from their metrics."""
    counts = [sum(1 for line in path.read_text().splitlines() if line.strip())
              for path in (run / "metrics.jsonl", run / "prior" / "metrics.jsonl") if path.is_file()]
    return " + ".join(map(str, counts))


def _training_seconds(run) -> float:
    """Epoch seconds summed over a run's metrics (and its prior's, where it has one)."""
    total = 0.0
    for path in (run / "metrics.jsonl", run / "prior" / "metrics.jsonl"):
        if path.is_file():
            total += sum(float(json.loads(line).get("seconds", 0.0)) for line in path.read_text().splitlines()
                         if line.strip())
    return total
