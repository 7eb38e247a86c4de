"""Denoising: what a denoising autoencoder learns that a plain autoencoder does not.

For each corruption type and level, the test PSNR (dB, images in [0, 1]) of the noisy
input, of a ``dae`` trained on that corruption, and of a plain ``ae`` of the same shape
fed the same noisy images. Test noise is drawn from a fixed seed, so every model sees
the same corrupted test set.
"""
from __future__ import annotations

import os
import time

import torch

from ..baselines import psnr
from ..errors import VaelabError
from ..nn.corruption import CORRUPTIONS, corrupt
from ..viz.grids import grid, save_png
from .common import Comparison, batched, fit, prepare_out, split

LEVELS = {"gaussian": (0.1, 0.3, 0.5), "masking": (0.25, 0.5, 0.75), "salt-pepper": (0.1, 0.2, 0.4)}
NETWORK = {"latent_dim": 64, "hidden": [512, 256], "activation": "relu", "loss": "bernoulli"}
TEST_NOISE_SEED = 1234
GRID_IMAGES = 10


def denoising(out: str | os.PathLike, *, data: str = "mnist", data_dir=None, corruptions=tuple(LEVELS),
              levels: dict | None = None, epochs: int = 10, train_size: int = 0, test_size: int = 0,
              seed: int = 0, threads: int = 0, progress: bool = True) -> Comparison:
    """Train one ``dae`` per (corruption, level) and one plain ``ae``; tabulate test PSNRs and
    write one picture per corruption (rows: noisy, DAE output, AE output, clean)."""
    bad = [c for c in corruptions if c not in CORRUPTIONS or c == "none"]
    if bad:
        raise VaelabError(f"unknown corruption(s) {', '.join(bad)}; choose from gaussian, masking, salt-pepper")
    levels = {c: tuple((levels or {}).get(c, LEVELS[c])) for c in corruptions}
    start = time.perf_counter()
    out = prepare_out(out)
    train, test = split(data, data_dir, train_size, test_size)
    tcfg = {"epochs": epochs, "seed": seed, "threads": threads, "val_size": 0, "binarize": "none"}
    ae = fit("ae", train, out / "runs" / "ae", NETWORK, tcfg, progress).eval()
    gen = torch.Generator().manual_seed(TEST_NOISE_SEED)
    rows, figures = [], []
    for kind in corruptions:
        panels = []
        for level in levels[kind]:
            cfg = {**NETWORK, "corruption": kind, "noise_level": float(level)}
            dae = fit("dae", train, out / "runs" / f"dae-{kind}-{level}", cfg, tcfg, progress).eval()
            noisy = corrupt(test.x, kind, float(level), gen)
            denoised, plain = batched(dae.reconstruct, noisy), batched(ae.reconstruct, noisy)
            rows.append({"corruption": kind, "level": level,
                         "psnr_noisy": float(psnr(noisy, test.x, reduction="mean")),
                         "psnr_dae": float(psnr(denoised, test.x, reduction="mean")),
                         "psnr_ae": float(psnr(plain, test.x, reduction="mean"))})
            panels += [noisy[:GRID_IMAGES], denoised[:GRID_IMAGES], plain[:GRID_IMAGES], test.x[:GRID_IMAGES]]
        figure = out / f"denoising_{kind}.png"
        save_png(grid(torch.cat(panels), nrow=GRID_IMAGES), figure)
        figures.append(str(figure))
    return Comparison(
        "denoise", f"Test PSNR (dB) on {data} ({len(test)} images): noisy input, DAE output, plain AE output",
        ["corruption", "level", "psnr_noisy", "psnr_dae", "psnr_ae"], rows,
        settings={"data": data, "n_train": len(train), "n_test": len(test), "epochs": epochs, "seed": seed,
                  "network": NETWORK, "levels": {k: list(v) for k, v in levels.items()},
                  "test_noise_seed": TEST_NOISE_SEED},
        figures=figures,
        notes=["PSNR = 10 log10(1 / MSE) per image, averaged over the test images.",
               "Gaussian level is σ (clamped to [0, 1] after adding); masking and salt-pepper levels are the "
               "probability that a pixel is corrupted.",
               "Pictures: for each level, four rows of " + str(GRID_IMAGES) + " test images: noisy, DAE, AE, clean."],
        seconds=time.perf_counter() - start)
