"""Measure a trained model the way the papers did: ELBO terms, IS-NLL, active units,
reconstruction error and PSNR."""
from __future__ import annotations

import math
import time

import torch

from ..data import binarize_static
from ..errors import VaelabError
from .latent import posterior_stats
from .likelihood import log_likelihood

TEST_BINARIZATION_SEED = 123


def evaluate(model, x: torch.Tensor, *, nll_samples: int = 0, binarize: str = "none",
             batch_size: int = 500, seed: int = 0, max_rows: int | None = None,
             progress: bool = False) -> dict:
    """Evaluate ``model`` on images ``x`` (float, [0, 1]); returns a JSON-ready dict.

    ``binarize="dynamic"`` or ``"static"`` draws one fixed binarization of ``x``
    (seed 123, as the IWAE code does for its test set). ``elbo``, ``recon``, ``kl`` are
    nats per example from one seeded posterior sample each; ``nll`` is the importance-
    sampled estimate with exactly ``nll_samples`` samples (omitted when 0). ``mse`` is
    Σ_pixels (x − x̂)² per example for the deterministic reconstruction x̂, and ``psnr``
    = 10·log10(1 / per-pixel MSE) in dB for [0, 1] images (at most 100). Deterministic autoencoders
    have no latent density, so they report ``recon``, ``mse`` and ``psnr`` only.
    ``progress`` reports the log-likelihood estimate's progress on stderr (minutes for
    thousands of samples).
    """
    if nll_samples > 0 and not hasattr(model, "importance_log_weights"):
        raise VaelabError(f"the log-likelihood (NLL) needs a VAE-family model with a latent density; "
                          f"'{getattr(model, 'name', type(model).__name__)}' is a deterministic autoencoder: "
                          "evaluate it without --nll-samples")
    model.eval()
    device = next(model.parameters()).device
    if binarize != "none":
        x = binarize_static(x, TEST_BINARIZATION_SEED)
    sums: dict[str, float] = {}
    model.schedule(math.inf)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.inference_mode():
        torch.manual_seed(seed)
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size].to(device, torch.float32)
            loss = model.loss(xb)
            for k, v in loss.terms.items():
                sums[k] = sums.get(k, 0.0) + float(v) * xb.shape[0]
            sq = (model.reconstruct(xb).float() - xb).square().sum()
            sums["mse"] = sums.get("mse", 0.0) + float(sq)
    n = x.shape[0]
    result: dict = {"n": n, "k": nll_samples, "binarize": binarize}
    result.update({k: v / n for k, v in sums.items()})
    if "recon" in result and "kl" in result:
        result["elbo"] = -(result["recon"] + result["kl"])
    pixel_mse = max(result["mse"] / x[0].numel(), 1e-10)  # a perfect reconstruction reads 100 dB
    result["psnr"] = 10 * math.log10(1.0 / pixel_mse)
    if hasattr(model, "posterior_params"):
        result.update(posterior_stats(model, x, batch_size))
    if nll_samples > 0:
        t0 = time.perf_counter()
        kwargs = {} if max_rows is None else {"max_rows": max_rows}
        log_px = log_likelihood(model, x, nll_samples, seed=seed, progress=progress, **kwargs)
        result["nll"] = float(-log_px.mean())
        result["nll_stderr"] = float(log_px.std() / math.sqrt(n)) if n > 1 else 0.0
        result["nll_seconds"] = round(time.perf_counter() - t0, 2)
        result["bits_per_dim"] = result["nll"] / (x[0].numel() * math.log(2))
    return result


__all__ = ["evaluate", "log_likelihood", "posterior_stats"]
