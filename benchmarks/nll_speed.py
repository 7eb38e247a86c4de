"""Time the 5000-sample importance-sampled NLL over the 10,000 MNIST test images.

Model: the pytorch/examples VAE shape (784-400-20, ReLU, Bernoulli), trained briefly
here (``--epochs``, dynamic binarization) or loaded from ``--run``. ``--bare`` also times
a plain batched estimator (20 points × 5000 samples per step, torch.distributions-free
but unfused) on the same model for comparison.

    python benchmarks/nll_speed.py
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
import time

import torch
import torch.nn.functional as F

import vaelab
from vaelab.threads import set_threads

from common import add_common


@torch.no_grad()
def bare_nll(model, x: torch.Tensor, k: int, points: int = 20) -> float:
    total = 0.0
    for i in range(0, x.shape[0], points):
        xb = x[i:i + points]
        mu, logvar = model.posterior_params(xb)
        std = torch.exp(0.5 * logvar)
        eps = torch.randn(xb.shape[0], k, mu.shape[1])
        z = mu[:, None] + std[:, None] * eps
        logits = model.decoder(z.reshape(-1, mu.shape[1])).reshape(xb.shape[0], k, -1)
        log_px = -F.binary_cross_entropy_with_logits(
            logits, xb.reshape(xb.shape[0], 1, -1).expand_as(logits), reduction="none").sum(-1)
        log_pz = -0.5 * z.pow(2).sum(-1)
        log_qz = -0.5 * eps.pow(2).sum(-1) - 0.5 * logvar.sum(-1, keepdim=True)
        total += float((torch.logsumexp(log_px + log_pz - log_qz, 1) - math.log(k)).sum())
    return -total / x.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common(parser)
    parser.add_argument("--run", help="evaluate this run directory instead of training one")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs when no --run (default: 5)")
    parser.add_argument("-k", type=int, default=5000, help="importance samples (default: 5000)")
    parser.add_argument("--limit", type=int, default=0, help="first N test images (default: all 10,000)")
    parser.add_argument("--bare", action="store_true", help="also time the bare batched estimator")
    args = parser.parse_args()
    set_threads(args.threads)
    if args.run:
        model = vaelab.load(args.run)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            model = vaelab.train("vae", "mnist", f"{tmp}/run", data_dir=args.data_dir, progress=False,
                                 model_config={"latent_dim": 20, "hidden": [400]},
                                 config={"epochs": args.epochs, "batch_size": 128, "val_size": 0}).model
    x = vaelab.load_dataset("mnist", "test", data_dir=args.data_dir).x
    if args.limit:
        x = x[: args.limit]
    t = time.perf_counter()
    result = vaelab.evaluate(model, x, nll_samples=args.k, binarize="dynamic")
    total = time.perf_counter() - t
    out = {"n": result["n"], "k": result["k"], "nll": result["nll"], "nll_seconds": result["nll_seconds"],
           "evaluate_seconds": round(total, 2), "threads": torch.get_num_threads()}
    if args.bare:
        xb = vaelab.data.binarize_static(x, 123)
        t = time.perf_counter()
        out["bare_nll"] = bare_nll(model, xb, args.k)
        out["bare_seconds"] = round(time.perf_counter() - t, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
