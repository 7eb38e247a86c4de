"""The digit classifier that judges pictures, trained once per dataset and cached.

"Does this decoded image look like a digit?" is answered by :class:`DigitClassifier`
trained on the real training images of the data a model was trained on. Training it
costs seconds to a minute, so it is kept in a directory (by default the user cache's, keyed
by the training images, shared with the conditional checks) and loaded from there afterwards;
the first time, the wait is announced and its progress reported on stderr.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..baselines import DigitClassifier, train_classifier
from ..data import load_dataset
from ..errors import VaelabError


def digit_classifier(spec: str, shape, data_dir=None, directory: str | os.PathLike | None = None,
                     seed: int = 0, why: str | None = None) -> DigitClassifier:
    """The classifier saved in ``directory``, else one trained there on the labelled train
    split of ``spec``; without ``directory``, the user cache's classifier for those images
    (:func:`vaelab.evaluation.conditional_checks.digit_classifier`, keyed by their fingerprint).
    ``shape`` is the images' shape it must take. ``why`` set, training it says so on stderr
    first (what, ``why``, roughly how long, where it is kept), then reports its progress."""
    from ..evaluation.conditional_checks import CLASSIFIER_EPOCHS, cached_classifier_path, digit_classifier as cached

    if directory is not None and (Path(directory) / "baseline.json").exists():
        clf = DigitClassifier.load(directory)
    else:
        train = _labelled_train(spec, data_dir)
        where = Path(directory) if directory is not None else cached_classifier_path(train, seed=seed)
        if why is not None and not (where / "baseline.json").exists():
            _announce(spec, train, why, where, CLASSIFIER_EPOCHS)
        if directory is None:
            clf = cached(train, seed=seed, progress=why is not None)
        else:
            clf = train_classifier(train.x, train.y, epochs=CLASSIFIER_EPOCHS, seed=seed, progress=why is not None)
            clf.save(directory)
    if tuple(clf.image_shape) != tuple(shape):
        raise VaelabError(f"the classifier for {spec} takes images of shape {list(clf.image_shape)}, not "
                          f"{list(shape)}; give another --classifier directory")
    return clf


def classifier_if_labelled(spec: str, shape, data_dir=None, directory: str | os.PathLike | None = None,
                           seed: int = 0, why: str | None = None) -> DigitClassifier | None:
    """:func:`digit_classifier`, or None with a one-line note on stderr where ``spec`` has no
    class labels and no classifier directory is named: the classifier's score is a bonus, and the
    user's own unlabelled images deserve the picture without it."""
    if directory is None and not load_dataset(spec, "train", data_dir=data_dir).has_class_labels:
        print(f"note: {spec} has no class labels to train a digit classifier on; going on without the "
              "classifier's confidence", file=sys.stderr)
        return None
    return digit_classifier(spec, shape, data_dir, directory, seed, why)


def _labelled_train(spec: str, data_dir):
    train = load_dataset(spec, "train", data_dir=data_dir)
    if not train.has_class_labels:
        raise VaelabError(f"{spec} has no class labels, so no classifier can judge the images; "
                          "drop the score (--no-classifier)")
    return train


MEASURED_SECONDS, MEASURED_VALUES = 66.0, 60_000 * 784  # 3 epochs on MNIST's training images, 2 CPU cores


def _announce(spec: str, train, why: str, where: Path, epochs: int) -> None:
    """The line before a wait of up to a minute: what, why, roughly how long, and that it is once."""
    from ..evaluation.progress import _duration

    seconds = MEASURED_SECONDS * train.x.numel() / MEASURED_VALUES
    how_long = "a few seconds" if seconds < 10 else f"roughly {_duration(round(seconds, -1))} on two CPU cores"
    print(f"training a digit classifier on the {len(train):,} labelled training images of {spec}, {why} "
          f"({epochs} epochs, {how_long}; once: it is kept in {where})", file=sys.stderr, flush=True)
