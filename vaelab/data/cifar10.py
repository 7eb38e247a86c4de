"""CIFAR-10 from the lossy JPEG copies of its training and test sets.

    <data_dir>/cifar10-train-jpeg/cifar10-train-jpeg.tar.gz   train/<class>/<nnnn>.jpg, 50,000
    <data_dir>/cifar10-test-jpeg/cifar10-test-jpeg.tar.gz     test/<class>/<nnnn>.jpg, 10,000

These are JPEG (quality 75, 4:2:0) re-encodings of CIFAR-10, not the canonical pixels: the
images are smoothed and the canonical row order is lost. Relative comparisons between models
on them are sound; a bits/dim or reconstruction error measured on them is **not** comparable
with published CIFAR-10 numbers. Rows come in class order (the canonical class indices,
airplane = 0 … truck = 9), then by file number.

Each archive is checked by SHA-256 before it is read, so a figure always refers to the same
pixels. Decoding 60,000 JPEGs takes a while, so the decoded uint8 array is kept in the user
cache (``$XDG_CACHE_HOME/vaelab/decoded``, named by the archive's digest) and read from there
afterwards; a damaged cache file is decoded again, never trusted.
"""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import numpy as np

from vaelab.errors import VaelabError
from vaelab.files import atomic_write_bytes

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
ARCHIVES = {  # split: (folder, file, sha256, rows)
    "train": ("cifar10-train-jpeg", "cifar10-train-jpeg.tar.gz",
              "e23a05ee43cf7e36fa212a9774e47d68233c1595ee3ed2b5c790b00c6767fb31", 50000),
    "test": ("cifar10-test-jpeg", "cifar10-test-jpeg.tar.gz",
             "2f78efc30b2c0bb10b3c9e22a3c9a788ae74677a6e367fe5703461199ffe67e0", 10000),
}


def load_cifar10(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images N×3×32×32 uint8, labels N int64) of ``split`` from ``data_dir``."""
    folder, name, sha256, rows = ARCHIVES[split]
    path = data_dir / folder / name
    if not path.is_file():
        raise VaelabError(f"CIFAR-10 archive {path} is missing; there is no verified download source for this JPEG "
                          f"copy, so place {name} (sha256 {sha256[:12]}…) there by hand")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise VaelabError(f"{path} is not the expected archive (sha256 {digest[:12]}…, expected {sha256[:12]}…); "
                          "replace it with the original file")
    cached = _cache_path(digest)
    images = _read_cache(cached, rows)
    if images is None:
        images = _decode_archive(path, split, rows)
        buffer = io.BytesIO()
        np.save(buffer, images, allow_pickle=False)
        try:
            atomic_write_bytes(cached, buffer.getvalue())
        except OSError:
            pass  # a read-only cache only costs the next load its decoding time
    labels = np.repeat(np.arange(len(CLASSES), dtype=np.int64), rows // len(CLASSES))
    return images, labels


def _cache_path(digest: str) -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "vaelab" / "decoded" / f"cifar10-{digest[:24]}.npy"


def _read_cache(path: Path, rows: int) -> np.ndarray | None:
    try:
        images = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return images if images.shape == (rows, 3, 32, 32) and images.dtype == np.uint8 else None


def _decode_archive(path: Path, split: str, rows: int) -> np.ndarray:
    """Every ``<split>/<class>/<nnnn>.jpg`` of the archive, in class then file order."""
    from PIL import Image

    per_class = rows // len(CLASSES)
    images = np.zeros((rows, 32, 32, 3), dtype=np.uint8)
    seen = np.zeros(rows, dtype=bool)
    with tarfile.open(path) as archive:
        for member in archive:
            if not member.isfile() or not member.name.endswith(".jpg"):
                continue
            row = _row(member.name, split, per_class)
            with Image.open(archive.extractfile(member)) as image:
                images[row] = np.asarray(image.convert("RGB"))
            seen[row] = True
    if not seen.all():
        raise VaelabError(f"{path} lacks {int((~seen).sum())} of its {rows} images; replace it with the original file")
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def _row(name: str, split: str, per_class: int) -> int:
    parts = name.split("/")
    try:
        assert len(parts) == 3 and parts[0] == split and parts[1] in CLASSES
        number = int(parts[2].removesuffix(".jpg"))
        assert 0 <= number < per_class
    except (AssertionError, ValueError):
        raise VaelabError(f"unexpected file {name!r} in the CIFAR-10 {split} archive; replace it with the "
                          "original file") from None
    return CLASSES.index(parts[1]) * per_class + number
