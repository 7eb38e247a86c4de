"""An autoencoder cannot generate, a VAE can.

An ``ae`` and a ``vae`` of the same shape are trained on the same images. Codes drawn
from N(0, I) are decoded by both; the AE also decodes codes from a Gaussian fitted to its
own training codes (its best chance). A digit classifier trained on the real training
images then scores every set of samples: how confidently each image is read as a digit
(mean max-probability, mean entropy) and how evenly the digits are spread (marginal
entropy; ``score`` = exp(marginal − mean entropy), the Inception-score form, 10 at best).
Real test images give the reference row.
"""
from __future__ import annotations

import os
import time

import torch

from ..baselines import DigitClassifier, train_classifier
from ..errors import VaelabError
from ..viz.panels import image_panels
from .common import Comparison, fit, prepare_out, split

NETWORK = {"hidden": [512, 256], "activation": "relu"}
CLASSIFIER_EPOCHS = 3
FIGURE_SAMPLES = 64


def generation(out: str | os.PathLike, *, data: str = "mnist", data_dir=None, latent_dim: int = 16,
               samples: int = 2000, epochs: int = 20, train_size: int = 0, seed: int = 0, threads: int = 0,
               progress: bool = True) -> Comparison:
    """Train an ``ae`` and a ``vae`` with ``latent_dim`` codes; score ``samples`` decoded samples of
    each with a digit classifier and write the samples side by side."""
    if samples < 1:
        raise VaelabError(f"samples must be at least 1, got {samples}")
    start = time.perf_counter()
    out = prepare_out(out)
    train, test = split(data, data_dir, train_size, 0)
    if train.y is None:
        raise VaelabError(f"{data} has no labels; the classifier that scores samples needs a labelled dataset")
    tcfg = {"epochs": epochs, "seed": seed, "threads": threads, "val_size": 0, "binarize": "dynamic"}
    ae = fit("ae", train, out / "runs" / "ae", {"latent_dim": latent_dim, "loss": "bernoulli", **NETWORK},
             tcfg, progress).eval()
    vae = fit("vae", train, out / "runs" / "vae", {"latent_dim": latent_dim, **NETWORK}, tcfg, progress).eval()
    clf_dir = out / "classifier"
    if (clf_dir / "baseline.json").exists():
        clf = DigitClassifier.load(clf_dir)
    else:
        clf = train_classifier(train.x, train.y, epochs=CLASSIFIER_EPOCHS, seed=seed, threads=threads or None)
        clf.save(clf_dir)
    accuracy = clf.accuracy(test.x, test.y)
    sets = {
        "VAE, z ~ N(0, I)": vae.sample(samples, generator=torch.Generator().manual_seed(seed)),
        "AE, z ~ N(0, I)": ae.sample(samples, seed=seed),
        "AE, z ~ Gaussian fitted to its codes": ae.sample(samples, seed=seed, codes=ae.code_gaussian(train.x)),
        "real test images": test.x[:samples],
    }
    rows = []
    for name, images in sets.items():
        c = clf.confidence(images)
        rows.append({"samples": name, "mean_max_prob": c["mean_max_prob"], "mean_entropy": c["mean_entropy"],
                     "marginal_entropy": c["marginal_entropy"], "score": c["score"]})
    figure = out / "samples_ae_vs_vae.png"
    image_panels([(images[:FIGURE_SAMPLES], name) for name, images in sets.items()], figure, nrow=8)
    return Comparison(
        "generate", f"Decoded samples of a {latent_dim}-D AE and VAE on {data}, scored by a digit classifier "
        f"({accuracy:.2%} test accuracy)",
        ["samples", "mean_max_prob", "mean_entropy", "marginal_entropy", "score"], rows,
        settings={"data": data, "n_train": len(train), "latent_dim": latent_dim, "samples": samples,
                  "epochs": epochs, "seed": seed, "network": NETWORK, "classifier_accuracy": accuracy,
                  "classifier_epochs": CLASSIFIER_EPOCHS},
        figures=[str(figure)],
        notes=["Images are decoder means (sigmoid of the logits). Entropies in nats; log 10 = 2.30 is chance.",
               "score = exp(marginal_entropy − mean_entropy): high when each image is read confidently as one "
               "digit and all ten digits occur."],
        seconds=time.perf_counter() - start)
