"""What kind of data a Dataset holds and what kind a model reads: images, text or audio.

A model declares ``reads`` ("text", "audio"; every other family reads images); a Dataset's
kind follows from its front end. Training and the CLI refuse a mismatch in one line, before
any family-specific check, so an image model is never handed word ids or spectrograms.
"""
from __future__ import annotations

from ..errors import VaelabError

KINDS = {"text": "text", "log-mel": "audio"}  # front_end["kind"] -> the data's kind
WHAT = {"images": ("images", "image data (mnist, folder:PATH, npy:PATH)"),
        "text": ("sentences", "text data (--data ptb or text:PATH)"),
        "audio": ("speech", "audio (--data fsdd or wav:FOLDER)")}


def data_kind(ds) -> str:
    """What a Dataset holds: "images", "text" or "audio"."""
    front_end = getattr(ds, "front_end", None) or {}
    return KINDS.get(front_end.get("kind"), "images")


def check_reads(model, ds, name: str | None = None) -> None:
    """One line when ``model`` (a model or its class) is given data of a kind it does not read."""
    wants, has = getattr(model, "reads", "images"), data_kind(ds)
    if wants == has:
        return
    name = name or getattr(model, "name", type(model).__name__)
    raise VaelabError(f"'{name}' reads {WHAT[wants][0]}, but {ds.name} holds {WHAT[has][0]}; give it "
                      f"{WHAT[wants][1]}, or train a model made for {WHAT[has][0]}")
