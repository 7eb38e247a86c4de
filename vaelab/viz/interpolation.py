"""Interpolation between two images: in pixel space, and along straight and spherical paths in z.

The lecture's moon-phase picture: blending pixels gives a double exposure; walking from
one code to another and decoding gives an in-between image where the space between codes
is filled (a VAE), and may give nonsense where it is not (an autoencoder). Three rows,
``steps`` points each, endpoints included:

- ``pixels``: (1 − t)·a + t·b;
- ``linear``: decode((1 − t)·z_a + t·z_b), z = the code (posterior mean) of each image;
- ``slerp``: the direction of z turns along the great circle from z_a to z_b while its
  length moves linearly from |z_a| to |z_b|, so the path never cuts through the low-norm
  middle of the space that a straight line between two typical Gaussian codes crosses.

Each path is measured: ``step_length``, the mean L2 distance between consecutive images
(over the D = C·H·W pixel values in [0, 1]); and, with a digit classifier, its mean and
minimum max-probability at the interior points (a low minimum: the path passes images
that are no digit) beside its mean at the two endpoints.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.batch import Batch
from ..errors import VaelabError
from ..words import count
from .captions import captioned_rows
from .grids import save_png
from .latent import LatentView

PATHS = ("pixels", "linear", "slerp")
MAX_STEPS = 200  # a picture row, not a data set: more would only exhaust memory


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Points (len(t), *a.shape) on the straight line from ``a`` (t = 0) to ``b`` (t = 1)."""
    t = t.reshape(-1, *([1] * a.ndim)).to(a.dtype)
    return (1 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Points (len(t), L) from code ``a`` to ``b``: direction along the great circle, norm
    linear between |a| and |b|. Falls back to :func:`lerp` where the angle is undefined
    (a zero code, or opposite directions)."""
    na, nb = a.norm(), b.norm()
    if float(na) == 0 or float(nb) == 0:
        return lerp(a, b, t)
    ua, ub = a / na, b / nb
    omega = torch.arccos((ua @ ub).clamp(-1, 1))
    if float(torch.sin(omega)) < 1e-6:
        return lerp(a, b, t)
    t = t.reshape(-1, 1).to(a.dtype)
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / torch.sin(omega)
    return direction * ((1 - t) * na + t * nb)


@dataclass
class Interpolation:
    """The decoded paths between two images and what they measure."""

    images: dict[str, torch.Tensor]  # path -> (steps, C, H, W) in [0, 1]
    codes: dict[str, torch.Tensor]  # "linear" / "slerp" -> (steps, L)
    measures: dict[str, dict] = field(default_factory=dict)  # path -> path_measures(...)

    def rows(self) -> torch.Tensor:
        return torch.stack([self.images[p] for p in PATHS])


def path_measures(images: torch.Tensor, classifier=None) -> dict:
    """How far consecutive images of a path lie apart and, with ``classifier``, how
    digit-like its interior points are (mean and minimum max-probability) and its endpoints."""
    flat = images.flatten(1).double()
    steps = (flat[1:] - flat[:-1]).norm(dim=1)
    out = {"step_length": float(steps.mean()), "max_step": float(steps.max())}
    if classifier is not None:
        conf = classifier.predict_proba(images).max(1).values.double()
        out.update(confidence_mean=float(conf[1:-1].mean()), confidence_min=float(conf[1:-1].min()),
                   endpoint_confidence=float(conf[[0, -1]].mean()))
    return out


def interpolate(model, a: torch.Tensor, b: torch.Tensor, *, steps: int = 10, label: int | None = None,
                classifier=None) -> Interpolation:
    """The three paths from image ``a`` to image ``b`` (each C×H×W in [0, 1]) for ``model``
    (any model ``LatentView`` accepts; a conditional one encodes and decodes both at the
    fixed class ``label``), measured by :func:`path_measures`."""
    view = LatentView(model)
    if not 3 <= steps <= MAX_STEPS:
        raise VaelabError(f"--steps must be from 3 (two endpoints and a point between) to {MAX_STEPS}, got {steps}")
    a, b = (_image(x, view.image_shape, name) for x, name in ((a, "the first image"), (b, "the second image")))
    if torch.equal(a, b):
        raise VaelabError("the two images are identical, so there is nothing to interpolate; choose two "
                          "different images")
    if view.conditional and label is None:
        raise VaelabError(f"this model encodes and decodes at a class: give --label (0 to {view.num_classes - 1}); "
                          "both images are interpolated at that class")
    x = torch.stack([a, b])
    za, zb = view.encode(x if label is None else Batch(x, torch.full((2,), int(label))))
    t = torch.linspace(0, 1, steps)
    codes = {"linear": lerp(za, zb, t), "slerp": slerp(za, zb, t)}
    images = {"pixels": lerp(a, b, t).clamp(0, 1), **{p: view.decode(z, label) for p, z in codes.items()}}
    measures = {p: path_measures(images[p], classifier) for p in PATHS}
    return Interpolation(images, codes, measures)


def _image(x, shape: tuple[int, ...], name: str) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float32)
    if tuple(x.shape) != tuple(shape):
        raise VaelabError(f"{name} has shape {list(x.shape)}, the model takes {list(shape)}")
    return x


def save_interpolation(model, path: str | os.PathLike, a, b, **settings) -> Interpolation:
    """Write the three paths as one PNG, a captioned row each (``pixels``, ``linear z``, ``slerp z``)."""
    result = interpolate(model, a, b, **settings)
    save_png(captioned_rows(result.rows(), ["pixels", "linear z", "slerp z"]), path)
    return result


def read_image_files(paths, shape) -> torch.Tensor:
    """Image files (PNG, JPEG, ...) as (N, *shape) in [0, 1], read as ``folder:`` data is;
    an RGB file whose channels are equal is taken as grey for a one-channel model."""
    from ..data.sources import _read_images

    x = torch.from_numpy(_read_images([Path(p) for p in paths], "image files"))
    if x.shape[1] == 3 and shape[0] == 1 and torch.equal(x[:, :1].expand_as(x), x):
        x = x[:, :1]
    if tuple(x.shape[1:]) != tuple(shape):
        c, h, w = x.shape[1:]
        raise VaelabError(f"{paths[0]}: images of {count(c, 'channel')}, {w}×{h} pixels; the model takes "
                          f"{count(shape[0], 'channel')}, {shape[2]}×{shape[1]} (resize or convert it)")
    return x

