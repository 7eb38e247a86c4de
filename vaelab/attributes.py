"""Generating digits from attributes and editing them, for models trained with attribute
vectors as y (``cmma``): the Python side of ``vaelab sample --attributes`` and ``vaelab edit``.

Attributes are asked for in the user's units (``class=3,thickness=2.5,slant=10``: a class
index, pixels, degrees); the model turns them into its standardized y and refuses names it
was not trained with, values that are not finite numbers, and values outside its training
range unless ``extrapolate``.
"""
from __future__ import annotations

import math

import torch

from .errors import VaelabError

EXAMPLE = "class=3,thickness=2.5,slant=10"


def parse_attributes(text: str) -> dict[str, float]:
    """``"class=3,thickness=2.5"`` -> {"class": 3.0, "thickness": 2.5}; a malformed string,
    a name given twice or a value that is not a finite number is refused in one line."""
    request: dict[str, float] = {}
    for part in str(text).split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name or not value.strip():
            raise VaelabError(f"attributes are NAME=VALUE pairs separated by commas, like {EXAMPLE}; got {text!r}")
        if name in request:
            raise VaelabError(f"attribute '{name}' given twice in {text!r}; give each once")
        try:
            number = float(value)
        except ValueError:
            raise VaelabError(f"{name}={value.strip()} is not a number; give e.g. {EXAMPLE}") from None
        if not math.isfinite(number):
            raise VaelabError(f"{name}={value.strip()} is not a finite number; give e.g. {EXAMPLE}")
        request[name] = number
    return request


def require_attributes(model) -> None:
    """Refuse, in one line, a model that was trained without attribute vectors."""
    if not callable(getattr(model, "attribute_vectors", None)):
        name = getattr(model, "name", type(model).__name__)
        raise VaelabError(f"a '{name}' was trained without attributes; generating from attributes needs a model "
                          "trained with them, e.g. vaelab train cmma --data mnist --attributes class,thickness,slant")


def sample_attributes(model, request: dict, n: int = 64, seed: int = 0, extrapolate: bool = False) -> torch.Tensor:
    """``n`` images (decoder means) for z ~ p(z | y) with y the attributes ``request`` asks
    for (user units; the rest at their training mean, a class left out cycled); repeatable."""
    require_attributes(model)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise VaelabError(f"the number of samples must be at least 1, got {n!r}")
    y = model.attribute_vectors(request, n, extrapolate)
    g = torch.Generator(device=y.device).manual_seed(seed)
    return model.sample(n, y=y, generator=g).clamp(0, 1).cpu()


def edit_attributes(model, batch, changes: dict, extrapolate: bool = False) -> torch.Tensor:
    """Each image of ``batch`` (a Batch whose y holds the model's attribute vectors) decoded with
    the attributes ``changes`` names set anew: (B, C, H, W)."""
    require_attributes(model)
    if not changes:
        raise VaelabError("name at least one attribute to change, e.g. thickness=3.5")
    return model.edit(batch, changes, extrapolate).clamp(0, 1).cpu()


def edit_image(run, data: str, index: int, changes: dict, split: str = "test", data_dir=None,
               extrapolate: bool = False) -> torch.Tensor:
    """(3, C, H, W): image ``index`` of the run's ``split`` of ``data``, its reconstruction and
    its edit. The image is encoded with its attributes measured on the grey image and, as
    for ``vaelab reconstruct``, binarized once with the test seed when the run trained so."""
    from .data import binarize_static
    from .data.samplers import resolve_binarize
    from .evaluation import TEST_BINARIZATION_SEED
    from .io import load
    from .training import run_split
    from .training.run import conditioned

    model = load(run)
    require_attributes(model)
    if not changes:
        raise VaelabError("name at least one attribute to change, e.g. thickness=3.5")
    ds = run_split(run, data, split, data_dir=data_dir)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(ds):
        raise VaelabError(f"--index {index}: the {split} split has {len(ds)} images, so indices run from 0 to {len(ds) - 1}")
    batch = conditioned(model, ds.subset([index])).batch()
    grey = batch.x
    if resolve_binarize("auto", model, run) != "none":
        batch = batch.with_x(binarize_static(batch.x, TEST_BINARIZATION_SEED))
    return torch.cat([grey, model.reconstruct(batch).clamp(0, 1).cpu(),
                      edit_attributes(model, batch, changes, extrapolate)])


def save_edit(run, data: str, index: int, changes: dict, path, **options) -> dict:
    """Write :func:`edit_image`'s three images side by side as a PNG; returns the thickness
    (pixels) and slant (degrees) measured on each: {"image": ..., "reconstruction": ..., "edit": ...}."""
    from .morphometrics import measure
    from .viz.grids import grid, save_png

    images = edit_image(run, data, index, changes, **options)
    save_png(grid(images, nrow=3), path)
    figures = measure(images)
    return {what: {"thickness": float(figures.thickness[i]), "slant": math.degrees(figures.slant[i])}
            for i, what in enumerate(("image", "reconstruction", "edit"))}
