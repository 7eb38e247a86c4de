"""Does a label-conditional model do what its label says? Three checks with numbers.

(a) **sample accuracy**: z ~ N(0, I) decoded given class c is classified as c;
(b) **analogy accuracy**: a held-out digit's style decoded as another class c is classified as c;
(c) **style kept**: the slant and thickness (:mod:`vaelab.morphometrics`) of each analogy
    correlate with its source's (Pearson r over all source × other-class pairs).

The judge is :class:`~vaelab.baselines.DigitClassifier` trained on the real training images,
independent of the model under test and cached in the user cache directory (its training images
include the run's validation images: it judges, it does not choose). Analogies to the
source's own class are reconstructions, so (b) and (c) count only the K − 1 other classes.
Issue 10's goals: (a) ≥ 97 %, (b) ≥ 95 %, (c) r ≥ 0.8 for both measures.

``python -m vaelab.evaluation.conditional_checks RUN --data mnist`` prints them for the run's
validation images (``--split test`` for its test images, once the settings are chosen).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from ..baselines import DigitClassifier, train_classifier
from ..data.batch import Batch
from ..errors import VaelabError
from ..morphometrics import measure
from ..viz.analogy import analogies, analogy_view

GOALS = {"sample_accuracy": 0.97, "analogy_accuracy": 0.95, "slant_r": 0.8, "thickness_r": 0.8}
CLASSIFIER_EPOCHS = 3


def classifier_directory() -> Path:
    """``$XDG_CACHE_HOME/vaelab/classifiers`` (else ``~/.cache/...``)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "vaelab" / "classifiers"


def digit_classifier(train, epochs: int = CLASSIFIER_EPOCHS, seed: int = 0, cache_dir=None,
                     progress: bool = False) -> DigitClassifier:
    """A DigitClassifier trained on ``train`` (a labelled Dataset), trained once and then loaded
    from a directory named by a fingerprint of the images, labels and settings. ``progress``
    reports the training on stderr."""
    if getattr(train, "y", None) is None or not train.has_class_labels:
        raise VaelabError("the digit classifier that judges conditional models needs labelled training images")
    directory = cached_classifier_path(train, epochs, seed, cache_dir)
    if (directory / "baseline.json").is_file():
        return DigitClassifier.load(directory)
    clf = train_classifier(train.x, train.y, epochs=epochs, seed=seed, num_classes=train.n_classes,
                           progress=progress)
    clf.save(directory)
    return clf


def cached_classifier_path(train, epochs: int = CLASSIFIER_EPOCHS, seed: int = 0, cache_dir=None) -> Path:
    """Where :func:`digit_classifier` keeps the classifier of ``train``: named by a fingerprint
    of the images, labels and settings."""
    digest = hashlib.sha256(f"digit-classifier|{epochs}|{seed}|{tuple(train.x.shape)}|".encode())
    for t in (train.x, train.y):
        digest.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return Path(cache_dir or classifier_directory()) / digest.hexdigest()[:40]


def sample_accuracy(model, classifier: DigitClassifier, per_class: int = 100, seed: int = 0) -> dict:
    """Fraction of decoded samples z ~ N(0, I), ``per_class`` per class, classified as their class."""
    view = analogy_view(model)
    k = view.num_classes
    z = torch.randn(per_class * k, view.latent_dim, generator=torch.Generator().manual_seed(seed))
    y = torch.arange(k).repeat_interleave(per_class)
    hits = classifier.predict_proba(view.decode(z, y)).argmax(1) == y
    return {"sample_accuracy": float(hits.double().mean()), "samples": len(y),
            "sample_accuracy_per_class": [float(hits[y == c].double().mean()) for c in range(k)]}


def analogy_checks(model, classifier: DigitClassifier, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Accuracy of the analogies to other classes (and how often they are read as the source's
    class instead: z carrying the class past the label) and Pearson r of slant and thickness, source
    vs analogy, over those pairs (pairs where either image is empty are left out of r). Beside
    them the same r for the decode with the source's own class (a reconstruction): what the
    model keeps of a style at all, the ceiling of what an analogy can keep. ``*_r_per_class``:
    r over the pairs of each target class alone (free of the offsets between classes)."""
    made = analogies(model, x, y)  # (N, K, C, H, W)
    n, k = made.shape[:2]
    y = torch.as_tensor(y)
    rows, target = (torch.arange(k)[None, :] != y[:, None]).nonzero().unbind(1)  # source row, other class
    images = made[rows, target]
    predicted = classifier.predict_proba(images).argmax(1)
    source, analogy, own = measure(x), measure(images), measure(made[torch.arange(n), y])
    result = {"analogy_accuracy": float((predicted == target).double().mean()),
              "analogy_source_class": float((predicted == y[rows]).double().mean()),
              "pairs": len(rows), "sources": n}
    rows, target = rows.numpy(), target.numpy()
    result.update(_style_r(source, analogy, rows, ""))
    per_class = [_style_r(source, analogy.subset(target == c), rows[target == c], "") for c in range(k)]
    result.update({f"{m}_r_per_class": [r[f"{m}_r"] for r in per_class] for m in ("slant", "thickness")})
    result.update(_style_r(source, own, np.arange(n), "reconstruction_"))
    return result


def _style_r(source, made, rows: np.ndarray, prefix: str) -> dict:
    """``{prefix}slant_r`` and ``{prefix}thickness_r``: source row ``rows[i]`` vs made image i."""
    ok = source.valid[rows] & made.valid
    return {f"{prefix}{m}_r": pearson(getattr(source, m)[rows][ok], getattr(made, m)[ok]) for m in ("slant", "thickness")}


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r; 0.0 (not NaN) where either side does not vary or there are under 2 pairs."""
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def class_in_z(model, train, test, fit_size: int = 5000, seed: int = 0) -> dict:
    """How much of the class z carries beside y: the test accuracy of a logistic regression from
    z = E[q(z|x, y)] to y, fitted on ``fit_size`` training digits (drawn with ``seed``). Chance
    (about 1/K) when z leaves the class to y; high when z spells it out too, and then prior
    samples decoded with another y are a mix of two classes."""
    from sklearn.linear_model import LogisticRegression

    view = analogy_view(model)
    picked = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:fit_size]
    z_fit = view.encode(Batch(train.x[picked], train.y[picked])).numpy()
    z_test = view.encode(Batch(test.x, test.y)).numpy()
    probe = LogisticRegression(max_iter=1000).fit(z_fit, train.y[picked].numpy())
    return {"class_in_z": float(probe.score(z_test, test.y.numpy())), "class_in_z_fit": len(picked)}


def conditional_checks(model, train, test, sources: int = 200, per_class: int = 100, seed: int = 0,
                       classifier: DigitClassifier | None = None, fit_images=None) -> dict:
    """All three checks: ``sources`` digits of ``test`` (the split checked: validation images
    while choosing settings, test images for the final figures) drawn with ``seed`` as analogy
    sources, ``per_class`` samples per class; the goals and whether each is met alongside.
    The judge is trained on ``train``; class_in_z's probe is fitted on ``fit_images`` (default
    ``train``), which must not hold the checked images."""
    if isinstance(sources, bool) or not isinstance(sources, int) or sources < 2:
        raise VaelabError(f"sources must be a whole number of test digits, at least 2 (r needs pairs), got {sources!r}")
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise VaelabError(f"per_class must be a whole number of samples, at least 1, got {per_class!r}")
    analogy_view(model)  # refuse a model without labels before training a classifier
    classifier = classifier or digit_classifier(train)
    if getattr(test, "y", None) is None:
        raise VaelabError("analogies encode each test digit with its label; give labelled test images")
    picked = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:sources]
    result = {**sample_accuracy(model, classifier, per_class, seed),
              **analogy_checks(model, classifier, test.x[picked], test.y[picked]),
              **class_in_z(model, train if fit_images is None else fit_images, test, seed=seed),
              # the judge's accuracy on the checked images: on validation images, its own training images
              "classifier_accuracy": classifier.accuracy(test.x, test.y)}
    result["goals"] = dict(GOALS)
    result["met"] = {name: result[name] >= goal for name, goal in GOALS.items()}
    return result


def main(argv: list[str] | None = None) -> int:
    """Print the three checks for a run."""
    from .checks_cli import checks_main

    def options(p):
        p.add_argument("--sources", type=int, default=200,
                       help="digits of --split used as analogy sources (default: 200)")
        p.add_argument("--per-class", type=int, default=100, help="samples per class (default: 100)")
        p.add_argument("--seed", type=int, default=0)

    return checks_main(argv, "python -m vaelab.evaluation.conditional_checks",
                       "Sample accuracy, analogy accuracy and style kept, for a cvae run.",
                       "run or model directory of a label-conditional model", options,
                       lambda model, train, test, a: conditional_checks(model, train, test, a.sources, a.per_class,
                                                                        a.seed, fit_images=a.fit_images),
                       require=analogy_view)


if __name__ == "__main__":
    raise SystemExit(main())
