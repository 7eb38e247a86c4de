"""Classical baselines that autoencoders and VAEs are compared with.

    pca = PCA(2).fit(x_train); codes = pca.encode(x_test)            # linear codes, 2-D maps
    bmm = BernoulliMixture(500).fit(x_bin); bmm.log_prob(x_bin_test)  # nats per example
    gmm = GaussianMixture(10, "full").fit(faces); gmm.log_prob(faces_test)
    clf = train_classifier(mnist.x, mnist.y); clf.confidence(model.sample(1000))
    psnr(x, model.reconstruct(x), reduction="mean"); principal_angles(W, pca.components)

Every baseline saves to ``baseline.json`` + ``baseline.safetensors`` (no pickles) and
loads with its class's ``load`` or with :func:`load_baseline`.
"""
from __future__ import annotations

import os

from ..errors import VaelabError
from ._store import read_baseline
from .classifier import DigitClassifier, train_classifier
from .metrics import mse_per_example, psnr, sse_per_example
from .mixtures import BernoulliMixture, GaussianMixture
from .pca import PCA
from .subspace import principal_angles

_KINDS = {"pca": PCA, BernoulliMixture.KIND: BernoulliMixture, GaussianMixture.KIND: GaussianMixture,
          "digit-classifier": DigitClassifier}


def load_baseline(directory: str | os.PathLike):
    """Load any saved baseline (PCA, mixtures, digit classifier) from ``directory``."""
    kind, config, tensors = read_baseline(directory)
    if kind not in _KINDS:
        raise VaelabError(f"{directory} holds an unknown baseline {kind!r}; known: {', '.join(_KINDS)}")
    return _KINDS[kind]._from_saved(config, tensors, directory)


__all__ = ["PCA", "BernoulliMixture", "DigitClassifier", "GaussianMixture", "load_baseline", "mse_per_example",
           "principal_angles", "psnr", "sse_per_example", "train_classifier"]
