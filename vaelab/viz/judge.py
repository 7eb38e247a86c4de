"""The digit classifier that judges pictures, trained once per dataset and cached.

"Does this decoded image look like a digit?" is answered by :class:`DigitClassifier`
trained on the real training images of the data a model was trained on. Training it
costs seconds to a minute, so it is kept in a directory (by default the user cache's, keyed
by the training images, shared with the conditional checks) and loaded from there afterwards.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..baselines import DigitClassifier, train_classifier
from ..data import load_dataset
from ..errors import VaelabError


def digit_classifier(spec: str, shape, data_dir=None, directory: str | os.PathLike | None = None,
                     seed: int = 0) -> DigitClassifier:
    """The classifier saved in ``directory``, else one trained there on the labelled train
    split of ``spec``; without ``directory``, the user cache's classifier for those images
    (:func:`vaelab.evaluation.conditional_checks.digit_classifier`, keyed by their fingerprint).
    ``shape`` is the images' shape it must take."""
    from ..evaluation.conditional_checks import CLASSIFIER_EPOCHS, digit_classifier as cached

    if directory is not None and (Path(directory) / "baseline.json").exists():
        clf = DigitClassifier.load(directory)
    else:
        train = load_dataset(spec, "train", data_dir=data_dir)
        if not train.has_class_labels:
            raise VaelabError(f"{spec} has no class labels, so no classifier can judge the images; "
                              "drop the score (--no-classifier)")
        if directory is None:
            clf = cached(train, seed=seed)
        else:
            clf = train_classifier(train.x, train.y, epochs=CLASSIFIER_EPOCHS, seed=seed)
            clf.save(directory)
    if tuple(clf.image_shape) != tuple(shape):
        raise VaelabError(f"the classifier for {spec} takes images of shape {list(clf.image_shape)}, not "
                          f"{list(shape)}; give another --classifier directory")
    return clf
