"""What each explorer endpoint computes for one loaded run, as JSON-ready dicts.

Everything is computed through :class:`~vaelab.viz.latent.LatentView`, so no endpoint
branches on a model's name. Inputs arrive as parsed JSON (or the bytes of an upload) from
a stranger: every field is checked here and a bad one is an :class:`ApiError` (a 4xx with
a one-line message), never a traceback.
"""
from __future__ import annotations

import base64
import io
import math
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data import Dataset
from ..errors import VaelabError
from ..viz.grids import grid
from ..viz.latent import LatentView

MAP_SIZE = 2000  # test images on the map: enough to see the classes, a small JSON
POOL_SIZE = 5000  # training images searched for an upload's nearest neighbours
NEIGHBOURS = 8
MAX_UPLOAD_SIDE = 4096  # pixels per side of an uploaded image (decoded in memory)
MAX_CLASSES_SHOWN = 100
_UPLOAD_LOCK = threading.Lock()  # one upload decoded at a time bounds the memory they take
_IMAGE_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}


class ApiError(Exception):
    """A request the explorer refuses: an HTTP status and a one-line reason for the page."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class RunView:
    """One run as the explorer shows it: its map of test images and a pool of training codes."""

    name: str
    view: LatentView
    test: Dataset  # the images on the map
    codes: torch.Tensor  # (N, L) their codes
    points: torch.Tensor  # (N, 2) where they sit on the map
    pool: Dataset  # training images an upload is compared with
    pool_codes: torch.Tensor
    dims: list[dict]  # latent dimensions, most informative first
    measure: str


def open_run(run: str | os.PathLike, data: str | None = None, data_dir=None, *, map_size: int = MAP_SIZE,
             pool_size: int = POOL_SIZE) -> RunView:
    """Load ``run`` and the first ``map_size`` test / ``pool_size`` training images of its data
    (``data`` overrides the spec the run recorded)."""
    from ..codes import run_data_spec
    from ..io import load
    from ..training import run_split

    model = load(run)
    spec = data or run_data_spec(run)
    if spec is None:
        raise VaelabError(f"{run} records no data (a bare model directory); pass --data SPEC")
    test = run_split(run, spec, "test", data_dir=data_dir)
    train = run_split(run, spec, "train", data_dir=data_dir)
    return build_view(Path(run).name, model, test, train, map_size=map_size, pool_size=pool_size)


def build_view(name: str, model, test: Dataset, train: Dataset, *, map_size: int = MAP_SIZE,
               pool_size: int = POOL_SIZE) -> RunView:
    """Encode the map and the neighbour pool once, at start, so requests only decode."""
    from ..viz.plots import project_2d

    view = LatentView(model)
    for part, ds in (("test", test), ("training", train)):
        if tuple(ds.shape) != view.image_shape:
            raise VaelabError(f"the {part} images have shape {list(ds.shape)}, the model {name} expects "
                              f"{list(view.image_shape)}; pass the --data it was trained on")
    if view.conditional and not (test.has_class_labels and train.has_class_labels):
        raise VaelabError(f"{name} encodes an image with its label, and the data has no labels; "
                          "pass the labelled --data it was trained on")
    test, pool = _own(test.subset(slice(0, map_size))), _own(train.subset(slice(0, pool_size)))
    codes = view.encode(test)
    points = project_2d(codes) if view.latent_dim >= 2 else torch.cat([codes, torch.zeros_like(codes)], 1)
    order = view.dimension_order(test)
    dims = [{"index": j, "score": order.scores[j]} for j in order.order]
    return RunView(name, view, test, codes, points, pool, view.encode(pool), dims, order.measure)


def _own(ds: Dataset) -> Dataset:
    """A subset with storage of its own: a slice is a view that would keep the whole split
    (188 MB for MNIST's training images) alive as long as the server runs."""
    return replace(ds, x=ds.x.clone(), y=None if ds.y is None else ds.y.clone(),
                   labelled=None if ds.labelled is None else ds.labelled.clone())


def describe(i: int, run: RunView) -> dict:
    """What the page needs to lay out a run: sizes, the ordered dimensions, the classes."""
    classes = list(run.test.classes) if run.test.classes else [str(c) for c in range(run.view.num_classes)]
    return {"id": i, "name": run.name, "latent_dim": run.view.latent_dim, "image_shape": list(run.view.image_shape),
            "conditional": run.view.conditional, "num_classes": run.view.num_classes, "classes": classes,
            "dims": run.dims, "measure": run.measure, "points": len(run.test)}


def latent_map(run: RunView) -> dict:
    """The map: one 2-D point per test image (PCA of the codes beyond two dimensions), its label."""
    labels = run.test.y.tolist() if run.test.has_class_labels else None
    how = "codes" if run.view.latent_dim == 2 else "PCA of the codes" if run.view.latent_dim > 2 else "code"
    return {"points": [[round(a, 4), round(b, 4)] for a, b in run.points.tolist()], "labels": labels,
            "projection": how}


def point(run: RunView, index: int) -> dict:
    """Test image ``index`` of the map with its code and its reconstruction."""
    if not 0 <= index < len(run.test):
        raise ApiError(404, f"no point {index} on this map; points are 0..{len(run.test) - 1}")
    label = _label(run.test, index)
    code = run.codes[index:index + 1]
    y = label if run.view.conditional else None
    return {"index": index, "label": label, "code": _numbers(code[0]), "image": png_url(run.test.x[index:index + 1]),
            "recon": png_url(run.view.decode(code, y))}


def decode(run: RunView, body) -> dict:
    """The decoded image of code ``z`` (and class ``y`` for a conditional model)."""
    z = _code(run, _field(body, "z"))
    return {"image": png_url(run.view.decode(z, _class(run, body)))}


def classes(run: RunView, body) -> dict:
    """One decoded image per class for the same code ``z``: what the code holds apart from the label;
    as one grid (``image``) and one by one (``images``, which the page lays out to fit its width)."""
    if not run.view.conditional:
        raise ApiError(400, f"{run.name} decodes without a class; the class grid is for label-conditional models")
    z = _code(run, _field(body, "z"))
    k = min(run.view.num_classes, MAX_CLASSES_SHOWN)
    images = run.view.decode(z.expand(k, -1), torch.arange(k))
    return {"image": png_url(images, nrow=min(k, 10), pad=1), "images": [png_url(im[None]) for im in images],
            "classes": k}


def upload(run: RunView, data: bytes, y: str | None, invert: bool) -> dict:
    """An image of the user's own, converted as the training images were: its code, its
    reconstruction and its nearest training images by code."""
    x = image_from_bytes(data, run.view.image_shape)
    if invert:
        x = 1 - x
    if run.view.conditional and y is None:
        raise ApiError(400, f"{run.name} encodes an image with its class; choose a class (y) before uploading")
    label = _class(run, {"y": None if y is None else _int_text(y)})
    rows = Dataset("upload", x, None if label is None else torch.tensor([label]))
    code = run.view.encode(rows)
    return {"code": _numbers(code[0]), "image": png_url(x), "recon": png_url(run.view.decode(code, label)),
            "neighbours": nearest(run, code[0])}


def nearest(run: RunView, code: torch.Tensor, k: int = NEIGHBOURS) -> list[dict]:
    """The ``k`` training images of the pool whose codes are closest (Euclidean) to ``code``."""
    dist = (run.pool_codes - code).norm(dim=1)
    best = dist.topk(min(k, len(dist)), largest=False)
    return [{"index": int(i), "label": _label(run.pool, int(i)), "distance": round(float(d), 4),
             "image": png_url(run.pool.x[int(i):int(i) + 1])} for d, i in zip(best.values, best.indices)]


def image_from_bytes(data: bytes, shape: tuple[int, ...]) -> torch.Tensor:
    """A PNG or JPEG upload as a (1, C, H, W) tensor in [0, 1]: decoded by the same code
    that reads image folders for training, then given the model's channels and size."""
    from ..data.sources import _read_images

    if not any(data.startswith(magic) for magic in _IMAGE_MAGIC):
        raise ApiError(415, "the upload is not a PNG or JPEG image; upload a .png or .jpg file")
    _check_size(data)
    with _UPLOAD_LOCK:
        try:
            x = torch.from_numpy(_read_images([_Upload(data)], "the upload"))
        except VaelabError as exc:
            raise ApiError(400, str(exc)) from None
    return _fit(x, shape)


def _check_size(data: bytes) -> None:
    """Refuse an image whose declared size would take too much memory, before decoding it."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except Exception:  # PIL raises many types for damaged files; all mean the same here
        raise ApiError(400, "the upload could not be read as an image; it is damaged or not a PNG/JPEG") from None
    if max(width, height) > MAX_UPLOAD_SIDE:
        raise ApiError(413, f"the image is {width}×{height} pixels, over {MAX_UPLOAD_SIDE} on a side; resize it")


def _fit(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Grey or RGB as the model's channels (ITU-R 601 luma for grey), then its H×W: pixel areas
    averaged when shrinking (a 3× enlargement comes back exactly), bilinear when enlarging."""
    c, h, w = shape
    if x.shape[1] == 3 and c == 1:
        x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    elif x.shape[1] == 1 and c == 3:
        x = x.expand(-1, 3, -1, -1)
    if tuple(x.shape[2:]) != (h, w):
        shrink = x.shape[2] >= h and x.shape[3] >= w
        x = F.interpolate(x, size=(h, w), mode="area") if shrink else \
            F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return x.clamp(0, 1).contiguous()


class _Upload(io.BytesIO):
    """Upload bytes where the image readers expect a path; named so their messages read well."""

    def __str__(self) -> str:
        return "(the upload)"


def png_url(images: torch.Tensor, nrow: int | None = None, pad: int = 0) -> str:
    """Images in [0, 1] as one PNG data URL at their own size (the page scales them up)."""
    img = grid(images, nrow=nrow or len(images), pad=pad, scale=1)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _field(body, name: str):
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object with '{name}'")
    if name not in body:
        raise ApiError(400, f"the request body has no '{name}'")
    return body[name]


def _code(run: RunView, z) -> torch.Tensor:
    """``z`` as a (1, L) code: a list of exactly L finite numbers."""
    n = run.view.latent_dim
    if not isinstance(z, list) or len(z) != n:
        got = f"{len(z)} values" if isinstance(z, list) else type(z).__name__
        raise ApiError(400, f"'z' must be a list of {n} numbers (the latent size of {run.name}), got {got}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in z):
        raise ApiError(400, "'z' must hold numbers only")
    if not all(math.isfinite(v) for v in z if isinstance(v, float)):  # a huge int would overflow isfinite
        raise ApiError(400, "'z' holds NaN or infinite values; give finite numbers")
    if max(abs(v) for v in z) > 1e6:
        raise ApiError(400, "'z' holds values beyond ±1e6; codes live within a few units of 0")
    return torch.tensor([z], dtype=torch.float32)


def _class(run: RunView, body) -> int | None:
    """The class ``y`` a conditional model decodes with; refused for any other model."""
    y = body.get("y") if isinstance(body, dict) else None
    if not run.view.conditional:
        if y is not None:
            raise ApiError(400, f"{run.name} decodes without a class; drop 'y'")
        return None
    if not isinstance(y, int) or isinstance(y, bool) or not 0 <= y < run.view.num_classes:
        raise ApiError(400, f"{run.name} decodes given a class: 'y' must be an integer 0..{run.view.num_classes - 1}")
    return y


def _int_text(text: str) -> int | str:
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else text


def _label(ds: Dataset, i: int) -> int | None:
    return int(ds.y[i]) if ds.has_class_labels else None


def _numbers(t: torch.Tensor) -> list[float]:
    return [round(float(v), 5) for v in t]
