"""The class-conditional VAE at its goals: what the label decides and what z keeps.

A ``cvae`` is trained (or ``--run`` reused) and measured by the checks of
:mod:`vaelab.evaluation.conditional_checks` — sample accuracy, analogy accuracy, slant and
thickness kept by the analogies (with the reconstructions' r, the ceiling) — and by its
conditional NLL −log p(x|y), importance-sampled, beside an unconditional ``vae`` of the
same networks and latent size scored by −log p(x). Both NLLs are of one fixed binarization
of the same test images. It writes the style grids (one per class) and an analogy grid.

Each model family adds its rows through :data:`ROW_MAKERS`: a function of the shared
:class:`Setting` that returns table rows (``model``, ``measure``, ``value``, ``goal``,
``met``). A CMMA row (attribute fidelity) is one more function appended there.
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..data import split_validation
from ..data.batch import Batch
from ..errors import VaelabError
from ..evaluation import evaluate
from ..evaluation.conditional_checks import GOALS, conditional_checks, digit_classifier
from ..models.cvae import CVAE, CVAEConfig
from ..viz.analogy import analogy_view, save_analogies
from ..viz.grids import grid, save_png
from ..viz.manifold import decoded_manifold
from .common import Comparison, fit, load_run, prepare_out, split

_DEFAULTS = CVAEConfig()  # the cvae family's defaults, chosen on validation digits (docs/conditional.md)
NETWORK = {"latent_dim": _DEFAULTS.latent_dim, "hidden": list(_DEFAULTS.hidden), "activation": _DEFAULTS.activation,
           "likelihood": _DEFAULTS.likelihood, "beta": _DEFAULTS.beta}
EPOCHS = CVAE.train_defaults["epochs"]
SHARED = ("latent_dim", "hidden", "activation", "backbone", "channels", "likelihood", "sigma", "init")
COLUMNS = ["model", "measure", "value", "goal", "met"]
ANALOGY_SOURCES = 10
GRID_SIDE = 10
NLL_BINARIZATION = "static"  # one seeded binarization of the test images, the same for both models
VAL_SIZE = 10000  # with --split val and no --run: the last 10,000 training images, held out of training
SPLIT_NAMES = {"val": "validation images", "test": "test images"}


@dataclass
class Setting:
    """What every row maker may use: the data, the judge, the options and where to write."""

    out: Path
    train: object
    test: object  # the images checked: the split named by ``options["split"]``
    classifier: object
    options: dict
    progress: bool
    models: dict = field(default_factory=dict)  # trained models by name, for makers that share them
    figures: list = field(default_factory=list)
    details: dict = field(default_factory=dict)  # everything measured, for results.json


def conditional(out: str | os.PathLike, *, data: str = "mnist", data_dir=None, runs=(), vae_run: str | None = None,
                latent_dim: int = NETWORK["latent_dim"], hidden=tuple(NETWORK["hidden"]),
                beta: float = NETWORK["beta"], epochs: int = EPOCHS, nll_samples: int = 5000, sources: int = 200,
                per_class: int = 100, train_size: int = 0, test_size: int = 0, seed: int = 0, threads: int = 0,
                progress: bool = True, split: str = "val", val_size: int = VAL_SIZE) -> Comparison:
    """Train (or reuse) a cvae and a VAE of its size; tabulate the cvae's checks against issue 10's
    goals and −log p(x|y) beside −log p(x); write the style grids and analogies. Everything is
    measured on ``split``: "val" (the default, for choosing settings: the ``--run``'s own
    validation images, else the last ``val_size`` training images, which the trained models never
    see) or "test" (read once, for the final figures)."""
    start = time.perf_counter()
    if nll_samples < 1:
        raise VaelabError(f"--nll-samples must be at least 1 (issue 10 uses 5000), got {nll_samples}")
    if sources < 2 or per_class < 1:  # refused before any training (the checks refuse them too)
        raise VaelabError(f"--sources must be at least 2 (r needs pairs) and --per-class at least 1, "
                          f"got {sources} and {per_class}")
    if len(runs) > 1:
        raise VaelabError("compare conditional takes one --run (a cvae); the VAE beside it is --vae-run")
    out = prepare_out(out)
    train, test, judge = checked_split(split, data, data_dir, runs, train_size, test_size, val_size)
    options = {"data": data, "runs": list(runs), "vae_run": vae_run, "latent_dim": latent_dim,
               "hidden": list(hidden), "beta": beta, "epochs": epochs, "nll_samples": nll_samples,
               "sources": sources, "per_class": per_class, "seed": seed, "threads": threads, "split": split}
    s = Setting(out, train, test, None, options, progress)
    s.models["cvae"] = _cvae(s)
    s.classifier = digit_classifier(judge)
    rows = [row for maker in ROW_MAKERS for row in maker(s)]
    return Comparison(
        "conditional", f"The class-conditional VAE on {data} ({len(test)} {SPLIT_NAMES[split]}) against issue 10's goals",
        COLUMNS, rows,
        settings={**options, "n_train": len(train), "n_test": len(test), "binarize_for_nll": NLL_BINARIZATION,
                  "classifier_accuracy": s.details.get("classifier_accuracy"), "details": s.details},
        figures=s.figures,
        notes=["Accuracies are the digit classifier's reading of decoder means (samples: z ~ N(0, I), "
               f"{per_class} per class; analogies: {sources} {SPLIT_NAMES[split]}, each decoded as every other "
               "class). The classifier is trained on all training images, the validation images included: it "
               "judges, it does not choose.",
               "slant_r, thickness_r: Pearson r, source vs analogy; reconstruction_*: source vs its decode with "
               "its own class, the ceiling of what an analogy can keep.",
               f"cnll = −log p(x|y) of the cvae, nll = −log p(x) of the vae: nats, k = {nll_samples} importance "
               f"samples, the {SPLIT_NAMES[split]} binarized once ({NLL_BINARIZATION}, seed 123)."],
        seconds=time.perf_counter() - start)


def checked_split(split: str, data: str, data_dir, runs, train_size: int, test_size: int, val_size: int):
    """(the images models train on, the images checked, the judge's training images) for
    ``split``: "test" checks the test images; "val" the ``--run``'s validation split (rebuilt from
    its run.json), else the last ``val_size`` training images, held out of what is trained here."""
    if split not in SPLIT_NAMES:
        raise VaelabError(f"--split {split}: choose val (validation images, for choosing settings) or test "
                          "(the final figures)")
    if split == "test":
        train, test = labelled_split(data, data_dir, train_size, test_size)
        return train, test, train
    judge, _ = labelled_split(data, data_dir, 0, 1)
    if runs:
        from ..io import load
        from ..training.run import validation_parts

        analogy_view(load(runs[0]))  # a model without labels is refused as such, before its split
        train, val = validation_parts(runs[0], data, data_dir)
    else:
        if not 0 < val_size < len(judge):
            raise VaelabError(f"--val-size {val_size}: hold out between 1 and {len(judge) - 1} of the "
                              f"{len(judge)} training images")
        train, val = split_validation(judge, val_size, seed=0, last=True)
    if train_size:
        train = train.subset(slice(0, train_size))
    return train, val.subset(slice(0, test_size)) if test_size else val, judge


def labelled_split(data: str, data_dir, train_size: int, test_size: int):
    """The comparison's train and test images, refused in one line (before any warning about a
    held-out test part) unless they carry class labels."""
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        train, test = split(data, data_dir, train_size, test_size)
    if not (train.has_class_labels and getattr(test, "y", None) is not None):
        raise VaelabError(f"compare conditional needs class labels, but {data} has none; "
                          "give labelled data such as mnist (a folder: with one sub-folder per class)")
    for w in said:
        warnings.warn(w.message, w.category, stacklevel=3)
    return train, test


def _cvae(s: Setting):
    """The cvae of ``--run`` (refused unless label-conditional and trained on the data), else trained."""
    o = s.options
    if o["runs"]:
        model = load_run(o["runs"][0], o["data"], s.train.x.shape[1:]).eval()
        analogy_view(model)
        return model
    config = {**NETWORK, "latent_dim": o["latent_dim"], "hidden": o["hidden"], "beta": o["beta"],
              "num_classes": s.train.n_classes}
    return fit("cvae", s.train, s.out / "runs" / "cvae", config, _train_config(o), s.progress).eval()


def _vae(s: Setting):
    """The unconditional VAE of the cvae's networks and latent size (``--vae-run``, checked, or trained)."""
    cvae_config = s.models["cvae"].config
    shared = {k: getattr(cvae_config, k) for k in SHARED if hasattr(cvae_config, k)}
    if s.options["vae_run"]:
        model = load_run(s.options["vae_run"], s.options["data"], s.train.x.shape[1:], "--vae-run").eval()
        differ = [k for k, v in shared.items() if getattr(model.config, k, None) != v]
        if differ or getattr(model, "conditional", False) or not hasattr(model, "importance_log_weights"):
            raise VaelabError(f"--vae-run {s.options['vae_run']} must be an unconditional VAE of the cvae's size; "
                              f"it differs in {', '.join(differ) or 'its kind'}: train one with the same settings")
        return model
    config = {**{k: list(v) if isinstance(v, tuple) else v for k, v in shared.items()}, "beta": 1.0}
    return fit("vae", s.train, s.out / "runs" / "vae", config, _train_config(s.options), s.progress).eval()


def _train_config(o: dict) -> dict:
    return {"epochs": o["epochs"], "seed": o["seed"], "threads": o["threads"], "val_size": 0}


def check_rows(s: Setting) -> list[dict]:
    """The cvae's three checks at issue 10's goals, the reconstruction ceilings beside them."""
    o = s.options
    r = conditional_checks(s.models["cvae"], s.train, s.test, o["sources"], o["per_class"], o["seed"], s.classifier)
    r["split"] = o["split"]
    s.details.update({k: v for k, v in r.items() if k not in ("goals", "met")})
    rows = [{"model": "cvae", "measure": name, "value": r[name], "goal": f">= {goal}",
             "met": "yes" if r["met"][name] else "no"} for name, goal in GOALS.items()]
    rows += [{"model": "cvae", "measure": f"reconstruction_{m}_r", "value": r[f"reconstruction_{m}_r"],
              "goal": f"ceiling of {m}_r", "met": None} for m in ("slant", "thickness")]
    return rows


def nll_rows(s: Setting) -> list[dict]:
    """−log p(x|y) of the cvae (``cnll``) and −log p(x) of the same-size VAE (``nll``), same test images."""
    k, rows = s.options["nll_samples"], []
    s.models["vae"] = _vae(s)
    for name, data in (("cvae", Batch(s.test.x, s.test.y)), ("vae", Batch(s.test.x))):
        r = evaluate(s.models[name], data, nll_samples=k, binarize=NLL_BINARIZATION, seed=s.options["seed"],
                     progress=s.progress)
        measure = "cnll" if name == "cvae" else "nll"
        s.details[f"{name}_evaluation"] = r
        rows.append({"model": name, "measure": measure, "value": r[measure], "goal": f"k = {k}", "met": None})
    return rows


def picture_rows(s: Setting) -> list[dict]:
    """No rows: the style grids (one per class) and the analogy grid of the first test digits."""
    model, out = s.models["cvae"], s.out
    ranked = Batch(s.test.x[:1000], s.test.y[:1000])  # the plane of the two dimensions of highest KL
    save_png(style_grids(decoded_manifold(model, n=GRID_SIDE, by_class=True, data=ranked)), out / "style_grids.png")
    count = min(ANALOGY_SOURCES, len(s.test))
    save_analogies(model, s.test.x[:count], s.test.y[:count], out / "analogies.png")
    s.figures += [str(out / "style_grids.png"), str(out / "analogies.png")]
    return []


def style_grids(manifold) -> Image.Image:
    """Each class's n×n grid as one panel, five panels a row, white between them (no axes:
    ``vaelab manifold --by-class`` draws the same grids with their z values)."""
    k, _, c, h, w = manifold.images.shape
    n = manifold.n
    tiles = manifold.images.reshape(k, n, n, c, h, w).permute(0, 3, 1, 4, 2, 5)  # (K, C, row, H, col, W)
    return grid(tiles.reshape(k, c, n * h, n * w), nrow=5, pad=8, scale=1)


ROW_MAKERS = [check_rows, nll_rows, picture_rows]  # append a maker (e.g. CMMA's attribute fidelity) here
