"""Short clustering-AAE runs that compare settings: how many of 16 clusters the test images use
and the clustering error, after 4 epochs on the first 10,000 MNIST training images.

Networks 784-256-256 (encoder and decoder) and 256-256 discriminators, Adam 1e-3, batch 100,
one thread; clusters are named by the 10,000 training images (most-confident and majority
mappings) and the error measured on the first 2,000 test images. Prints one line per variant;
the table in docs/aae.md came from it.

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
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variants", nargs="+", choices=sorted(VARIANTS))
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (default: 4)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    args = parser.parse_args()
    set_threads(args.threads)
    full, test = vaelab.load_dataset("mnist", "train"), vaelab.load_dataset("mnist", "test")
    train, test = full.subset(slice(0, 10000)), test.subset(slice(0, 2000))
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
            ref, tst = probs_of(model, train.x), probs_of(model, test.x)
            lines = [json.loads(line) for line in open(d + "/run/metrics.jsonl")]
        print(json.dumps({"variant": name, "clusters_used": clusters_used(tst),
                          "error_%_most-confident": round(100 * cluster_error(tst, test.y, cluster_labels(ref, train.y)), 1),
                          "error_%_majority": round(100 * cluster_error(tst, test.y,
                                                                        cluster_labels(ref, train.y, "majority")), 1),
                          "gen_y_per_epoch": [round(r["train"]["generator/gen_y"], 2) for r in lines],
                          "seconds": round(time.perf_counter() - t0)}), flush=True)


if __name__ == "__main__":
    main()
