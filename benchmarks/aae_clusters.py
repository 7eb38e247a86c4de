"""Unsupervised clustering error of trained models with ``cluster_probs`` (the clustering AAE,
Makhzani et al. 2015 §6), under the paper's mapping and the majority mapping.

Each cluster is named by labelled reference images, the MNIST training images by default
(``most-confident``: the label of the image x maximising q(y = cluster | x), the paper's rule;
``majority``: the most frequent label among the images assigned to it); the error is then
measured on the 10,000 test images, which the mapping never saw. Prints one JSON line per run.
Anchors (from memory of the paper, not confirmed from its text): 9.55 ± 2.05 % with 16
clusters, 4.10 ± 1.13 % with 30.

    vaelab train aae-cluster --data mnist --clusters 16 --out runs/c16 --batch-size 100 --threads 1
    python benchmarks/aae_clusters.py runs/c16 --threads 1
"""
from __future__ import annotations

import argparse
import json

import torch

import vaelab
from vaelab.evaluation.clustering import MAPPINGS, cluster_error, cluster_labels, clusters_used
from vaelab.threads import set_threads

ANCHORS = {16: 9.55, 30: 4.10}


@torch.no_grad()
def probs_of(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """q(y|x) of every image, (N, C), in batches."""
    model.eval()
    return torch.cat([model.cluster_probs(x[i:i + batch_size]).float() for i in range(0, len(x), batch_size)])


def measure(run: str, reference: vaelab.Dataset, test: vaelab.Dataset) -> dict:
    model = vaelab.load(run)
    if not hasattr(model, "cluster_probs"):
        raise vaelab.errors.VaelabError(f"{run} holds a '{model.name}', which assigns no clusters; "
                                        "give runs of a clustering model (aae-cluster)")
    ref, tst = probs_of(model, reference.x), probs_of(model, test.x)
    c = ref.shape[1]
    row = {"run": run, "clusters": c, "clusters_used_on_test": clusters_used(tst), "n_reference": len(reference),
           "n_test": len(test), "anchor_error_%": ANCHORS.get(c)}
    for mapping in MAPPINGS:
        names = cluster_labels(ref, reference.y, mapping)
        row[f"error_%_{mapping}"] = round(100 * cluster_error(tst, test.y, names), 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories of clustering models")
    parser.add_argument("--data", default="mnist", help="dataset (default: mnist)")
    parser.add_argument("--data-dir", default=None, help="data directory (default: $VAELAB_DATA_DIR)")
    parser.add_argument("--reference-size", type=int, default=0,
                        help="first N training images name the clusters (default: 0 = all)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    args = parser.parse_args()
    set_threads(args.threads)
    reference = vaelab.load_dataset(args.data, "train", data_dir=args.data_dir)
    if args.reference_size:
        reference = reference.subset(slice(0, args.reference_size))
    test = vaelab.load_dataset(args.data, "test", data_dir=args.data_dir)
    for run in args.runs:
        print(json.dumps(measure(run, reference, test)), flush=True)


if __name__ == "__main__":
    main()
