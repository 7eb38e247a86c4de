"""Saving and loading baselines: ``baseline.json`` + ``baseline.safetensors``, never pickle.

Baselines are not registered models (``vaelab.load`` reads ``config.json``), so they get
their own file names; the JSON names the baseline kind and its settings, the safetensors
file holds every array. Both are written atomically through :mod:`vaelab.files`.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save as st_save

from ..errors import VaelabError
from ..files import atomic_write_bytes, atomic_write_json, read_json, read_safetensors

FORMAT_VERSION = 1
CONFIG_FILE = "baseline.json"
WEIGHTS_FILE = "baseline.safetensors"


def save_baseline(directory: str | os.PathLike, kind: str, config: dict, tensors: dict[str, torch.Tensor]) -> Path:
    """Write the arrays first, then the JSON, so a complete JSON always has its arrays."""
    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(directory / WEIGHTS_FILE, st_save(state, metadata={"baseline": kind}))
    atomic_write_json(directory / CONFIG_FILE, {"format_version": FORMAT_VERSION, "baseline": kind, "config": config})
    return directory


def read_baseline(directory: str | os.PathLike, kind: str | None = None) -> tuple[str, dict, dict[str, torch.Tensor]]:
    """(kind, config, tensors) of a saved baseline; ``kind`` set means it must be that kind."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise VaelabError(f"no {CONFIG_FILE} in {directory}: not a saved baseline; write one with the baseline's save()")
    record = read_json(path, "baseline config")
    if record.get("format_version") != FORMAT_VERSION:
        raise VaelabError(f"{path}: unsupported format_version {record.get('format_version')!r} (this vaelab reads {FORMAT_VERSION})")
    found = record.get("baseline")
    if kind is not None and found != kind:
        raise VaelabError(f"{directory} holds a {found!r} baseline, not {kind!r}; load it with load_baseline()")
    config = record.get("config")
    if not isinstance(config, dict):
        raise VaelabError(f"{path}: 'config' must be a JSON object; re-save the baseline")
    tensors, _ = read_safetensors(directory / WEIGHTS_FILE, "baseline arrays")
    return found, config, tensors


def require(tensors: dict[str, torch.Tensor], names: tuple[str, ...], where) -> None:
    missing = [n for n in names if n not in tensors]
    if missing:
        raise VaelabError(f"{where} lacks array(s) {', '.join(missing)}; the directory mixes files from different baselines")


def rows(x, what: str = "x") -> torch.Tensor:
    """Examples as rows: an (N, ...) array or tensor viewed as (N, D), dtype kept (no copy
    where possible, so 60000×784 data is converted to float64 block by block, not at once)."""
    x = torch.as_tensor(x)
    if x.ndim < 2:
        raise VaelabError(f"{what} must be (N, D) or (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x[0].numel() == 0:
        raise VaelabError(f"{what} holds no data (shape {tuple(x.shape)})")
    if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.bool, torch.int32, torch.int64)):
        raise VaelabError(f"{what} has dtype {x.dtype}; pass float pixels")
    return x.reshape(x.shape[0], -1)
