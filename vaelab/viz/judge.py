"""The digit classifier that judges pictures, trained once per dataset and cached.

"Does this decoded image look like a digit?" is answered by :class:`DigitClassifier`
trained on the real training images of the data a model was trained on. Training it
costs seconds to a minute, so it is kept in a directory (by default one per dataset in
the user cache) and loaded from there afterwards, whatever run is being looked at.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..baselines import DigitClassifier, train_classifier
from ..data import load_dataset
from ..data.sources import canonical_spec
from ..errors import VaelabError

CLASSIFIER_EPOCHS = 3  # as compare generate: about 98 % MNIST test accuracy


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/vaelab/classifiers`` (else ``~/.cache/...``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "vaelab" / "classifiers"


def _key(spec: str) -> str:
    """A directory name for a dataset spec: the dataset's name, or a digest of a user path."""
    if spec.startswith(("folder:", "npy:")):
        return "user-" + hashlib.sha256(canonical_spec(spec).encode()).hexdigest()[:16]
    return spec.strip().lower().replace("_", "-")


def digit_classifier(spec: str, shape, data_dir=None, directory: str | os.PathLike | None = None,
                     seed: int = 0) -> DigitClassifier:
    """The classifier saved in ``directory`` (default: the cache entry of ``spec``), else one
    trained there on the labelled train split of ``spec``. ``shape`` is the images' shape it
    must take."""
    directory = Path(directory) if directory is not None else cache_dir() / _key(spec)
    if (directory / "baseline.json").exists():
        clf = DigitClassifier.load(directory)
    else:
        train = load_dataset(spec, "train", data_dir=data_dir)
        if not train.has_class_labels:
            raise VaelabError(f"{spec} has no class labels, so no classifier can judge the images; "
                              "drop the score (--no-classifier)")
        clf = train_classifier(train.x, train.y, epochs=CLASSIFIER_EPOCHS, seed=seed)
        clf.save(directory)
    if tuple(clf.image_shape) != tuple(shape):
        raise VaelabError(f"the classifier in {directory} takes images of shape {list(clf.image_shape)}, not "
                          f"{list(shape)}; give another --classifier directory")
    return clf
