"""Files, written and read safely: atomic writes, strict JSON / TOML / safetensors readers.

The lowest layer of vaelab's storage: it knows files, not models (it imports nothing from
``models/`` or ``training/``), so data, training, baselines and pictures can all use it.

Every file is written atomically (temporary file, flush, fsync, rename, fsync of the
directory) so an interrupted write leaves the previous good file in place. Every reader
here treats its file as hostile: sizes are checked against the file before anything is
allocated, and every failure is one :class:`~vaelab.errors.VaelabError` naming the file.

Test hook: ``VAELAB_TEST_WRITE_DELAY=<seconds>`` makes every atomic write pause halfway
through writing its temporary file, so crash tests (``benchmarks/soak.py``) can kill a
process in the middle of a checkpoint write. It changes nothing else.
"""
from __future__ import annotations

import errno
import json
import math
import os
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import VaelabError, brief

WRITE_DELAY_ENV = "VAELAB_TEST_WRITE_DELAY"
_INT_RANGE = (-(2**63), 2**64)  # what 64-bit settings (seeds, sizes) can hold


class WriteError(VaelabError):
    """A file could not be written (disk full, read-only, no permission); the previous
    version of the file, if any, is unchanged."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_hint(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free disk space or choose another directory"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "choose a writable directory"
    return "check the disk and the directory"


def fsync_dir(directory: Path) -> None:
    """Make renames and new names in ``directory`` durable (a no-op where unsupported)."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _write_fd(fd: int, data: bytes) -> None:
    """The one place atomic writes put bytes on disk (tests patch it to simulate a full disk)."""
    with os.fdopen(fd, "wb") as f:
        delay = float(os.environ.get(WRITE_DELAY_ENV) or 0)
        if delay > 0:  # test hook: widen the window in which a kill lands mid-write
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(delay)
            f.write(data[len(data) // 2:])
        else:
            f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` holds either the old or the new bytes,
    never a mix, even if the process is killed or the machine loses power."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        _write_fd(fd, data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        kept = "the previous file is unchanged" if path.exists() else "nothing was written"
        raise WriteError(f"cannot write {path}: {exc.strerror or brief(exc)}; {kept}; {_write_hint(exc)}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    fsync_dir(path.parent)  # make the rename itself durable


def serialize(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """safetensors bytes with the metadata keys in sorted order. safetensors writes its
    metadata map in a per-process random order, so equal content would give different
    bytes; sorting makes every saved file a function of its content alone."""
    data = st_save(tensors, metadata=metadata)
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def remove_stale_temporaries(directory: Path, names) -> None:
    """Delete the ``.<name>.*.tmp`` files that a killed writer of ``names`` left in ``directory``
    (only those: the directory may hold other people's files)."""
    prefixes = tuple(f".{name}." for name in names)
    try:
        for p in directory.iterdir():
            if p.name.startswith(prefixes) and p.name.endswith(".tmp") and p.is_file():
                p.unlink(missing_ok=True)
    except OSError:
        pass


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise VaelabError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise VaelabError(f"{what} {path} is a directory, not a file") from None
    except OSError as exc:
        raise VaelabError(f"cannot read {what} {path}: {exc.strerror}") from None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _check_numbers(obj, where: str) -> None:
    """Refuse NaN/Infinity and integers beyond 64 bits anywhere in a parsed settings file."""
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise VaelabError(f"{where} holds the non-finite number {value}; write a finite value")
        elif isinstance(value, int) and not isinstance(value, bool) and not _INT_RANGE[0] <= value < _INT_RANGE[1]:
            raise VaelabError(f"{where} holds the integer {str(value)[:20]}..., beyond 64 bits; write a smaller value")


def read_json(path: Path, what: str) -> dict:
    """A JSON object from ``path``: strict JSON (no NaN/Infinity), 64-bit integers."""
    path = Path(path)
    data = _read_bytes(path, what)
    try:
        obj = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise VaelabError(f"{what} {path} is not valid JSON ({brief(exc)}); restore or re-create it") from None
    except RecursionError:
        raise VaelabError(f"{what} {path} is nested too deeply to be a settings file; restore or re-create it") from None
    if not isinstance(obj, dict):
        raise VaelabError(f"{what} {path} must hold a JSON object")
    _check_numbers(obj, f"{what} {path}")
    return obj


def read_settings(path: str | os.PathLike, what: str = "settings file") -> dict:
    """A settings file: ``.toml`` as TOML, anything else as JSON; one table of settings."""
    path = Path(path)
    if path.suffix.lower() != ".toml":
        return read_json(path, what)
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise VaelabError(f"{what} {path}: TOML files need Python 3.11 or newer; use a JSON file") from None
    data = _read_bytes(path, what)
    try:
        obj = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise VaelabError(f"{what} {path} is not UTF-8 text ({brief(exc)}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise VaelabError(f"{what} {path} is not valid TOML ({brief(exc)})") from None
    except RecursionError:
        raise VaelabError(f"{what} {path} is nested too deeply to be a settings file") from None
    _check_numbers(obj, f"{what} {path}")
    return obj


def _looks_like_pickle(data: bytes) -> bool:
    return data[:1] == b"\x80" or data[:2] == b"PK"


def read_safetensors(path: Path, what: str = "weights file") -> tuple[dict[str, torch.Tensor], dict]:
    """Read tensors and metadata; safetensors parses a bounded header and never runs code.

    The header's declared sizes and offsets are checked against the file's length before
    any tensor is built, so a file cannot make us allocate more than it holds.
    """
    path = Path(path)
    data = _read_bytes(path, what)
    try:
        tensors = st_load(data)  # validates the header against the file size
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + header_len]).get("__metadata__") or {}
    except Exception as exc:  # safetensors, json and torch each raise their own types
        # Sniff only after parsing failed: a valid file's 8-byte header length can start
        # with 0x80 (1 file in 256), which is also how pickles start.
        if _looks_like_pickle(data):
            raise VaelabError(f"{path} is a pickle/zip file, not safetensors; vaelab never unpickles "
                              "(re-save the weights with safetensors)") from None
        raise VaelabError(f"{what} {path} is not a valid safetensors file ({brief(exc)})") from None
    return tensors, meta


def read_run_record(path: str | os.PathLike, what: str = "run record") -> dict:
    """``run.json`` of a training run, with the type of every field checked."""
    path = Path(path)
    record = read_json(path, what)
    kinds = {"vaelab_version": str, "format_version": int, "model": str, "config": dict,
             "train": dict, "resolved": dict, "data": dict}
    unknown = sorted(set(record) - set(kinds))
    if unknown:
        raise VaelabError(f"{what} {path}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(kinds))}")
    for key in ("model", "config", "train"):
        if key not in record:
            raise VaelabError(f"{what} {path} lacks '{key}'; it was not written by vaelab train")
    for key, kind in kinds.items():
        if key in record and (not isinstance(record[key], kind) or isinstance(record[key], bool)):
            raise VaelabError(f"{what} {path}: '{key}' must be a JSON {kind.__name__.replace('dict', 'object')}")
    return record
