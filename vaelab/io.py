"""Saving and loading models: ``config.json`` + ``model.safetensors``, never pickle.

Every file is written atomically (temporary file, flush, fsync, rename) so an
interrupted write leaves the previous good file in place.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import VaelabError
from .models.registry import model_class

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise VaelabError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise VaelabError(f"cannot read {what} {path}: {exc.strerror}") from None


def read_json(path: Path, what: str) -> dict:
    data = _read_bytes(path, what)
    try:
        obj = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VaelabError(f"{what} {path} is not valid JSON ({exc}); restore or re-create it") from None
    if not isinstance(obj, dict):
        raise VaelabError(f"{what} {path} must hold a JSON object")
    return obj


def read_safetensors(path: Path, what: str = "weights file") -> tuple[dict[str, torch.Tensor], dict]:
    """Read tensors and metadata; safetensors parses a bounded header and never runs code."""
    data = _read_bytes(path, what)
    try:
        tensors = st_load(data)  # validates the header against the file size
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + header_len]).get("__metadata__") or {}
    except (SafetensorError, ValueError, OverflowError, UnicodeDecodeError) as exc:
        # Sniff only after parsing failed: a valid file's 8-byte header length can start
        # with 0x80 (1 file in 256), which is also how pickles start.
        if data[:1] == b"\x80" or data[:2] == b"PK":
            raise VaelabError(f"{path} is a pickle/zip file, not safetensors; vaelab never unpickles "
                              "(re-save the weights with safetensors)") from None
        raise VaelabError(f"{what} {path} is not a valid safetensors file ({exc})") from None
    return tensors, meta


def model_record(model) -> dict:
    return {"format_version": FORMAT_VERSION, "model": model.name, "config": model.config.to_dict()}


def model_from_record(record: dict, where: str):
    version = record.get("format_version")
    if version != FORMAT_VERSION:
        raise VaelabError(f"{where}: unsupported format_version {version!r} "
                          f"(this vaelab reads {FORMAT_VERSION})")
    unknown = sorted(set(record) - {"format_version", "model", "config"})
    if unknown:
        raise VaelabError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: config, format_version, model")
    name = record.get("model")
    if not isinstance(name, str):
        raise VaelabError(f"{where}: 'model' must name a registered model")
    cls = model_class(name)
    return cls(cls.Config.from_dict(record.get("config"), where=f"{where} ({name} config)"))


def load_state(model, tensors: dict[str, torch.Tensor], where: Path) -> None:
    """Copy tensors into the model, refusing any missing, extra or mis-shaped entry."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    shapes = [k for k in own if k in tensors and tuple(own[k].shape) != tuple(tensors[k].shape)]
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}")
        if extra:
            parts.append(f"unexpected {', '.join(extra[:3])}")
        if shapes:
            k = shapes[0]
            parts.append(f"{k} has shape {list(tensors[k].shape)}, config needs {list(own[k].shape)}")
        raise VaelabError(f"weights in {where} do not match its config.json ({'; '.join(parts)}); "
                          "the directory mixes files from different models")
    model.load_state_dict(tensors)


def save(model, directory: str | os.PathLike) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (atomically each)."""
    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(directory / WEIGHTS_FILE,
                       st_save(state, metadata={"format_version": str(FORMAT_VERSION), "model": model.name}))
    atomic_write_json(directory / CONFIG_FILE, model_record(model))
    return directory


def load(directory: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load a model saved by :func:`save` or a training run directory, in eval mode."""
    directory = Path(directory)
    if not directory.is_dir():
        raise VaelabError(f"model directory not found: {directory}")
    config_path = directory / CONFIG_FILE
    if not config_path.exists():
        hint = " (it holds a pickle; vaelab loads only config.json + model.safetensors)" if any(
            (directory / n).exists() for n in ("model.pt", "checkpoint.pt", "model.pth")) else ""
        raise VaelabError(f"no {CONFIG_FILE} in {directory}: not a vaelab model directory{hint}; "
                          "train one with `vaelab train` or write one with vaelab.save")
    model = model_from_record(read_json(config_path, "model config"), str(config_path))
    tensors, _ = read_safetensors(directory / WEIGHTS_FILE)
    load_state(model, tensors, directory / WEIGHTS_FILE)
    return model.to(device).eval()
