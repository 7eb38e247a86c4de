"""PCA against the autoencoders: a linear AE finds PCA's subspace, nonlinear ones do better.

For each latent size the test reconstruction error of PCA, ``linear-ae``, ``ae`` and
``conv-ae`` (all trained on the same images with squared error), and the largest
principal angle between the linear AE's decoder subspace and PCA's.
"""
from __future__ import annotations

import os
import time


from ..baselines import PCA, mse_per_example, principal_angles
from ..errors import VaelabError
from ..viz.plots import line_plot
from .common import Comparison, batched, fit, prepare_out, split

MODELS = ("pca", "linear-ae", "ae", "conv-ae")
NETWORKS = {  # squared-error autoencoders of the lectures' shapes
    "linear-ae": {},
    "ae": {"hidden": [512, 256], "activation": "relu", "loss": "mse"},
    "conv-ae": {"channels": [32, 64], "hidden": [], "activation": "relu", "loss": "mse"},
}
LINEAR_LR = 3e-3  # the linear AE's loss surface is a saddle landscape; a larger step reaches the subspace sooner


def pca_vs_autoencoders(out: str | os.PathLike, *, data: str = "mnist", data_dir=None,
                        latent_dims=(2, 5, 10, 20, 50), models=MODELS, epochs: int = 10,
                        train_size: int = 0, test_size: int = 0, batch_size: int = 128, seed: int = 0,
                        threads: int = 0, progress: bool = True) -> Comparison:
    """Train every model in ``models`` at every latent size and tabulate test MSE per pixel
    (and per image), plus the linear AE's largest principal angle to PCA (degrees)."""
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise VaelabError(f"unknown model(s) {', '.join(unknown)} for this comparison; choose from {', '.join(MODELS)}")
    if not latent_dims or any(int(k) < 1 for k in latent_dims):
        raise VaelabError(f"latent sizes must be positive integers, got {list(latent_dims)}")
    start = time.perf_counter()
    out = prepare_out(out)
    train, test = split(data, data_dir, train_size, test_size)
    pixels = train.x[0].numel()
    if max(latent_dims) > pixels:
        raise VaelabError(f"latent size {max(latent_dims)} exceeds the {pixels} pixels of {data}")
    pca = PCA(max(latent_dims)).fit(train.x)
    rows, curves = [], {m: [] for m in models}
    for k in latent_dims:
        row = {"latent": k}
        for name in models:
            if name == "pca":
                recon = pca.reconstruct(test.x, k=k).view_as(test.x)
            else:
                cfg = {"latent_dim": k, **NETWORKS[name]}
                tcfg = {"epochs": epochs, "batch_size": batch_size, "seed": seed, "threads": threads,
                        "val_size": 0, "lr": LINEAR_LR if name == "linear-ae" else 1e-3,
                        "lr_schedule": "cosine", "binarize": "none"}
                model = fit(name, train, out / "runs" / f"{name}-{k}", cfg, tcfg, progress)
                model.eval()
                recon = batched(model.reconstruct, test.x)
                if name == "linear-ae":
                    angles = principal_angles(model.decoder_matrix().detach(), pca.components[:, :k])
                    row["max_angle_deg"] = float(angles.max())
            mse = mse_per_example(recon, test.x)
            row[name] = float(mse.mean())
            curves[name].append(float(mse.mean()))
        rows.append(row)
    figure = out / "mse_vs_latent.png"
    line_plot(list(latent_dims), curves, figure, xlabel="latent size", ylabel="test MSE per pixel",
              title=f"{data}: reconstruction error", logy=True)
    columns = ["latent", *models] + (["max_angle_deg"] if "linear-ae" in models else [])
    return Comparison(
        "pca", f"Test reconstruction MSE per pixel on {data} ({len(test)} test images)", columns, rows,
        settings={"data": data, "n_train": len(train), "n_test": len(test), "epochs": epochs,
                  "batch_size": batch_size, "seed": seed, "networks": NETWORKS, "linear_lr": LINEAR_LR},
        figures=[str(figure)],
        notes=["PCA: exact top-k principal subspace of the training images (centred).",
               "max_angle_deg: largest principal angle between the linear AE's decoder columns and PCA's top-k "
               "components; 0 means the same subspace."],
        seconds=time.perf_counter() - start)
