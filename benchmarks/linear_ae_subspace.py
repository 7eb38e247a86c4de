"""Does a trained linear autoencoder find PCA's principal subspace on MNIST?

Trains ``linear-ae`` (tied weights, centred, squared error; Adam with a cosine learning
rate) with ``--latent-dim`` units on the 60,000 MNIST training images and prints the
principal angles, in degrees, between its decoder's column space and PCA's top
components, plus the test MSE of both (equal when the subspaces agree).

    python benchmarks/linear_ae_subspace.py            # latent 10, 10 epochs
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import vaelab
from vaelab.baselines import PCA, mse_per_example, principal_angles
from vaelab.training.trainer import set_threads

from common import add_common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common(parser)
    parser.add_argument("--latent-dim", type=int, default=10, help="code size (default: 10)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (default: 10)")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate, cosine-decayed (default: 3e-3)")
    args = parser.parse_args()
    set_threads(args.threads)
    train = vaelab.load_dataset("mnist", "train", data_dir=args.data_dir)
    test = vaelab.load_dataset("mnist", "test", data_dir=args.data_dir)
    pca = PCA(args.latent_dim).fit(train.x)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model = vaelab.train("linear-ae", train, f"{tmp}/run", model_config={"latent_dim": args.latent_dim},
                             config={"epochs": args.epochs, "lr": args.lr, "lr_schedule": "cosine", "val_size": 0,
                                     "binarize": "none", "threads": args.threads}, progress=False).model.eval()
    seconds = time.perf_counter() - t
    angles = principal_angles(model.decoder_matrix().detach(), pca.components)
    print(json.dumps({
        "latent_dim": args.latent_dim, "epochs": args.epochs, "train_seconds": round(seconds, 1),
        "max_angle_deg": round(float(angles.max()), 2), "angles_deg": [round(float(a), 2) for a in angles],
        "test_mse_linear_ae": round(float(mse_per_example(model.reconstruct(test.x), test.x).mean()), 6),
        "test_mse_pca": round(float(mse_per_example(pca.reconstruct(test.x), test.x).mean()), 6),
    }))


if __name__ == "__main__":
    main()
