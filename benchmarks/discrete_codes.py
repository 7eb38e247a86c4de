"""What discrete codes are for, in two tables: clustering MNIST with a single one-hot code, and
retrieving MNIST images by the Hamming distance of binary codes (semantic hashing).

    python benchmarks/discrete_codes.py --clustering RUN [RUN ...] --retrieval RUN [RUN ...]

``--clustering``: runs of a model with ``cluster_probs`` (``catvae --categories 1``); prints the
test-set clustering error with clusters named on the 60,000 training images (majority label, and
the most confident image's label), how many clusters the test images use, and the exact −log p(x)
of the binarized test images (the sum over the K codes; ``vaelab eval --nll-samples`` estimates it).

``--retrieval``: runs of a model with ``binary_codes`` (``binvae``); prints precision@100 of
Hamming ranking (10,000 test queries against the 60,000 training images, relevant = same digit)
beside two baselines on the same grey pixels at the same code lengths: the sign of the top
principal components (PCA + sign) and the sign of Gaussian random projections (seeded).
Both tables use the figures ``vaelab eval RUN --json`` reports (vaelab.evaluation.codes).
"""
from __future__ import annotations

import argparse
import time

import torch

import vaelab
from vaelab.data import binarize_static
from vaelab.evaluation import TEST_BINARIZATION_SEED
from vaelab.evaluation.codes import code_metrics
from vaelab.evaluation.retrieval import pca_codes, precision_at_k, random_projection_codes


def exact_nll(model, test) -> float:
    """−log p(x) summed over every code, on the test images binarized as ``vaelab eval`` does."""
    x = binarize_static(test.x, TEST_BINARIZATION_SEED)
    with torch.inference_mode():
        return -float(torch.cat([model.enumerated_log_likelihood(x[i:i + 500]) for i in range(0, len(x), 500)]).mean())


def clustering(runs, train, test) -> None:
    print("| run | clusters | clusters used | error (majority) | error (most confident) | nll, exact (nats) | seconds |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        t0 = time.perf_counter()
        model = vaelab.load(run).eval()
        m = code_metrics(model, test, train)
        print(f"| {run} | {m['clusters']} | {m['clusters_used']} | {100 * m['cluster_error']:.2f} % | "
              f"{100 * m['cluster_error_most_confident']:.2f} % | {exact_nll(model, test):.2f} | "
              f"{time.perf_counter() - t0:.0f} |", flush=True)


def retrieval(runs, train, test, seed: int) -> None:
    models = {}
    for run in runs:
        model = vaelab.load(run)
        models.setdefault(model.config.bits, []).append((run, model))
    bits_list = sorted(models) or [16, 32, 64]
    print("| bits | method | precision@100 | seconds |")
    print("|---|---|---|---|")
    for bits in bits_list:
        for name, make in (("PCA + sign", pca_codes),
                           ("random projection + sign", lambda a, b, n: random_projection_codes(a, b, n, seed))):
            t0 = time.perf_counter()
            db, q = make(train.x, test.x, bits)
            p = precision_at_k(q, test.y, db, train.y, k=100)
            print(f"| {bits} | {name} | {p:.4f} | {time.perf_counter() - t0:.0f} |", flush=True)
        for run, model in models.get(bits, []):
            t0 = time.perf_counter()
            p = code_metrics(model, test, train)["precision_at_100"]
            print(f"| {bits} | binvae `{run}` | {p:.4f} | {time.perf_counter() - t0:.0f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clustering", nargs="*", default=[], metavar="RUN")
    ap.add_argument("--no-retrieval", action="store_true", help="print the clustering table only")
    ap.add_argument("--retrieval", nargs="*", default=[], metavar="RUN",
                    help="binvae runs (none: only the baselines at 16, 32 and 64 bits)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seed", type=int, default=0, help="seed of the random projections (default: 0)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train = vaelab.load_dataset("mnist", "train", data_dir=args.data_dir)
    test = vaelab.load_dataset("mnist", "test", data_dir=args.data_dir)
    if args.clustering:
        clustering(args.clustering, train, test)
        print()
    if not args.no_retrieval:
        retrieval(args.retrieval, train, test, args.seed)


if __name__ == "__main__":
    main()
