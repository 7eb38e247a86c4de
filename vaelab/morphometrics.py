"""Morphometrics of digit images: area, stroke length, thickness, slant, width and height.

The measurement idea of Morpho-MNIST (Castro et al. 2019), written anew on SciPy and
scikit-image, so that "style" can be measured rather than eyeballed: does an analogy keep
its source's slant, does a generator give the thickness it was asked for?

Each image is (optionally) upscaled ``scale`` times by cubic interpolation, thresholded at
``threshold`` (an absolute grey level, so a faint or empty image stays empty instead of
having its noise stretched into a shape), thinned to a one-pixel skeleton
(``skimage.morphology.skeletonize``) and measured; every length is divided by ``scale``,
so all figures are in pixels of the input image (areas in its pixels²):

- ``area``: foreground pixels;
- ``length``: skeleton length, each 8-neighbour link of skeleton pixels counted once
  (1 across, √2 diagonally): a straight stroke of n pixels measures n − 1;
- ``thickness``: 2 × the mean Euclidean distance transform along the skeleton (distance from
  a skeleton pixel's centre to the nearest background pixel's centre), Morpho-MNIST's
  definition: exact for strokes an even number of (upscaled) pixels wide, one upscaled pixel
  too thick for odd widths;
- ``slant``: arctan(−μ11 / μ02) in radians from the grey image's central moments (x to the
  right, y downwards): positive when the top leans right (as in ``/``), the shear that would
  stand the digit upright;
- ``width`` / ``height``: extent of the foreground, in pixels, after undoing the slant's
  shear about the centroid (width) and straight up and down (height).

An image with no foreground pixel is measured as all zeros with ``valid`` False; nothing is
ever NaN. Whether a shape is a digit is not judged here (a digit classifier does that): an
all-white square or noise gets figures of that shape.

``python -m vaelab.morphometrics --data mnist --split test`` prints a split's means, standard
deviations and the speed; :func:`dataset_morphometrics` caches a dataset's figures.
"""
from __future__ import annotations

import functools
import hashlib
import sys
import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from .errors import VaelabError
from .files import atomic_write_bytes, read_safetensors, serialize

MEASURES = ("area", "length", "thickness", "slant", "width", "height")
DEFAULT_SCALE = 4  # Morpho-MNIST measures on 4× upscaled images
DEFAULT_THRESHOLD = 0.5
CHUNK = 64  # images thinned at once (one tall mosaic)
CACHE_KIND = "morphometrics"
CACHE_FORMAT = "1"


@dataclass
class Morphometrics:
    """One float64 array per measure (N,), plus ``valid`` (N, bool): False for an empty image."""

    area: np.ndarray
    length: np.ndarray
    thickness: np.ndarray
    slant: np.ndarray
    width: np.ndarray
    height: np.ndarray
    valid: np.ndarray

    def __len__(self) -> int:
        return len(self.valid)

    def as_dict(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def subset(self, index) -> Morphometrics:
        return Morphometrics(**{k: v[index] for k, v in self.as_dict().items()})

    def summary(self) -> dict[str, dict[str, float]]:
        """Mean and standard deviation of each measure over the valid images (slant in degrees too)."""
        ok = self.valid
        out = {k: {"mean": float(getattr(self, k)[ok].mean()) if ok.any() else 0.0,
                   "std": float(getattr(self, k)[ok].std()) if ok.any() else 0.0} for k in MEASURES}
        out["slant_degrees"] = {k: float(np.degrees(v)) for k, v in out["slant"].items()}
        return out


def measure(images, scale: int = DEFAULT_SCALE, threshold: float = DEFAULT_THRESHOLD,
            chunk: int = CHUNK) -> Morphometrics:
    """Morphometrics of ``images``: N×1×H×W or N×H×W grey levels in [0, 1] (uint8 0..255 too)."""
    x = _grey_batch(images)
    _check_settings(scale, threshold)
    parts = [_measure_chunk(x[i:i + chunk], scale, threshold) for i in range(0, len(x), chunk)]
    if not parts:
        return Morphometrics(*(np.zeros(0) for _ in MEASURES), valid=np.zeros(0, dtype=bool))
    return Morphometrics(**{k: np.concatenate([p[k] for p in parts]) for k in parts[0]})


def _grey_batch(images) -> np.ndarray:
    """(N, H, W) float64 in [0, 1]; a clear error for anything else."""
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise VaelabError(f"morphometrics measure grey images N×1×H×W or N×H×W, got shape {tuple(x.shape)}; "
                          "for one image add a leading axis")
    if x.dtype == np.uint8:
        return x.astype(np.float64) / 255.0
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer) or x.dtype == bool):
        raise VaelabError(f"morphometrics need numeric pixels, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if x.size and not np.isfinite(x).all():
        raise VaelabError("images hold NaN or infinite pixels; give grey levels in [0, 1]")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise VaelabError(f"pixels must lie in [0, 1] (or be uint8 0..255), got values from {x.min():g} to "
                          f"{x.max():g}; divide by 255 or clip first")
    return x


def _check_settings(scale, threshold) -> None:
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or not 1 <= scale <= 16:
        raise VaelabError(f"scale must be a whole number from 1 to 16 (the upscaling factor), got {scale!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)) or not 0 < threshold < 1:
        raise VaelabError(f"threshold must lie strictly between 0 and 1 (a grey level), got {threshold!r}")


def _measure_chunk(x: np.ndarray, scale: int, threshold: float) -> dict[str, np.ndarray]:
    """Figures for a few dozen images: thinned and distance-transformed as one mosaic."""
    x = _crop(x)
    shear, centre_row = _shear(x)
    binary = _upscale(x, scale) >= threshold
    skeleton, distance = _skeleton_and_distance(binary)
    valid = binary.any((1, 2))
    width, height = _extents(binary, shear, (centre_row + 0.5) * scale - 0.5)
    on_skeleton = skeleton.sum((1, 2))
    thickness = 2 * (distance * skeleton).sum((1, 2)) / np.maximum(on_skeleton, 1)
    figures = {"area": binary.sum((1, 2)) / scale**2, "length": _skeleton_length(skeleton) / scale,
               "thickness": thickness / scale, "slant": np.arctan(-shear), "width": width / scale,
               "height": height / scale}
    figures = {k: np.where(valid, v, 0.0).astype(np.float64) + 0.0 for k, v in figures.items()}
    return {**figures, "valid": valid}


def _crop(x: np.ndarray, margin: int = 2) -> np.ndarray:
    """Each image cut to the box of its non-zero pixels and moved to the top left of a
    common canvas with ``margin`` pixels of background all round: the figures do not depend
    on position, and thinning and the distance transform cost in proportion to the pixels
    (an MNIST digit fills about half of its image)."""
    rows, cols = x.any(2), x.any(1)
    top, left = rows.argmax(1), cols.argmax(1)
    height = np.where(rows.any(1), x.shape[1] - rows[:, ::-1].argmax(1) - top, 0)
    width = np.where(cols.any(1), x.shape[2] - cols[:, ::-1].argmax(1) - left, 0)
    canvas = np.zeros((len(x), height.max(initial=0) + 2 * margin, width.max(initial=0) + 2 * margin))
    for i, (t, l, h, w) in enumerate(zip(top, left, height, width)):
        canvas[i, margin:margin + h, margin:margin + w] = x[i, t:t + h, l:l + w]
    return canvas


def _upscale(x: np.ndarray, scale: int) -> np.ndarray:
    """Cubic-spline upscaling with pixel edges aligned (an n-pixel bar becomes n·scale pixels),
    clipped to [0, 1]. The spline is separable and linear, so it is two matrix products,
    A·x·Bᵀ, far faster than ``ndimage.zoom`` on a stack of images."""
    if scale == 1:
        return x
    rows, cols = _zoom_matrix(x.shape[1], scale), _zoom_matrix(x.shape[2], scale)
    return np.clip(rows @ x @ cols.T, 0.0, 1.0)


@functools.lru_cache(maxsize=16)
def _zoom_matrix(n: int, scale: int, pad: int = 16) -> np.ndarray:
    """(n·scale, n): column j is the unit vector e_j zoomed by ``ndimage.zoom`` (cubic spline,
    grid mode) inside ``pad`` pixels of zeros on each side, so an image upscales the same
    however much background frames it (the spline's reach decays by 0.27 per pixel)."""
    eye = np.eye(n + 2 * pad)
    zoom = [ndimage.zoom(eye[pad + j], scale, order=3, mode="grid-constant", cval=0.0, grid_mode=True)
            for j in range(n)]
    return np.stack(zoom, 1)[pad * scale:(pad + n) * scale]


def _skeleton_and_distance(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Skeleton and distance transform of each image, computed on one tall mosaic: every image
    framed by background, so thinning (a local rule) and the distance to the nearest background
    pixel (never beyond the frame) are exactly those of the image alone."""
    from skimage.morphology import skeletonize

    n, h, w = binary.shape
    framed = np.pad(binary, ((0, 0), (1, 1), (1, 1)))
    mosaic = framed.reshape(n * (h + 2), w + 2)
    skeleton = skeletonize(mosaic).reshape(n, h + 2, w + 2)[:, 1:-1, 1:-1]
    distance = ndimage.distance_transform_edt(mosaic).reshape(n, h + 2, w + 2)[:, 1:-1, 1:-1]
    return skeleton, distance


def _skeleton_length(skeleton: np.ndarray) -> np.ndarray:
    """Sum of the links between 8-neighbouring skeleton pixels, each counted once (right, down,
    and both downward diagonals): 1 for a step across, √2 for a diagonal one."""
    s = skeleton.astype(np.float64)
    right = (s[:, :, :-1] * s[:, :, 1:]).sum((1, 2))
    down = (s[:, :-1, :] * s[:, 1:, :]).sum((1, 2))
    diagonals = (s[:, :-1, :-1] * s[:, 1:, 1:]).sum((1, 2)) + (s[:, :-1, 1:] * s[:, 1:, :-1]).sum((1, 2))
    return right + down + np.sqrt(2.0) * diagonals


def _shear(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """μ11 / μ02 (how far x moves per row down; 0 without vertical spread) and the centroid's
    row ȳ, from the grey image at its own resolution (x = column, y = row, downwards)."""
    n, h, w = grey.shape
    mass = np.maximum(grey.sum((1, 2)), 1e-12)
    xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    dx = xs[None, :] - ((grey.sum(1) * xs).sum(1) / mass)[:, None]
    centre = (grey.sum(2) * ys).sum(1) / mass
    dy = ys[None, :] - centre[:, None]
    mu11 = np.einsum("nij,ni,nj->n", grey, dy, dx) / mass
    mu02 = (grey.sum(2) * dy**2).sum(1) / mass
    return np.where(mu02 > 1e-9, mu11 / np.maximum(mu02, 1e-9), 0.0), centre


def _extents(binary: np.ndarray, shear: np.ndarray, centre_row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Width of the foreground after x ← x − shear·(y − ȳ) (the digit stood upright) and its
    height, in pixels of ``binary``."""
    n, h, w = binary.shape
    ys = np.arange(h, dtype=np.float64)[None, :, None]
    upright = np.arange(w, dtype=np.float64)[None, None, :] - shear[:, None, None] * (ys - centre_row[:, None, None])
    left = np.where(binary, upright, np.inf).min((1, 2), initial=np.inf)
    right = np.where(binary, upright, -np.inf).max((1, 2), initial=-np.inf)
    rows = binary.any(2)
    top = np.where(rows, np.arange(h)[None, :], h).min(1, initial=h)
    bottom = np.where(rows, np.arange(h)[None, :], -1).max(1, initial=-1)
    valid = rows.any(1)
    return np.where(valid, right - left + 1, 0.0), np.where(valid, bottom - top + 1, 0.0).astype(np.float64)


# --- cached figures of a dataset ------------------------------------------------------------


def cache_directory() -> Path:
    """``$XDG_CACHE_HOME/vaelab/morphometrics`` (else ``~/.cache/...``): figures are derived
    data, kept in the user's cache, never in a project or run directory."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "vaelab" / CACHE_KIND


def dataset_morphometrics(ds, scale: int = DEFAULT_SCALE, threshold: float = DEFAULT_THRESHOLD,
                          cache_dir: str | os.PathLike | None = None) -> Morphometrics:
    """Morphometrics of every image of ``ds`` (a Dataset or an image tensor), measured once and
    then read back from a safetensors file named by a SHA-256 fingerprint of the pixels and
    the settings: changed images or settings measure afresh, never a stale figure."""
    x = getattr(ds, "x", ds)
    _check_settings(scale, threshold)
    path = Path(cache_dir or cache_directory()) / f"{_fingerprint(x, scale, threshold)}.safetensors"
    cached = _read_cache(path, len(x))
    if cached is not None:
        return cached
    figures = measure(x, scale, threshold)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in figures.as_dict().items()}
    atomic_write_bytes(path, serialize(tensors, {"vaelab": CACHE_KIND, "format": CACHE_FORMAT,
                                                 "scale": str(scale), "threshold": repr(float(threshold))}))
    return figures


def mnist_morphometrics(split: str = "test", data_dir=None, **settings) -> Morphometrics:
    """:func:`dataset_morphometrics` of an MNIST split (``data_dir`` as for ``load_dataset``)."""
    from .data import load_dataset

    return dataset_morphometrics(load_dataset("mnist", split, data_dir=data_dir), **settings)


def _fingerprint(x, scale: int, threshold: float) -> str:
    t = torch.as_tensor(x).detach().cpu().contiguous()
    digest = hashlib.sha256(f"{CACHE_FORMAT}|{scale}|{float(threshold)!r}|{t.dtype}|{tuple(t.shape)}|".encode())
    digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:40]


def _read_cache(path: Path, n: int) -> Morphometrics | None:
    """The cached figures, or None where there are none (or they do not fit: then measured again)."""
    if not path.is_file():
        return None
    tensors, meta = read_safetensors(path, "morphometrics cache")
    names = [f.name for f in fields(Morphometrics)]
    if meta.get("vaelab") != CACHE_KIND or set(tensors) != set(names) or any(len(t) != n for t in tensors.values()):
        return None
    return Morphometrics(**{k: tensors[k].numpy() for k in names})


# --- attribute vectors --------------------------------------------------------------------


@dataclass(frozen=True)
class Standardization:
    """Mean and standard deviation per measure: attribute a is stored as (a − mean) / std."""

    mean: dict[str, float]
    std: dict[str, float]

    @classmethod
    def fit(cls, figures: Morphometrics, measures=("thickness", "slant")) -> Standardization:
        """Statistics of the valid images of ``figures`` (e.g. the training split)."""
        ok = figures.valid
        if not ok.any():
            raise VaelabError("no image has a foreground pixel to fit the standardization on")
        values = {m: getattr(figures, m)[ok] for m in measures}
        return cls({m: float(v.mean()) for m, v in values.items()}, {m: float(max(v.std(), 1e-12)) for m, v in values.items()})

    def apply(self, figures: Morphometrics) -> np.ndarray:
        """(N, len(mean)) standardized measures, in the order of ``mean``."""
        return np.stack([(getattr(figures, m) - self.mean[m]) / self.std[m] for m in self.mean], 1)

    def to_dict(self) -> dict:
        return {"mean": dict(self.mean), "std": dict(self.std)}


def attribute_vectors(labels, figures: Morphometrics, num_classes: int = 10,
                      standardization: Standardization | None = None) -> tuple[torch.Tensor, Standardization]:
    """y = [onehot(class), standardized thickness, standardized slant] (N, K + 2) float32 and the
    standardization used (fitted on ``figures`` unless given: fit it on the training split and
    pass it for the test split, so both speak the same units)."""
    labels = torch.as_tensor(labels)
    if labels.shape != (len(figures),) or labels.dtype != torch.int64:
        raise VaelabError(f"labels must be N={len(figures)} int64 class indices, got {labels.dtype} {tuple(labels.shape)}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise VaelabError(f"labels must lie in 0..{num_classes - 1}; give num_classes covering every label")
    standardization = standardization or Standardization.fit(figures)
    extra = torch.from_numpy(standardization.apply(figures)).float()
    return torch.cat([torch.nn.functional.one_hot(labels, num_classes).float(), extra], 1), standardization


# --- python -m vaelab.morphometrics ---------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Print a split's morphometrics (mean and std of each measure) and the measuring speed."""
    import argparse
    import json
    import time

    from .data import load_dataset

    p = argparse.ArgumentParser(prog="python -m vaelab.morphometrics", allow_abbrev=False,
                                description="Measure a dataset split's digits (Morpho-MNIST's measures).")
    p.add_argument("--data", default="mnist", metavar="SPEC", help="dataset (default: mnist)")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="dataset directory")
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--limit", type=int, default=0, metavar="N", help="the first N images only (default: all)")
    p.add_argument("--scale", type=int, default=DEFAULT_SCALE, help=f"upscaling factor (default: {DEFAULT_SCALE})")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    try:
        torch.set_num_threads(1)
        x = load_dataset(args.data, args.split, data_dir=args.data_dir).x
        x = x[:args.limit] if args.limit > 0 else x
        start = time.perf_counter()
        figures = measure(x, scale=args.scale)  # measured afresh: the time is the point
        seconds = time.perf_counter() - start
    except VaelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = {"data": args.data, "split": args.split, "n": len(x), "valid": int(figures.valid.sum()),
              "scale": args.scale, "images_per_second": len(x) / max(seconds, 1e-9), "summary": figures.summary()}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.data} {args.split}: {len(x)} images ({result['valid']} with a stroke), scale {args.scale}, "
          f"{result['images_per_second']:.0f} images/s on one thread")
    for name, stats in result["summary"].items():
        print(f"{name:>14}  mean {stats['mean']:8.3f}  std {stats['std']:8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
