"""Output files named by the user (``-o x.jpg``, ``--gif x.gif``): the format is the one the
extension names, and a file goes only into a directory that exists. Checked before any work,
so a typo in a path costs nothing; a run directory (``train --out``) is created as before."""
from __future__ import annotations

import io
import os
from pathlib import Path

from .errors import VaelabError

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
IMAGE_SUFFIXES = ".png, .jpg, .jpeg or .webp"
# The options of each command that name an image file, and the other files it writes.
IMAGE_OUTPUTS = {"sample": ("output",), "reconstruct": ("output",), "traverse": ("output",),
                 "interpolate": ("output",), "manifold": ("output",), "scatter": ("output",),
                 "analogies": ("output",), "edit": ("output",), "curves": ("output",)}
OTHER_OUTPUTS = {"traverse": ("gif",), "scatter": ("save_codes",), "report": ("output",), "encode": ("output",)}
FLAGS = {"output": "-o", "gif": "--gif", "save_codes": "--save-codes"}


def image_format(path: str | os.PathLike, flag: str = "-o") -> str:
    """Pillow's name of the format ``path``'s extension names; an unknown one is refused."""
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_FORMATS:
        named = f"its extension {suffix}" if suffix else "it has no extension"
        raise VaelabError(f"{flag} {path}: {named}; name an image file ending in {IMAGE_SUFFIXES}")
    return IMAGE_FORMATS[suffix]


def check_directory(path: str | os.PathLike, flag: str = "-o") -> None:
    """A file is written into a directory that exists: a mistyped directory is not created."""
    parent = Path(path).parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise VaelabError(f"{flag} {path}: the directory {parent} {what}; create it first or choose another")


def check_outputs(command: str, args) -> None:
    """Every output a command's arguments name, checked before the command does any work."""
    for key in IMAGE_OUTPUTS.get(command, ()):
        path = getattr(args, key, None)
        if path is not None:
            image_format(path, FLAGS[key])
            check_directory(path, FLAGS[key])
    for key in OTHER_OUTPUTS.get(command, ()):
        path = getattr(args, key, None)
        if path is not None:
            if key == "gif" and Path(path).suffix.lower() != ".gif":
                raise VaelabError(f"--gif {path}: an animation is written as GIF; name a file ending in .gif")
            check_directory(path, FLAGS[key])


def image_bytes(img, path: str | os.PathLike) -> bytes:
    """A PIL image encoded in the format ``path`` names (JPEG has no alpha: RGB or grey)."""
    fmt = image_format(path)
    if fmt == "JPEG" and img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    return buf.getvalue()


def png_as(data: bytes, path: str | os.PathLike) -> bytes:
    """PNG bytes (a matplotlib figure) re-encoded in the format ``path`` names."""
    if image_format(path) == "PNG":
        return data
    from PIL import Image

    return image_bytes(Image.open(io.BytesIO(data)), path)
