"""Does a trained linear autoencoder find PCA's principal subspace on MNIST?

Trains ``linear-ae`` (tied weights, centred, squared error, with the model's training
defaults: Adam at 3e-3 with a cosine learning rate) with ``--latent-dim`` units on the
60,000 MNIST training images, or measures a run that ``vaelab train`` wrote (``--run``),
and prints the principal angles, in degrees, between its decoder's column space and
PCA's top components of the images it was trained on (and of all 60,000), plus the test
MSE of both (equal when the subspaces agree).

    python benchmarks/linear_ae_subspace.py            # latent 10, 10 epochs
    vaelab train linear-ae --data mnist --latent-dim 10 --epochs 20 --out runs/linear-ae
    python benchmarks/linear_ae_subspace.py --run runs/linear-ae   # the README's command, measured
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import vaelab
from vaelab.baselines import PCA, mse_per_example, principal_angles
from vaelab.data import split_validation
from vaelab.files import read_run_record
from vaelab.threads import set_threads

from common import add_common


def trained_part(train, run: str):
    """The images a run trained on: its training split minus the validation rows it carved."""
    settings = read_run_record(f"{run}/run.json")["train"]
    size = settings["val_size"]
    if size == 0:
        return train
    return split_validation(train, size if size < 1 else int(size), seed=settings["seed"])[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    add_common(parser)
    parser.add_argument("--run", help="measure this linear-ae run directory instead of training one")
    parser.add_argument("--latent-dim", type=int, default=10, help="code size (default: 10)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (default: 10)")
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: the model's, 3e-3)")
    args = parser.parse_args()
    set_threads(args.threads)
    train = vaelab.load_dataset("mnist", "train", data_dir=args.data_dir)
    test = vaelab.load_dataset("mnist", "test", data_dir=args.data_dir)
    seconds = None
    if args.run:
        model, fitted = vaelab.load(args.run).eval(), trained_part(train, args.run)
    else:
        settings = {"epochs": args.epochs, "val_size": 0, "binarize": "none", "threads": args.threads}
        if args.lr is not None:
            settings["lr"] = args.lr
        t = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            model = vaelab.train("linear-ae", train, f"{tmp}/run", model_config={"latent_dim": args.latent_dim},
                                 config=settings, progress=False).model.eval()
        seconds, fitted = round(time.perf_counter() - t, 1), train
    k = model.config.latent_dim
    pca = PCA(k).fit(fitted.x)
    angles = principal_angles(model.decoder_matrix().detach(), pca.components)
    all_train = principal_angles(model.decoder_matrix().detach(), PCA(k).fit(train.x).components)
    print(json.dumps({
        "run": args.run, "latent_dim": k, "n_train": len(fitted), "train_seconds": seconds,
        "max_angle_deg": round(float(angles.max()), 2), "angles_deg": [round(float(a), 2) for a in angles],
        "max_angle_deg_vs_all_60000": round(float(all_train.max()), 2),
        "test_mse_linear_ae": round(float(mse_per_example(model.reconstruct(test.x), test.x).mean()), 6),
        "test_mse_pca": round(float(mse_per_example(pca.reconstruct(test.x), test.x).mean()), 6),
    }))


if __name__ == "__main__":
    main()
