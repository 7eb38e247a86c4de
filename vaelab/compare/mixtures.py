"""A VAE is an infinite mixture; a mixture model is a finite one.

Binarized MNIST: mixtures of Bernoullis fitted by EM with several component counts
against a Bernoulli VAE, by test log-likelihood in nats (exact for the mixtures, the
importance-sampled estimate for the VAE). Frey Face: Gaussian mixtures against a VAE
with a Gaussian decoder, by test log-density. Both test sets are binarized / scaled
exactly as the VAE evaluation does, so the numbers share one footing.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from ..baselines import BernoulliMixture, GaussianMixture
from ..data import binarize_static
from ..errors import VaelabError
from ..evaluation import TEST_BINARIZATION_SEED, evaluate
from ..words import count
from .common import Comparison, fit, load_run, prepare_out, split

MNIST_VAE = {"latent_dim": 20, "hidden": [400], "activation": "relu", "likelihood": "bernoulli"}
FREY_VAE = {"latent_dim": 10, "hidden": [200], "activation": "tanh", "likelihood": "gaussian-learned"}
REG_COVARS = (1e-4, 1e-3, 1e-2)
FREY_PATIENCE = 100  # epochs without a better validation loss before the Frey VAE stops
TRAIN_BINARIZATION_SEED = 0


def _bernoulli_mixture(k: int, x_bin, directory: Path, em_iters: int, seed: int) -> BernoulliMixture:
    if (directory / "baseline.json").exists():
        bmm = BernoulliMixture.load(directory)
        if bmm.n_samples == len(x_bin) and bmm.seed == seed:
            return bmm
    bmm = BernoulliMixture(k, seed=seed).fit(x_bin, max_iter=em_iters)
    bmm.save(directory)
    return bmm


def _gaussian_mixture(k: int, x, seed: int) -> tuple[GaussianMixture, float]:
    """Choose reg_covar on the last 10 % of the training faces, then refit on all of them."""
    cut = int(0.9 * len(x))
    scores = {}
    for reg in REG_COVARS:
        gmm = GaussianMixture(k, "full", reg_covar=reg, seed=seed).fit(x[:cut])
        scores[reg] = float(gmm.log_prob(x[cut:]).mean())
    best = max(scores, key=scores.get)
    return GaussianMixture(k, "full", reg_covar=best, seed=seed).fit(x), best


def mixtures_vs_vae(out: str | os.PathLike, *, data_dir=None, components=(10, 100, 500), em_iters: int = 50,
                    vae_run: str | None = None, vae_epochs: int = 50, nll_samples: int = 1000,
                    frey_components=(1, 5, 10, 20), frey_vae_epochs: int = 1000, frey: bool = True,
                    train_size: int = 0, test_size: int = 0, seed: int = 0, threads: int = 0,
                    progress: bool = True) -> Comparison:
    """Tabulate test log-likelihoods of Bernoulli mixtures and a VAE on binarized MNIST and,
    with ``frey``, of Gaussian mixtures and a Gaussian-decoder VAE on Frey Face."""
    if not components or any(int(k) < 1 for k in components):
        raise VaelabError(f"component counts must be positive integers, got {list(components)}")
    if nll_samples < 1:
        raise VaelabError(f"nll_samples must be at least 1, got {nll_samples}")
    start = time.perf_counter()
    out = prepare_out(out)
    rows = []
    train, test = split("mnist", data_dir, train_size, test_size)
    x_train = binarize_static(train.x, TRAIN_BINARIZATION_SEED)
    x_test = binarize_static(test.x, TEST_BINARIZATION_SEED)  # the bits evaluate() scores the VAE on
    for k in components:
        bmm = _bernoulli_mixture(int(k), x_train, out / "mixtures" / f"bernoulli-{k}", em_iters, seed)
        rows.append({"data": "binarized MNIST", "model": f"mixture of {k} Bernoullis (EM, {len(bmm.history) - 1} it.)",
                     "test_log_likelihood": float(bmm.log_prob(x_test).mean()), "seconds": round(bmm.fit_seconds, 1)})
    t = time.perf_counter()
    tcfg = {"epochs": vae_epochs, "seed": seed, "threads": threads, "val_size": 0, "binarize": "dynamic"}
    vae = (load_run(vae_run, "mnist", train.shape, "--vae-run") if vae_run
           else fit("vae", train, out / "runs" / "vae-mnist", MNIST_VAE, tcfg, progress))
    shape = "-".join(str(v) for v in (784, *vae.config.hidden, vae.config.latent_dim))
    res = evaluate(vae, test.x, nll_samples=nll_samples, binarize="dynamic", progress=progress)
    rows.append({"data": "binarized MNIST", "model": f"VAE {shape} (IS, k = {nll_samples})",
                 "test_log_likelihood": -res["nll"], "seconds": round(time.perf_counter() - t, 1)})
    settings = {"data": "mnist, frey-faces" if frey else "mnist",
                "n_train": len(train), "n_test": len(test), "components": list(components), "em_iters": em_iters,
                "vae_run": vae_run, "vae": None if vae_run else MNIST_VAE, "vae_epochs": vae_epochs,
                "nll_samples": nll_samples, "seed": seed}
    if frey:
        faces, faces_test = split("frey-faces", data_dir)
        flat, flat_test = faces.x.flatten(1).double(), faces_test.x.flatten(1).double()
        for k in frey_components:
            t = time.perf_counter()
            gmm, reg = _gaussian_mixture(int(k), flat, seed)
            rows.append({"data": "Frey Face", "model": f"Gaussian mixture, {count(k, 'full-covariance component')} "
                         f"(reg_covar {reg:g})", "test_log_likelihood": float(gmm.log_prob(flat_test).mean()),
                         "seconds": round(time.perf_counter() - t, 1)})
        t = time.perf_counter()
        cut = int(0.9 * len(faces))  # the same held-out faces that choose the mixtures' reg_covar
        fcfg = {"epochs": frey_vae_epochs, "seed": seed, "threads": threads, "val_size": 0, "batch_size": 100,
                "patience": FREY_PATIENCE}
        fvae = fit("vae", faces.subset(slice(0, cut)), out / "runs" / "vae-frey", FREY_VAE, fcfg, progress,
                   val_data=faces.subset(slice(cut, None)))
        res = evaluate(fvae, faces_test.x, nll_samples=nll_samples, progress=progress)
        rows.append({"data": "Frey Face", "model": f"VAE 560-200-10, learned-σ Gaussian decoder (IS, k = {nll_samples})",
                     "test_log_likelihood": -res["nll"], "seconds": round(time.perf_counter() - t, 1)})
        settings.update({"frey_components": list(frey_components), "frey_vae": FREY_VAE,
                         "frey_vae_epochs": frey_vae_epochs, "reg_covar_grid": list(REG_COVARS)})
    return Comparison(
        "mixtures", "Test log-likelihood (nats per image, higher is better): finite mixtures vs the VAE",
        ["data", "model", "test_log_likelihood", "seconds"], rows, settings=settings,
        notes=["MNIST: training images binarized once (seed 0) for EM; test images binarized with seed 123, the "
               "same bits the VAE is scored on. The VAE trains on dynamically binarized images.",
               "Bernoulli mixtures: EM with Laplace (add-one) smoothing of the means; exact test log-likelihood.",
               "Frey Face (last 200 faces as test): log-densities of pixel values in [0, 1], so they are positive "
               "and not comparable with MNIST's discrete log-likelihoods. The last 10 % of the training faces "
               "(a contiguous stretch of the video, like the test faces) choose each mixture's reg_covar and "
               "early-stop the VAE (best validation weights are scored); a learned per-pixel σ otherwise "
               "shrinks on the training faces and the test density collapses.",
               "seconds: wall time to fit (mixtures) or to train and evaluate (VAEs) here; models found in the output "
               "directory from an earlier run are reused."],
        seconds=time.perf_counter() - start)
