"""Codebook usage of trained VQ-VAE runs: the last epoch's training figures (from metrics.jsonl)
and the codes of the MNIST test set under the run's final weights (binarized once with seed
123, as ``vaelab eval`` does for a Bernoulli model). Train the runs with
benchmarks/vqvae_usage.toml (with and without ``--no-revive``), then:

    python benchmarks/vqvae_usage.py RUN-ON RUN-OFF
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import vaelab
from vaelab.data import binarize_static
from vaelab.evaluation import TEST_BINARIZATION_SEED
from vaelab.threads import set_threads

from common import add_common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common(parser)
    parser.add_argument("runs", nargs="+", help="VQ-VAE run directories")
    args = parser.parse_args()
    set_threads(args.threads)
    test = vaelab.load_dataset("mnist", "test", data_dir=args.data_dir).x.float()
    rows = []
    for run in map(Path, args.runs):
        model = vaelab.load(run)
        x = binarize_static(test, TEST_BINARIZATION_SEED) if model.config.likelihood == "bernoulli" else test
        last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
        with torch.no_grad():
            held_out = model.codebook_usage(x)
        rows.append({"run": str(run), "revive": model.config.revive, "ema": model.config.ema,
                     "kmeans_init": model.config.kmeans_init, "K": model.config.codebook_size,
                     "epochs": last["epoch"], "train_usage": last["train"]["codebook_usage"],
                     "train_perplexity": last["train"]["code_perplexity"],
                     "revived_last_epoch": last["train"].get("codes_revived", 0.0),
                     "test_usage": held_out["codebook_usage"], "test_perplexity": held_out["code_perplexity"],
                     "val_recon": last.get("val", {}).get("recon")})
    print("| run | revive | ema | k-means | epochs | usage, last epoch | perplexity | usage, test set | perplexity "
          "| val recon |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    yes = lambda flag: "on" if flag else "off"  # noqa: E731
    for r in rows:
        recon = "" if r["val_recon"] is None else f"{r['val_recon']:.2f}"
        print(f"| {Path(r['run']).name} | {yes(r['revive'])} | {yes(r['ema'])} | {yes(r['kmeans_init'])} | {r['epochs']} | "
              f"{100 * r['train_usage']:.1f} % | {r['train_perplexity']:.1f} | {100 * r['test_usage']:.1f} % | "
              f"{r['test_perplexity']:.1f} | {recon} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
