"""Short clustering-AAE runs that compare settings: how many of 16 clusters validation images
use and the clustering error, after 4 epochs on the first 10,000 MNIST training images.

Networks 784-256-256 (encoder and decoder) and 256-256 discriminators, Adam 1e-3, batch 100,
one thread; clusters are named by the 10,000 training images (most-confident and majority
mappings) and the error measured on 2,000 validation images, MNIST training images
50,000-51,999, which no run trains on (``--split val``, the only split: a sweep chooses, so it
never reads test images). Prints one line per variant; the table in docs/aae.md came from it.

    python benchmarks/aae_cluster_variants.py paper style5 style5-bn style5-bn-gen1
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import vaelab
from vaelab.evaluation.clustering import cluster_error, cluster_labels, clusters_used
from vaelab.threads import set_threads

from aae_clusters import probs_of
from common import add_selection_split, refuse_test_split

PAPER = {"logit_batchnorm": False}  # the paper's network: no batch norm on the logits
VARIANTS = {
    "paper": PAPER,
    "gen1": {**PAPER, "gen_lr_scale": 1.0},
    "gen1-disc0.2": {**PAPER, "gen_lr_scale": 1.0, "disc_lr_scale": 0.2},
    "gaussian-gen1": {**PAPER, "encoder": "gaussian", "gen_lr_scale": 1.0},
    "style2": {**PAPER, "latent_dim": 2},
    "style5": {**PAPER, "latent_dim": 5},
    "style5-gen1-disc1": {**PAPER, "latent_dim": 5, "gen_lr_scale": 1.0, "disc_lr_scale": 1.0},
    "style5-lr2e-4": {**PAPER, "latent_dim": 5, "lr": 2e-4},
    "style5-bn": {"latent_dim": 5, "logit_batchnorm": True},
    "style5-bn-gen1": {"latent_dim": 5, "logit_batchnorm": True, "gen_lr_scale": 1.0},
    "bn": {"logit_batchnorm": True},  # the aae-cluster defaults: style 10-D, generator at 0.5 ×
    "bn-gen1": {"logit_batchnorm": True, "gen_lr_scale": 1.0},
}
VALIDATION = slice(50000, 52000)  # training images the runs never see (they train on 0-9,999)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variants", nargs="+", choices=sorted(VARIANTS))
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (default: 4)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    add_selection_split(parser)
    args = parser.parse_args()
    refuse_test_split(args.split)
    set_threads(args.threads)
    full = vaelab.load_dataset("mnist", "train")
    train, val = full.subset(slice(0, 10000)), full.subset(VALIDATION)
    for name in args.variants:
        settings = dict(VARIANTS[name])
        lr = settings.pop("lr", 1e-3)
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            model = vaelab.train("aae-cluster", train, d + "/run", val_data=full.subset(slice(59000, 60000)),
                                 model_config={"hidden": [256, 256], "disc_hidden": [256, 256], "clusters": 16,
                                               **settings},
                                 config={"epochs": args.epochs, "lr": lr, "threads": args.threads,
                                         "batch_size": 100, "val_size": 0}, progress=False).model
            ref, scored = probs_of(model, train.x), probs_of(model, val.x)
            lines = [json.loads(line) for line in open(d + "/run/metrics.jsonl")]
        print(json.dumps({"variant": name, "split": "val", "clusters_used": clusters_used(scored),
                          "error_%_most-confident": round(100 * cluster_error(scored, val.y,
                                                                              cluster_labels(ref, train.y)), 1),
                          "error_%_majority": round(100 * cluster_error(scored, val.y,
                                                                        cluster_labels(ref, train.y, "majority")), 1),
                          "gen_y_per_epoch": [round(r["train"]["generator/gen_y"], 2) for r in lines],
                          "seconds": round(time.perf_counter() - t0)}), flush=True)


if __name__ == "__main__":
    main()
