"""The IWAE paper's one-layer VAE on dynamically binarized MNIST (Burda et al. 2016, Table 1).

Architecture as in the paper: encoder 784-200-200-50 (tanh, Gaussian with exp-linear
std), decoder 50-200-200-784 (tanh, Bernoulli), Glorot init, decoder output bias at the
logit of the mean training pixel. Trained on all 60,000 training images with dynamic
binarization; evaluated on all 10,000 test images (binarized once, seed 123) with the
5000-sample importance-weighted bound. Paper: 86.76 nats, 19 active units.

Profiles (the training schedule is ours; see docs/benchmarks.md for deviations):
  quick   280 epochs, batch 100, lr 1e-3 with cosine decay to 1e-5 (about 14 minutes here)
  long    the same as quick over 900 epochs (about 45 minutes here)
  paper   the paper's schedule: batch 20, Adam eps 1e-4, 3^i epochs at 1e-3*10^(-i/7), 3280 epochs

    python benchmarks/iwae_vae.py --profile quick --out runs/iwae-quick
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import vaelab
from vaelab.threads import set_threads
from vaelab.training.trainer import TrainConfig

from common import add_common

MODEL = {"latent_dim": 50, "hidden": [200, 200], "activation": "tanh", "likelihood": "bernoulli",
         "init": "glorot", "output_bias_from_data": True}
PROFILES = {
    "quick": {"epochs": 280, "batch_size": 100, "lr": 1e-3, "lr_schedule": "cosine", "adam_eps": 1e-4},
    "long": {"epochs": 900, "batch_size": 100, "lr": 1e-3, "lr_schedule": "cosine", "adam_eps": 1e-4},
    "paper": {"epochs": 3280, "batch_size": 20, "lr": 1e-3, "lr_schedule": "iwae", "adam_eps": 1e-4},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common(parser)
    parser.add_argument("--profile", choices=tuple(PROFILES), default="quick")
    parser.add_argument("--epochs", type=int, help="override the profile's epoch count")
    parser.add_argument("--batch-size", type=int, help="override the profile's batch size")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine", "iwae"),
                        help="override the profile's learning-rate schedule")
    parser.add_argument("--out", required=True, help="run directory (continued if it exists)")
    parser.add_argument("--nll-samples", type=int, default=5000)
    parser.add_argument("--test-limit", type=int, default=0, help="evaluate the first N test images (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    set_threads(args.threads)

    settings = dict(PROFILES[args.profile], binarize="dynamic", val_size=0, seed=args.seed,
                    device=args.device, threads=args.threads)
    if args.epochs:
        settings["epochs"] = args.epochs
    if args.batch_size:
        settings["batch_size"] = args.batch_size
    if args.lr_schedule:
        settings["lr_schedule"] = args.lr_schedule
    out = Path(args.out)
    resume = (out / "checkpoints" / "last.safetensors").exists()
    t0 = time.perf_counter()
    result = vaelab.train("vae", "mnist", out, model_config=None if resume else MODEL,
                          config=TrainConfig(**settings), data_dir=args.data_dir, resume=resume)
    train_s = time.perf_counter() - t0
    test = vaelab.load_dataset("mnist", "test", data_dir=args.data_dir).x
    if args.test_limit:
        test = test[: args.test_limit]
    metrics = vaelab.evaluate(result.model, test, nll_samples=args.nll_samples, binarize="dynamic")
    train_500 = vaelab.load_dataset("mnist", "train", data_dir=args.data_dir).x[:500]
    au_500 = vaelab.evaluate(result.model, train_500, binarize="dynamic")["active_units"]
    summary = {
        "profile": args.profile, "settings": settings, "resumed": resume,
        "train_seconds_this_call": round(train_s, 1),
        "train_seconds_total": round(sum(json.loads(l)["seconds"] for l in open(out / "metrics.jsonl")), 1),
        "nll": metrics["nll"], "nll_stderr": metrics["nll_stderr"], "elbo": metrics["elbo"],
        "k": metrics["k"], "n": metrics["n"], "nll_seconds": metrics["nll_seconds"],
        "active_units_test": metrics["active_units"], "active_units_train500": au_500,
        "paper_nll": 86.76, "paper_active_units": 19, "threads": torch.get_num_threads(),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
