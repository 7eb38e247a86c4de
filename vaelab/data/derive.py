"""Named ways to derive one dataset from another, for the protocols later families follow.

- :func:`labelled_subset`: a class-balanced labelled subset by seed, the rest unlabelled
  (semi-supervised learning, Kingma et al. 2014);
- :func:`quadrant_mask`: images with quadrants hidden, to be completed (Sohn et al. 2015);
- :func:`encoded`: a trained model's codes of a dataset, cached as safetensors (second
  stages: a classifier or M2 on M1's features, a prior over a first stage's codes).

Each returns a :class:`~vaelab.data.Dataset`, so what is derived trains, splits and
subsets like any other data.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import torch

from vaelab.data.sources import Dataset
from vaelab.errors import VaelabError
from vaelab.files import atomic_write_bytes, read_safetensors, serialize

UNLABELLED = -1
QUADRANT_FILL = -1.0
CACHE_KIND = "encoded"
CACHE_FORMAT = "1"


# --- a labelled subset ------------------------------------------------------------------


def labelled_subset(ds: Dataset, per_class: int, seed: int) -> Dataset:
    """``ds`` with ``per_class`` rows of every class marked labelled, drawn by ``seed``.

    One Dataset comes back, not two: every row in its original order, the drawn rows marked
    by ``labelled`` and the rest unlabelled, so the labelled and unlabelled parts can never
    overlap or drift apart; ``split_labelled()`` gives the two parts. The y of unlabelled rows
    is set to -1: the mask is what marks them, and -1 makes a reader that ignores the mask
    fail loudly instead of training on labels the protocol hides. Kingma et al. (2014) label
    N/10 per class of 50,000 training images (N = 100, 600, 1000, 3000) and use the rest
    unlabelled. Rows ``ds`` already marks unlabelled are never drawn. Classes are drawn in
    index order from one generator, so a seed always picks the same rows.
    """
    _check_whole(per_class, "per_class", "labelled examples per class")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise VaelabError(f"seed must be a whole number, got {seed!r}")
    if not ds.has_class_labels:
        raise VaelabError(f"labelled_subset needs class labels (y, one int64 index per row) but dataset {ds.name} "
                          f"has {'no y' if ds.y is None else f'y of {ds.y.dtype} {tuple(ds.y.shape)}'}; "
                          "load a labelled dataset")
    pool = ds.labelled_mask
    if not bool(pool.any()):
        raise VaelabError(f"dataset {ds.name} has no labelled rows to draw from; load a labelled dataset")
    _check_enough(ds, per_class, torch.bincount(ds.y[pool], minlength=ds.n_classes))
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(ds), dtype=torch.bool)
    for c in range(ds.n_classes):
        rows = torch.nonzero(pool & (ds.y == c)).squeeze(1)
        mask[rows[torch.randperm(len(rows), generator=generator)[:per_class]]] = True
    y = torch.where(mask, ds.y, torch.full_like(ds.y, UNLABELLED))
    return replace(ds, name=f"{ds.name} ({per_class} labelled per class, seed {seed})", y=y, labelled=mask)


def _check_whole(value, name: str, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise VaelabError(f"{name} must be a whole number of {what}, at least 1; got {value!r}")


def _check_enough(ds: Dataset, per_class: int, counts: torch.Tensor) -> None:
    """Refuse a draw that a class cannot fill, naming the smallest class (the one that binds)."""
    smallest = int(counts.argmin())
    if int(counts[smallest]) < per_class:
        name = ds.classes[smallest] if ds.classes is not None else str(smallest)
        raise VaelabError(f"class {name!r} has only {int(counts[smallest])} labelled examples in {ds.name}, fewer than "
                          f"per_class={per_class}; choose per_class ≤ {int(counts[smallest])} (its smallest class)")


# --- quadrant masks (Sohn et al. 2015) ----------------------------------------------------


def quadrant_target_mask(visible: int, height: int, width: int) -> torch.Tensor:
    """(H, W) bool, True on the pixels to predict when ``visible`` quadrants are given:
    1 = the bottom-left quadrant is given, 2 = the left half, 3 = all but the bottom-right.

    This is the convention of Pyro's example (``examples/cvae/mnist.py``, ``MaskImages``),
    after Sohn, Lee & Yan (2015), section 5.2: the given quadrants grow from the bottom-left.
    """
    if visible not in (1, 2, 3) or isinstance(visible, bool):
        raise VaelabError(f"visible must be 1, 2 or 3 quadrants (1 = bottom-left given, 2 = left half, "
                          f"3 = all but bottom-right); got {visible!r}")
    if height % 2 or width % 2:
        raise VaelabError(f"quadrants need an even height and width, got {height}×{width} images; crop or pad "
                          "them to even sizes")
    h, w = height // 2, width // 2
    target = torch.ones(height, width, dtype=torch.bool)
    target[h:, :w] = False
    if visible >= 2:
        target[:, :w] = False
    if visible == 3:
        target[:h, :] = False
    return target


def quadrant_mask(ds: Dataset, visible: int, fill: float = QUADRANT_FILL) -> Dataset:
    """The completion task: x = each image with its hidden pixels set to ``fill``, y = the
    whole image, ``extras["target_mask"]`` True on the hidden pixels (N×C×H×W).

    A conditional likelihood counts y only where the mask is True (the pixels to predict),
    never the given ones. The fill, -1 as in Pyro's example, lies outside [0, 1], so a
    network can tell "hidden" from "black". The mask is one (H, W) pattern viewed for every
    row (no N copies in memory); see :func:`quadrant_target_mask`. Class labels are not
    carried (y is the target image), nor are ``ds.extras``.
    """
    if not ds.is_image:
        raise VaelabError(f"quadrant_mask needs images (float N×C×H×W) but dataset {ds.name} holds "
                          f"{ds.x.dtype} {tuple(ds.x.shape)}; use image data")
    target = quadrant_target_mask(visible, *ds.shape[1:]).expand_as(ds.x)
    x = ds.x.masked_fill(target, fill)
    plural = "quadrant" if visible == 1 else "quadrants"
    return Dataset(f"{ds.name} ({visible} {plural} visible)", x, ds.x, extras={"target_mask": target})


# --- codes of a trained model -------------------------------------------------------------


def encoded(model, ds: Dataset, path: str | os.PathLike, batch_size: int = 500) -> Dataset:
    """``ds`` as a trained model sees it: x = posterior means ``model.encode(x).mean``
    (float32 codes; integer codes stay integers), or for a model with discrete codes
    (``code_shape``: a VQ-VAE) the (N, h, w) map of nearest-code indices ``model.codes(x)``;
    y, classes and labelled carried over.

    The codes are cached in the safetensors file ``path`` (written atomically), keyed by a
    SHA-256 fingerprint of the model (name, config, every weight) and of ``ds.x``: a changed
    model or changed data recomputes the cache, a matching one is read back bit for bit.
    Labels are not part of the cache, so a new labelled subset reuses it. Binarize x first
    if the model should see 0/1 inputs. ``extras`` describe the input and are not carried.
    A file at ``path`` that is not such a cache is refused, never overwritten.
    """
    _check_whole(batch_size, "batch_size", "rows per batch")
    _check_encodable(model, ds)
    path = Path(path)
    key = fingerprint(model, ds.x)
    codes = _read_cache(path, key, len(ds))
    if codes is None:
        codes = _encode(model, ds.x, batch_size)
        meta = {"vaelab": CACHE_KIND, "format": CACHE_FORMAT, "fingerprint": key, "source": ds.name,
                "model": _model_name(model)}
        atomic_write_bytes(path, serialize({"x": codes}, meta))
    # the fingerprint in the name: a run trained on these codes refuses to resume on another model's
    return Dataset(f"{ds.name} encoded by {_model_name(model)} {key[:12]}", codes, ds.y, ds.classes, ds.labelled)


def fingerprint(model, x: torch.Tensor) -> str:
    """SHA-256 hex of a model (name, config, each weight's name, dtype, shape and bytes) and
    of the data ``x``: equal exactly when encoding would give the same codes."""
    digest = _model_digest(model)
    _hash_tensor(digest, "data", x)
    return digest.hexdigest()


def model_fingerprint(model) -> str:
    """SHA-256 hex of a model alone (name, config, every weight): what a second stage fitted
    to its codes records, so it can refuse a model that has changed since."""
    return _model_digest(model).hexdigest()


def _model_digest(model):
    digest = hashlib.sha256()
    config = model.config.to_dict() if hasattr(getattr(model, "config", None), "to_dict") else None
    digest.update(json.dumps({"format": CACHE_FORMAT, "model": _model_name(model), "config": config},
                             sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        _hash_tensor(digest, f"weight {name}", tensor)
    return digest


def _hash_tensor(digest, label: str, tensor: torch.Tensor) -> None:
    tensor = tensor.detach().cpu().contiguous()
    digest.update(f"{label}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
    digest.update(tensor.reshape(-1).view(torch.uint8).numpy())


def _model_name(model) -> str:
    return getattr(model, "name", None) or type(model).__name__


def _check_encodable(model, ds: Dataset) -> None:
    if not callable(getattr(model, "encode", None)) and not hasattr(model, "code_shape"):
        raise VaelabError(f"encoded needs a model with an encoder (encode(x)); {_model_name(model)} has none")
    expected = getattr(model, "input_shape", None)
    if expected is not None and tuple(expected) != ds.shape:
        raise VaelabError(f"the model encodes inputs of shape {list(expected)} but dataset {ds.name} has "
                          f"{list(ds.shape)}; encode the data the model was trained on")
    if len(ds) == 0:
        raise VaelabError(f"dataset {ds.name} has no rows to encode")


def _read_cache(path: Path, key: str, rows: int) -> torch.Tensor | None:
    """The cached codes if ``path`` holds a cache with fingerprint ``key``; None if absent or
    stale; refuses a file that is not such a cache rather than overwrite it."""
    if not path.exists():
        return None
    try:
        tensors, meta = read_safetensors(path, "encoded-data cache")
    except VaelabError as e:
        raise VaelabError(f"{e}; delete it to recompute the codes, or choose another path") from None
    if meta.get("vaelab") != CACHE_KIND:
        raise VaelabError(f"{path} is a safetensors file that vaelab.data.encoded did not write; choose another "
                          "path (it is left as it is)")
    codes = tensors.get("x")
    if meta.get("fingerprint") != key or codes is None or len(codes) != rows:
        return None
    return codes


def _encode(model, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Posterior means of ``x`` in batches on the model's device, without gradients, in eval
    mode (restored after); float codes as float32 on the CPU. no_grad, not inference_mode:
    the codes are training data for a second stage, and autograd refuses inference tensors."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            parts = [_means(model, x[i:i + batch_size], device, param) for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts).contiguous()


def _means(model, xb: torch.Tensor, device: torch.device, param) -> torch.Tensor:
    xb = xb.to(device)
    if xb.is_floating_point() and param is not None and param.is_floating_point():
        xb = xb.to(param.dtype)
    if hasattr(model, "code_shape"):  # discrete codes (a VQ-VAE): the nearest codes' indices
        return model.codes(xb).cpu()
    mean = model.encode(xb).mean.cpu()
    return mean.float() if mean.is_floating_point() else mean
