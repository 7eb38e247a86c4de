"""Training checkpoints: one safetensors file holding everything a resume needs.

Model weights, the optimizer state, every RNG state (torch, numpy, Python, the data
order and the binarization stream), the loop counters and, for a checkpoint taken in
the middle of an epoch, the epoch's running loss terms go into a single file, so a
checkpoint is replaced by one atomic rename. A SHA-256 over the tensors and the state
record is stored in the metadata and checked on load, so a damaged file is detected,
not trusted.

Before ``last.safetensors`` is replaced, the current one is kept as
``last.prev.safetensors`` (a hard link, so no copy), and a resume whose ``last`` fails
its checks falls back to it with a one-line warning.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from ..errors import VaelabError, brief
from ..files import WriteError, atomic_write_bytes, fsync_dir, read_safetensors, serialize
from ..io import load_state

FORMAT = "vaelab-checkpoint"
VERSION = "3"  # 3: one optimizer per phase; 2: the checksum covers the state record; 1 and 2 are still read
READABLE = ("1", "2", VERSION)


def _digest(tensors: dict[str, torch.Tensor], state_text: str | None) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k]
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    if state_text is not None:
        h.update(b"state")
        h.update(state_text.encode())
    return h.hexdigest()


def previous_path(path: Path) -> Path:
    """``last.safetensors`` -> ``last.prev.safetensors``: the checkpoint before the latest."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _flatten_optimizer(state: dict, prefix: str = "optim") -> tuple[dict[str, torch.Tensor], dict]:
    tensors, extra = {}, {"param_groups": state["param_groups"], "values": {}}
    for idx, entry in state["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}/{idx}/{name}"] = value.detach().cpu().contiguous()
            else:
                extra["values"][f"{idx}/{name}"] = value
    return tensors, extra


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], extra: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        idx, name = key.split("/", 1)
        state.setdefault(int(idx), {})[name] = value
    for key, value in extra["values"].items():
        idx, name = key.split("/", 1)
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": extra["param_groups"]}


def _keep_previous(path: Path) -> None:
    """Keep the current ``path`` as its ``.prev`` before it is replaced (link, else copy)."""
    if not path.exists():
        return
    prev = previous_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{prev.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.close(fd)
        os.unlink(tmp)
        try:
            os.link(path, tmp)
        except OSError:  # file systems without hard links
            shutil.copyfile(path, tmp)
        os.replace(tmp, prev)
    except BaseException as exc:  # a second Ctrl-C in here too: no temporary left behind
        Path(tmp).unlink(missing_ok=True)
        if not isinstance(exc, OSError):
            raise
        raise WriteError(f"cannot keep {path} as {prev.name}: {exc.strerror or brief(exc)}; "
                         "the checkpoint itself is unchanged") from None
    fsync_dir(path.parent)


def _optimizers(optimizer) -> dict:
    """Phase name -> optimizer; a lone optimizer is the one phase "model"."""
    return optimizer if isinstance(optimizer, dict) else {"model": optimizer}


def save_checkpoint(path: Path, model, optimizer, generators: dict[str, torch.Generator | torch.Tensor],
                    counters: dict, extra: dict[str, torch.Tensor] | None = None,
                    extra_state: dict | None = None, keep_previous: bool = False) -> None:
    """Write one checkpoint atomically. ``optimizer`` is one optimizer or a dict phase name ->
    optimizer (every one is saved); ``generators`` maps names to generators or to saved
    generator states; ``extra`` tensors and ``extra_state`` ride along (mid-epoch data)."""
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_extra = {}
    for phase, opt in _optimizers(optimizer).items():
        phase_tensors, opt_extra[phase] = _flatten_optimizer(opt.state_dict(), f"optim/{phase}")
        tensors.update(phase_tensors)
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng/cuda"] = torch.cuda.get_rng_state()
    for name, g in generators.items():
        tensors[f"rng/{name}"] = g if torch.is_tensor(g) else g.get_state()
    for name, t in (extra or {}).items():
        tensors[f"extra/{name}"] = t.detach().cpu().contiguous()
    np_state = np.random.get_state()
    tensors["rng/numpy"] = torch.from_numpy(np_state[1].astype(np.int64))
    py_state = random.getstate()
    state = {
        "counters": counters,
        "optimizers": opt_extra,
        "numpy_rng": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python_rng": [py_state[0], list(py_state[1]), py_state[2]],
        **({"extra": extra_state} if extra_state else {}),
    }
    state_text = json.dumps(state)
    meta = {"format": FORMAT, "version": VERSION, "state": state_text, "sha256": _digest(tensors, state_text)}
    data = serialize(tensors, meta)
    if keep_previous:
        _keep_previous(path)
    atomic_write_bytes(path, data)


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and verify a checkpoint; raises VaelabError if it is damaged."""
    tensors, meta = read_safetensors(path, "checkpoint")
    if meta.get("format") != FORMAT:
        raise VaelabError(f"{path} is not a vaelab training checkpoint")
    version, state_text = meta.get("version"), meta.get("state")
    if version not in READABLE:
        raise VaelabError(f"checkpoint {path} has version {version!r}; this vaelab reads {', '.join(READABLE)}")
    if meta.get("sha256") != _digest(tensors, state_text if version != "1" else None):
        raise VaelabError(f"checkpoint {path} is corrupted (checksum mismatch)")
    try:
        state = json.loads(state_text)
    except (TypeError, ValueError, RecursionError):
        raise VaelabError(f"checkpoint {path} has no readable state record") from None
    if not isinstance(state, dict) or not isinstance(state.get("counters"), dict):
        raise VaelabError(f"checkpoint {path} has no readable state record")
    if "optimizer" in state:  # versions 1 and 2: one optimizer, the phase "model"
        state["optimizers"] = {"model": state.pop("optimizer")}
        tensors = {f"optim/model/{k[6:]}" if k.startswith("optim/") else k: v for k, v in tensors.items()}
    return tensors, state


def read_resume_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict, Path]:
    """The checkpoint to resume from: ``path``, or its ``.prev`` if ``path`` is damaged or
    missing (a one-line warning says so; the damaged file is kept as ``*.damaged``)."""
    prev = previous_path(path)
    try:
        tensors, state = read_checkpoint(path)
        return tensors, state, path
    except VaelabError as exc:
        if not prev.exists():
            raise
        problem = str(exc)
    try:
        tensors, state = read_checkpoint(prev)
    except VaelabError as exc:
        raise VaelabError(f"{problem}; the previous checkpoint is unusable too ({exc})") from None
    print(f"warning: {problem}; resuming from the previous checkpoint {prev.name} "
          f"(epoch {state['counters'].get('epoch')})", file=sys.stderr, flush=True)
    if path.exists():  # out of the way, so the next save does not rotate it over the good one
        os.replace(path, path.with_name(path.name + ".damaged"))
        fsync_dir(path.parent)
    return tensors, state, prev


def restore_checkpoint(tensors: dict[str, torch.Tensor], state: dict, model, optimizer,
                       generators: dict[str, torch.Generator], where: Path = Path("checkpoint")) -> dict:
    """Put model, optimizers (one, or a dict phase -> optimizer) and RNG states back; returns
    the loop counters."""
    model_state = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    load_state(model, model_state, where)
    optimizers, saved = _optimizers(optimizer), state.get("optimizers")
    saved = sorted(saved) if isinstance(saved, dict) else []
    if sorted(optimizers) != saved:
        raise VaelabError(f"checkpoint {where} holds the optimizers of phases {saved}, this model trains "
                          f"{sorted(optimizers)}; resume with the model it was written by")
    try:
        for phase, opt in optimizers.items():
            prefix = f"optim/{phase}/"
            phase_tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            opt.load_state_dict(_unflatten_optimizer(phase_tensors, state["optimizers"][phase]))
        torch.set_rng_state(tensors["rng/torch"])
        if "rng/cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng/cuda"])
        for name, g in generators.items():
            g.set_state(tensors[f"rng/{name}"])
        kind, pos, has_gauss, cached = state["numpy_rng"]
        np.random.set_state((kind, tensors["rng/numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
        version, internal, gauss = state["python_rng"]
        random.setstate((version, tuple(internal), gauss))
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
        raise VaelabError(f"checkpoint {where} does not fit this run ({brief(exc, typed=True)}); "
                          "resume with the settings it was written with") from None
    return state["counters"]
