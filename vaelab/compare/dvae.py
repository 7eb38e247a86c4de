"""The denoising VAE beside the VAE: honest likelihoods, and robustness to corrupted inputs.

For each noise level, a ``dvae`` (Im et al. 2017) of the VAE's size is trained with that
corruption of its encoder's input; each is scored by

- ``dvae_nll``: the importance-sampled −log p(x) of the clean test image with the clean-input
  encoder as proposal (what ``vaelab eval --nll-samples`` reports), beside the VAE's ``vae_nll``;
- ``dvae_nelbo``: −ELBO with the clean-input encoder q(z|x), a bound ≥ the true −log p(x);
- ``neg_dvae_objective``: −L_dvae on the test images at the training corruption, the training
  objective (no likelihood: docs/dvae.md states the bound question with these numbers);
- ``vae_recon_error`` / ``dvae_recon_error``: Σ_pixels (x − x̂)² per image of the clean test
  image x and the reconstruction x̂ of its corrupted copy at that level (level 0: of x itself).

Binarized MNIST (salt-and-pepper or masking, Bernoulli decoder as the VAE's) and Frey Face
(Gaussian noise, learned-σ Gaussian decoder, early-stopped on held-out faces). Level 0 with
M = K = 1 is the VAE itself (the objectives coincide draw for draw), so it is not trained twice.
"""
from __future__ import annotations

import math
import os
import time

import torch

from ..data import binarize_static
from ..errors import VaelabError
from ..evaluation import TEST_BINARIZATION_SEED, evaluate
from ..models.dvae import BINARY_CORRUPTIONS
from ..viz.grids import grid, save_png
from .common import Comparison, batched, fit, prepare_out, split

LEVELS = (0.0, 0.05, 0.1, 0.2, 0.3)
FREY_LEVELS = (0.0, 0.025, 0.05, 0.1, 0.2, 0.3)  # σ; the original code used 0.025 on Frey Face
MNIST_NET = {"latent_dim": 20, "hidden": [400], "activation": "relu", "likelihood": "bernoulli"}
FREY_NET = {"latent_dim": 10, "hidden": [200], "activation": "tanh", "likelihood": "gaussian-learned"}
FREY_PATIENCE = 100  # epochs without a better validation loss before a Frey model stops
TEST_NOISE_SEED = 1234
GRID_IMAGES = 10


@torch.no_grad()
def _nelbo(model, x: torch.Tensor, seed: int, batch_size: int = 500) -> float:
    """−ELBO per image with the clean-input encoder (one seeded posterior sample each)."""
    clean = getattr(model, "clean_loss", model.loss)
    model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        total = sum(float(clean(x[i:i + batch_size]).total) * len(x[i:i + batch_size])
                    for i in range(0, len(x), batch_size))
    return total / len(x)


def _error(model, noisy: torch.Tensor, clean: torch.Tensor) -> float:
    """Mean over images of Σ_pixels (x − reconstruct(x̃))²."""
    return float((batched(model.reconstruct, noisy) - clean).square().flatten(1).sum(1).mean())


def _part(name: str, train, val, x_test, kind: str, levels, net: dict, tcfg: dict, m: int, k: int,
          nll_samples: int, seed: int, out, progress: bool) -> tuple[list[dict], dict, str]:
    """Rows of one dataset: the VAE once, a DVAE per level; and the figure at the top level."""
    from ..nn.corruption import corrupt

    t0 = time.perf_counter()
    vae = fit("vae", train, out / "runs" / f"vae-{name}", net, tcfg, progress, val_data=val).eval()
    vae_res = evaluate(vae, x_test, nll_samples=nll_samples, seed=seed, progress=progress)
    vae_info = {"nll": vae_res["nll"], "nelbo": _nelbo(vae, x_test, seed),
                "seconds": round(time.perf_counter() - t0, 1)}
    gen = torch.Generator().manual_seed(TEST_NOISE_SEED)
    rows, panels = [], []
    for level in levels:
        t0 = time.perf_counter()
        cfg = {**net, "corruption": kind, "noise_level": float(level), "corruptions_m": m, "samples_k": k}
        same_as_vae = level == 0 and m == k == 1
        dvae = vae if same_as_vae else fit("dvae", train, out / "runs" / f"dvae-{name}-{level:g}", cfg, tcfg,
                                           progress, val_data=val).eval()
        res = vae_res if same_as_vae else evaluate(dvae, x_test, nll_samples=nll_samples, seed=seed,
                                                   progress=progress)
        objective = -(res["recon"] + res["kl"]) if same_as_vae else res["dvae_objective"]
        noisy = x_test if level == 0 else corrupt(x_test, kind, float(level), gen)
        rows.append({"data": name, "corruption": kind, "level": float(level),
                     "vae_nll": vae_info["nll"], "dvae_nll": res["nll"], "dvae_nll_stderr": res["nll_stderr"],
                     "dvae_nelbo": vae_info["nelbo"] if same_as_vae else _nelbo(dvae, x_test, seed),
                     "neg_dvae_objective": -objective,
                     "vae_recon_error": _error(vae, noisy, x_test), "dvae_recon_error": _error(dvae, noisy, x_test),
                     "dvae_is_vae": same_as_vae, "seconds": round(time.perf_counter() - t0, 1)})
        if level == max(levels):
            panels = [noisy[:GRID_IMAGES], batched(vae.reconstruct, noisy[:GRID_IMAGES]),
                      batched(dvae.reconstruct, noisy[:GRID_IMAGES]), x_test[:GRID_IMAGES]]
    figure = out / f"dvae_{name}.png"
    save_png(grid(torch.cat(panels), nrow=GRID_IMAGES), figure)
    return rows, vae_info, str(figure)


def dvae_vs_vae(out: str | os.PathLike, *, data_dir=None, levels=LEVELS, corruption: str = "salt-pepper",
                frey_levels=FREY_LEVELS, corruptions_m: int = 1, samples_k: int = 1, epochs: int = 20,
                frey_epochs: int = 1000, nll_samples: int = 1000, frey: bool = True, train_size: int = 0,
                test_size: int = 0, seed: int = 0, threads: int = 0, progress: bool = True) -> Comparison:
    """Train a VAE and one DVAE per noise level on binarized MNIST and (``frey``) Frey Face;
    tabulate the test IS-NLL of each beside the VAE's, the DVAE's clean-encoder −ELBO and
    −L_dvae, and the reconstruction error of corrupted test images for both models."""
    if corruption not in BINARY_CORRUPTIONS:
        raise VaelabError(f"--corruption for binarized MNIST must be one of {', '.join(BINARY_CORRUPTIONS)} "
                          f"(Frey Face always uses gaussian), got {corruption!r}")
    for what, values, top in (("levels", levels, 1.0), ("frey_levels", frey_levels, math.inf)):
        if not values or any(not 0 <= float(v) <= top for v in values):
            raise VaelabError(f"{what} must be non-empty and within [0, {top:g}], got {list(values)}")
    if nll_samples < 1:
        raise VaelabError(f"nll_samples must be at least 1, got {nll_samples}")
    for name, value in (("corruptions_m", corruptions_m), ("samples_k", samples_k)):
        if value < 1:
            raise VaelabError(f"{name} must be at least 1, got {value}")
    start = time.perf_counter()
    out = prepare_out(out)
    train, test = split("mnist", data_dir, train_size, test_size)
    x_test = binarize_static(test.x, TEST_BINARIZATION_SEED)  # the bits `vaelab eval` scores
    tcfg = {"epochs": epochs, "seed": seed, "threads": threads, "val_size": 0, "binarize": "dynamic"}
    rows, vae_mnist, fig = _part("mnist", train, None, x_test, corruption, levels, MNIST_NET, tcfg,
                                 corruptions_m, samples_k, nll_samples, seed, out, progress)
    figures, vaes = [fig], {"mnist": vae_mnist}
    settings = {"data": "mnist, frey-faces" if frey else "mnist", "n_train": len(train), "n_test": len(test),
                "epochs": epochs, "nll_samples": nll_samples, "corruption": corruption, "levels": list(levels),
                "corruptions_m": corruptions_m, "samples_k": samples_k, "network": MNIST_NET, "seed": seed,
                "test_noise_seed": TEST_NOISE_SEED}
    if frey:
        faces, faces_test = split("frey-faces", data_dir)
        cut = int(0.9 * len(faces))  # the held-out faces early-stop every Frey model
        fcfg = {"epochs": frey_epochs, "seed": seed, "threads": threads, "val_size": 0, "batch_size": 100,
                "patience": FREY_PATIENCE}
        frows, vae_frey, fig = _part("frey-faces", faces.subset(slice(0, cut)), faces.subset(slice(cut, None)),
                                     faces_test.x, "gaussian", frey_levels, FREY_NET, fcfg, corruptions_m, samples_k,
                                     nll_samples, seed, out, progress)
        rows += frows
        figures.append(fig)
        vaes["frey-faces"] = vae_frey
        settings.update({"frey_levels": list(frey_levels), "frey_epochs": frey_epochs, "frey_network": FREY_NET,
                         "frey_patience": FREY_PATIENCE, "frey_n_train": cut, "frey_n_test": len(faces_test)})
    settings["vae"] = vaes
    return Comparison(
        "dvae", f"Denoising VAE vs VAE at equal size: test −log p(x) (IS, k = {nll_samples}, clean-input encoder "
                "as proposal), the bound question, and reconstruction error of corrupted test images",
        ["data", "corruption", "level", "vae_nll", "dvae_nll", "dvae_nelbo", "neg_dvae_objective",
         "vae_recon_error", "dvae_recon_error"], rows, settings=settings, figures=figures,
        notes=["nats per image; nll = −log p(x) by importance sampling with the clean-input encoder q(z|x) "
               "as proposal; dvae_nelbo = −ELBO with q(z|x) (a bound ≥ −log p(x)); neg_dvae_objective = "
               f"−L_dvae on the test images with the training corruption (M = {corruptions_m}, "
               f"K = {samples_k}): a training objective, not a likelihood.",
               "VAE −ELBO: " + ", ".join(f"{k} {v['nelbo']:.2f}" for k, v in vaes.items()) + ".",
               "recon_error: Σ_pixels (x − x̂)² per image, x̂ the model's reconstruction (decoder mean at the "
               "posterior mean) of the test image corrupted at that level (seed "
               f"{TEST_NOISE_SEED}); level 0: of the clean image.",
               "MNIST: trained on dynamically binarized images, scored on the test images binarized once "
               f"(seed {TEST_BINARIZATION_SEED}); levels are the probability that a pixel is corrupted. Frey Face: "
               "levels are the Gaussian σ (clamped to [0, 1]); the last 10 % of the training faces early-stop "
               f"every model (patience {FREY_PATIENCE} epochs).",
               "Level 0 with M = K = 1 is the VAE itself (same objective, same draws): its row repeats the VAE.",
               "Pictures: for the top level, rows of corrupted test images, VAE and DVAE reconstructions, clean."],
        seconds=time.perf_counter() - start)
