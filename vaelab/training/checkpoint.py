"""Training checkpoints: one safetensors file holding everything a resume needs.

Model weights, the optimizer state, every RNG state (torch, numpy, Python, the data
order and the binarization stream) and the loop counters go into a single file, so a
checkpoint is replaced by one atomic rename. A SHA-256 over the tensors is stored in
the metadata and checked on load, so a damaged file is detected, not trusted.
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save as st_save

from ..errors import VaelabError
from ..io import atomic_write_bytes, load_state, read_safetensors

FORMAT = "vaelab-checkpoint"
VERSION = "1"


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k]
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, extra = {}, {"param_groups": state["param_groups"], "values": {}}
    for idx, entry in state["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim/{idx}/{name}"] = value.detach().cpu().contiguous()
            else:
                extra["values"][f"{idx}/{name}"] = value
    return tensors, extra


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], extra: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, idx, name = key.split("/", 2)
        state.setdefault(int(idx), {})[name] = value
    for key, value in extra["values"].items():
        idx, name = key.split("/", 1)
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": extra["param_groups"]}


def save_checkpoint(path: Path, model, optimizer, generators: dict[str, torch.Generator],
                    counters: dict) -> None:
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_tensors, opt_extra = _flatten_optimizer(optimizer.state_dict())
    tensors.update(opt_tensors)
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng/cuda"] = torch.cuda.get_rng_state()
    for name, g in generators.items():
        tensors[f"rng/{name}"] = g.get_state()
    np_state = np.random.get_state()
    tensors["rng/numpy"] = torch.from_numpy(np_state[1].astype(np.int64))
    py_state = random.getstate()
    state = {
        "counters": counters,
        "optimizer": opt_extra,
        "numpy_rng": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python_rng": [py_state[0], list(py_state[1]), py_state[2]],
    }
    meta = {"format": FORMAT, "version": VERSION, "state": json.dumps(state),
            "sha256": _digest(tensors)}
    atomic_write_bytes(path, st_save(tensors, metadata=meta))


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and verify a checkpoint; raises VaelabError if it is damaged."""
    tensors, meta = read_safetensors(path, "checkpoint")
    if meta.get("format") != FORMAT:
        raise VaelabError(f"{path} is not a vaelab training checkpoint")
    if meta.get("sha256") != _digest(tensors):
        raise VaelabError(f"checkpoint {path} is corrupted (checksum mismatch)")
    try:
        state = json.loads(meta["state"])
    except (KeyError, json.JSONDecodeError):
        raise VaelabError(f"checkpoint {path} has no readable state record") from None
    return tensors, state


def restore_checkpoint(tensors: dict[str, torch.Tensor], state: dict, model, optimizer,
                       generators: dict[str, torch.Generator]) -> dict:
    """Put model, optimizer and RNG states back; returns the loop counters."""
    model_state = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    load_state(model, model_state, Path("checkpoint"))
    opt = {k: v for k, v in tensors.items() if k.startswith("optim/")}
    optimizer.load_state_dict(_unflatten_optimizer(opt, state["optimizer"]))
    torch.set_rng_state(tensors["rng/torch"])
    if "rng/cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng/cuda"])
    for name, g in generators.items():
        g.set_state(tensors[f"rng/{name}"])
    kind, pos, has_gauss, cached = state["numpy_rng"]
    np.random.set_state((kind, tensors["rng/numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    return state["counters"]
