"""Does a model trained with attributes (``cmma``) generate and edit what it is asked for?

(a) **generation**: for a grid of requests — every class (where y holds it) × each measured
    attribute at the test set's 10th, 30th, 50th, 70th and 90th percentiles — samples from
    p(z | y) are measured with :mod:`vaelab.morphometrics`; Pearson r(requested, measured) per
    attribute, and the fraction the digit classifier reads as the requested class;
(b) **edits**: test digits encoded with their own attributes, one attribute set to a value
    drawn uniformly between its test 10th and 90th percentiles; r(requested change, measured
    change) for the edited attribute (change = edit − source, both measured), and for each
    other measured attribute the mean absolute change, beside a quarter of its test-set std
    (``*_vs_reconstruction``: the same against the unedited reconstruction, which leaves out
    what the model loses in any reconstruction).

Issue 10's goals: r ≥ 0.9 for thickness and slant in (a) and (b), class accuracy ≥ 95 %,
other attributes' mean absolute change ≤ test std / 4.

``python -m vaelab.evaluation.attribute_checks RUN --data mnist`` prints them as JSON, on the
run's validation images (``--split test``: its test images, once the settings are chosen); the
percentiles and standard deviations above are then those of the split checked.
"""
from __future__ import annotations

import itertools

import numpy as np
import torch

from ..errors import VaelabError
from ..morphometrics import measure
from .conditional_checks import pearson

PERCENTILES = (10, 30, 50, 70, 90)
GOAL_R, GOAL_ACCURACY, GOAL_KEPT = 0.9, 0.95, 0.25  # kept: mean |change| ≤ GOAL_KEPT × test std


def _user(name: str, values: np.ndarray) -> np.ndarray:
    """Measured figures in the units attributes are requested in (slant in degrees)."""
    return np.degrees(values) if name == "slant" else values


def request_grid(model, test_figures, percentiles=PERCENTILES) -> list[dict]:
    """Every class × each measured attribute at the test set's ``percentiles`` (user units)."""
    axes = []
    if "class" in model.attribute_names:
        axes.append([("class", float(c)) for c in range(model.config.num_classes)])
    for m in model.config.measured:
        values = _user(m, getattr(test_figures, m)[test_figures.valid])
        axes.append([(m, float(np.percentile(values, p))) for p in percentiles])
    return [dict(combo) for combo in itertools.product(*axes)]


def generation_checks(model, test_figures, classifier=None, per_request: int = 4, seed: int = 0,
                      percentiles=PERCENTILES) -> dict:
    """(a): r(requested, measured) per measured attribute over all samples of the request grid,
    and the classifier's accuracy on the requested class (where y holds the class)."""
    requests = request_grid(model, test_figures, percentiles)
    images = torch.cat([_samples(model, r, per_request, seed + i) for i, r in enumerate(requests)])
    figures = measure(images)
    asked = {k: np.repeat([r[k] for r in requests], per_request) for k in requests[0]}
    ok = figures.valid
    result = {"requests": len(requests), "samples": len(images), "empty_samples": int((~ok).sum())}
    for m in model.config.measured:
        result[f"{m}_requested"] = sorted({r[m] for r in requests})
        result[f"{m}_r"] = pearson(asked[m][ok], _user(m, getattr(figures, m))[ok])
        result[f"{m}_mean_abs_error"] = float(np.abs(asked[m][ok] - _user(m, getattr(figures, m))[ok]).mean())
    if "class" in asked and classifier is not None:
        predicted = classifier.predict_proba(images).argmax(1).numpy()
        hits = predicted == asked["class"]
        result["class_accuracy"] = float(hits.mean())
        result["class_accuracy_per_class"] = [float(hits[asked["class"] == c].mean()) for c in range(model.config.num_classes)]
    return result


def _samples(model, request: dict, n: int, seed: int) -> torch.Tensor:
    from ..attributes import sample_attributes

    return sample_attributes(model, request, n, seed)


def edit_checks(model, batch, test_figures, classifier=None, seed: int = 0, via: str = "prior") -> dict:
    """(b) on the test digits of ``batch`` (a Batch with the model's attribute vectors as y and
    the inputs as the model reads them) and their grey images ``batch.extras["grey"]``; ``via``
    as for the model's ``edit``."""
    grey = batch.extras.get("grey", batch.x)
    source = measure(grey)
    labels = batch.extras.get("label")
    rng = np.random.default_rng(seed)
    result = {"sources": len(grey)}
    with torch.no_grad():
        recon = measure(model.reconstruct(batch).clamp(0, 1).cpu())
    for m in model.config.measured:
        values = _user(m, getattr(test_figures, m)[test_figures.valid])
        low, high = np.percentile(values, PERCENTILES[0]), np.percentile(values, PERCENTILES[-1])
        targets = rng.uniform(low, high, len(grey))
        edits = torch.cat([model.edit(batch[i:i + 1], {m: float(t)}, via=via).clamp(0, 1).cpu() for i, t in enumerate(targets)])
        made = measure(edits)
        ok = source.valid & made.valid & recon.valid
        asked = targets - _user(m, getattr(source, m))
        got = _user(m, getattr(made, m)) - _user(m, getattr(source, m))
        result[f"edit_{m}_r"] = pearson(asked[ok], got[ok])
        result[f"edit_{m}_r_vs_reconstruction"] = pearson(
            (targets - _user(m, getattr(recon, m)))[ok], (_user(m, getattr(made, m)) - _user(m, getattr(recon, m)))[ok])
        for other in model.config.measured:
            if other != m:
                change = np.abs(_user(other, getattr(made, other)) - _user(other, getattr(source, other)))[ok]
                std = float(_user(other, getattr(test_figures, other)[test_figures.valid]).std())
                result[f"edit_{m}_{other}_mean_abs_change"] = float(change.mean())
                result[f"edit_{m}_{other}_change_per_std"] = float(change.mean() / std)
                beside = np.abs(_user(other, getattr(made, other)) - _user(other, getattr(recon, other)))[ok]
                result[f"edit_{m}_{other}_change_per_std_vs_reconstruction"] = float(beside.mean() / std)
        if labels is not None and classifier is not None:
            result[f"edit_{m}_class_kept"] = float((classifier.predict_proba(edits).argmax(1) == labels.cpu()).double().mean())
    return result


def attribute_checks(model, train, test, sources: int = 200, per_request: int = 4, seed: int = 0,
                     binarize: bool = True, classifier=None, percentiles=PERCENTILES, via: str = "prior") -> dict:
    """(a) and (b) for ``model`` with the test split ``test`` (a labelled Dataset of grey images);
    ``sources`` test digits drawn with ``seed`` are edited; ``binarize``: the encoder reads them
    binarized once (with the evaluation's seed), as the model was trained on binary images.
    The judge of the class is the cached digit classifier trained on ``train``."""
    from ..attributes import require_attributes
    from ..data import binarize_static
    from ..morphometrics import dataset_morphometrics
    from ..training.run import conditioned
    from . import TEST_BINARIZATION_SEED
    from .conditional_checks import digit_classifier

    require_attributes(model)
    if isinstance(sources, bool) or not isinstance(sources, int) or sources < 2:
        raise VaelabError(f"sources must be a whole number of test digits, at least 2 (r needs pairs), got {sources!r}")
    if "class" in model.attribute_names and classifier is None:
        classifier = digit_classifier(train)
    figures = dataset_morphometrics(test)
    picked = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:sources]
    rows = conditioned(model, test).batch().select(picked)
    grey = rows.x
    if binarize:
        rows = rows.with_x(binarize_static(rows.x, TEST_BINARIZATION_SEED))
    rows.extras = {"grey": grey, **({"label": test.y[picked]} if test.y is not None and not test.y.is_floating_point() else {})}
    model.eval()
    result = {**generation_checks(model, figures, classifier, per_request, seed, percentiles),
              **edit_checks(model, rows, figures, classifier, seed, via), "edit_via": via}
    result["goals"] = _goals(model)
    result["met"] = {k: (result[k] <= v if k.endswith("per_std") else result[k] >= v)
                     for k, v in result["goals"].items() if k in result}
    return result


def _goals(model) -> dict:
    goals = {f"{m}_r": GOAL_R for m in model.config.measured}
    goals.update({f"edit_{m}_r": GOAL_R for m in model.config.measured})
    goals.update({f"edit_{m}_{o}_change_per_std": GOAL_KEPT for m in model.config.measured
                  for o in model.config.measured if o != m})
    if "class" in model.attribute_names:
        goals["class_accuracy"] = GOAL_ACCURACY
    return goals


def main(argv: list[str] | None = None) -> int:
    """Print the checks for a run as JSON."""
    from ..data.samplers import resolve_binarize
    from .checks_cli import checks_main

    def options(p):
        p.add_argument("--sources", type=int, default=200, help="digits of --split edited (default: 200)")
        p.add_argument("--per-request", type=int, default=4, help="samples per requested attribute vector (default: 4)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--edit-via", default="prior", choices=("prior", "posterior"),
                       help="edits keep the image's place in the prior (default) or re-encode with the new attributes")

    def compute(model, train, test, a):
        binarize = resolve_binarize("auto", model, a.run) != "none"
        return attribute_checks(model, train, test, a.sources, a.per_request, a.seed, binarize, via=a.edit_via)

    return checks_main(argv, "python -m vaelab.evaluation.attribute_checks",
                       "Attribute fidelity of generated and edited digits, for a cmma run.",
                       "run or model directory of a model trained with attributes", options, compute,
                       require=_require_attributes)


def _require_attributes(model) -> None:
    from ..attributes import require_attributes

    require_attributes(model)


if __name__ == "__main__":
    raise SystemExit(main())
