"""AAE vs VAE codes under the same 2-D prior (Makhzani et al. 2015, their Figure 2; the notes'
figure): how well does each model's aggregated posterior q(z) match its prior p(z)?

For each prior (N(0, I) and the 10-Gaussian mixture by default) an ``aae`` and a VAE are trained
with 2-D codes on the same images and networks; the VAE under the mixture is ``vae-prior``, with a
one-sample Monte-Carlo KL to the mixture (under N(0, I) it is the plain VAE's closed-form KL).
Measured per model:

- ``mmd2``: the unbiased MMD² between the test codes (encoder means) and as many prior draws,
  Gaussian kernel with one bandwidth per prior (the median distance between prior draws), so the
  two models under one prior are measured with the same kernel. Lower: q(z) closer to p(z).
- ``parzen``: the Gaussian Parzen-window log-likelihood of the test images (real-valued pixels)
  under ``parzen_samples`` decoded prior draws, σ chosen on held-out training images from a grid
  (Breuleux et al. 2011; the estimator's weakness is in docs/aae.md).

The figure draws the test codes coloured by label, one panel per model and prior, beside
prior draws.
"""
from __future__ import annotations

import os
import time

import torch

from ..errors import VaelabError
from ..evaluation.mmd import median_bandwidth, mmd2
from ..evaluation.parzen import SIGMA_GRID, check_sigmas, parzen
from ..nn.priors import sample_prior
from ..viz.plots import scatter_panels
from .common import Comparison, batched, fit, prepare_out, split

PRIORS = ("normal", "mixture")
PARZEN_ANCHOR = 340.0  # Makhzani et al. Table 1, AAE on MNIST (±2)


def aae_vs_vae(out: str | os.PathLike, *, data: str = "mnist", data_dir=None, priors=PRIORS,
               hidden=(1000, 1000), epochs: int = 20, lr: float = 1e-3, batch_size: int = 100,
               adversarial_lr_scale: float = 0.5, val_size: int = 1000, parzen_samples: int = 10000, sigmas=SIGMA_GRID, mmd_points: int = 0,
               train_size: int = 0, test_size: int = 0, seed: int = 0, threads: int = 0,
               progress: bool = True) -> Comparison:
    """Train an ``aae`` and a VAE with 2-D codes per prior in ``priors`` on ``data`` (the last
    ``val_size`` training images held out for validation and Parzen's σ) and measure MMD² of the
    test codes to the prior and the Parzen log-likelihood of the test images."""
    priors = tuple(priors)
    bad = [p for p in priors if p not in PRIORS]
    if not priors or bad:
        raise VaelabError(f"aae-vs-vae compares under the priors {', '.join(PRIORS)}; got {', '.join(bad) or 'none'}")
    sigmas = check_sigmas(sigmas)
    if not adversarial_lr_scale > 0:
        raise VaelabError(f"adversarial_lr_scale must be > 0, got {adversarial_lr_scale}")
    for name, n in (("epochs", epochs), ("val_size", val_size), ("parzen_samples", parzen_samples)):
        if n < 1:
            raise VaelabError(f"{name} must be at least 1, got {n}")
    start = time.perf_counter()
    out = prepare_out(out)
    train, test = split(data, data_dir, train_size, test_size)
    if train.y is None:
        raise VaelabError(f"{data} has no labels; the code maps are coloured by label, choose a labelled dataset")
    if len(train) <= val_size:
        raise VaelabError(f"val_size {val_size} leaves no training images of {len(train)}; lower --val-size")
    train, val = train.subset(slice(0, len(train) - val_size)), train.subset(slice(len(train) - val_size, len(train)))
    tcfg = {"epochs": epochs, "seed": seed, "threads": threads, "lr": lr, "batch_size": batch_size,
            "binarize": "dynamic", "val_size": 0}
    net = {"latent_dim": 2, "hidden": list(hidden)}
    n_mmd = mmd_points or len(test)
    rows, panels, settings_models = [], [], {}
    for prior in priors:
        g = torch.Generator().manual_seed(seed + 1)
        prior_draws = sample_prior(prior, n_mmd, 2, g)
        bandwidth = median_bandwidth(prior_draws, prior_draws)
        panels.append((prior_draws, None, f"prior: {prior}"))
        vae_name, vae_cfg = ("vae", net) if prior == "normal" else ("vae-prior", {**net, "prior": prior})
        aae_cfg = {**net, "prior": prior, "disc_lr_scale": adversarial_lr_scale, "gen_lr_scale": adversarial_lr_scale}
        runs = [("aae", "aae", aae_cfg), ("vae", vae_name, vae_cfg)]
        for label, name, cfg in runs:
            model = fit(name, train, out / "runs" / f"{label}-{prior}", cfg, tcfg, progress, val_data=val).eval()
            settings_models[f"{label}-{prior}"] = {"model": name, **cfg}
            codes = batched(lambda x, m=model: m.encode(x).mean, test.x).float()
            m = mmd2(codes[:n_mmd], prior_draws, bandwidth=bandwidth)
            samples = model.sample(parzen_samples, generator=torch.Generator().manual_seed(seed + 2)).float()
            p = parzen(samples, test.x, val.x, sigmas)
            rows.append({"prior": prior, "model": name, "mmd2": m.mmd2, "bandwidth": m.bandwidth,
                         "parzen_nats": p.log_likelihood, "parzen_stderr": p.stderr, "parzen_sigma": p.sigma,
                         "val_recon": _last_val_recon(out / "runs" / f"{label}-{prior}")})
            panels.append((codes, test.y, f"{label.upper()} codes, {prior} prior"))
    figure = out / "aae_vs_vae_codes.png"
    scatter_panels(panels, figure, ncols=3, class_names=train.classes)
    return Comparison(
        "aae-vs-vae", f"AAE vs VAE with 2-D codes on {data}: q(z) against p(z), and Parzen log-likelihood "
                      f"({len(test)} test images)",
        ["prior", "model", "mmd2", "bandwidth", "parzen_nats", "parzen_stderr", "parzen_sigma", "val_recon"], rows,
        settings={"data": data, "n_train": len(train), "n_val": len(val), "n_test": len(test), "epochs": epochs,
                  "lr": lr, "batch_size": batch_size, "hidden": list(hidden), "adversarial_lr_scale": adversarial_lr_scale, "priors": list(priors),
                  "parzen_samples": parzen_samples, "sigmas": list(sigmas), "mmd_points": n_mmd, "seed": seed,
                  "models": settings_models},
        figures=[str(figure)],
        notes=[f"mmd2: unbiased MMD² between {n_mmd} test codes (encoder means) and {n_mmd} prior draws, Gaussian "
               "kernel exp(-|a-b|²/(2h²)) with h = the median distance between the prior draws (one h per prior). "
               "Lower is closer; values near 0 can be slightly negative.",
               f"parzen_nats: mean Gaussian Parzen-window log-likelihood of the test images (grey levels) under "
               f"{parzen_samples} decoded prior draws, σ chosen on the {len(val)} held-out training images; not a "
               f"likelihood or a bound (docs/aae.md). Makhzani et al. report 340 ± 2 for their AAE (not 2-D codes).",
               "vae under the mixture prior: vae-prior, a one-sample Monte-Carlo KL to the mixture; under the normal "
               "prior the plain vae.",
               "val_recon: the lowest validation reconstruction term over the epochs (nats per image, statically "
               "binarized held-out images)."],
        seconds=time.perf_counter() - start)


def _last_val_recon(run) -> float | None:
    import json

    path = run / "metrics.jsonl"
    if not path.exists():
        return None
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    values = [line["val"]["recon"] for line in lines if isinstance(line.get("val"), dict) and "recon" in line["val"]]
    return min(values) if values else None
