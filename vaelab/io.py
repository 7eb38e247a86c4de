"""Saving and loading models: ``config.json`` + ``model.safetensors``, never pickle.

Registry-aware: a saved model is rebuilt from its registered name and checked config, and
its size is checked against the weights file before anything is allocated. The files
themselves are written and read through :mod:`vaelab.files` (atomic, strict).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import VaelabError, brief
from .files import atomic_write_bytes, atomic_write_json, read_json, read_safetensors, serialize
from .models.registry import as_trained, model_class

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def model_record(model) -> dict:
    return {"format_version": FORMAT_VERSION, "model": model.name, "config": model.config.to_dict()}


def record_config(record: dict, where: str):
    """The model class and its checked config from a ``config.json`` record (nothing built)."""
    version = record.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise VaelabError(f"{where}: unsupported format_version {version!r} "
                          f"(this vaelab reads {FORMAT_VERSION})")
    unknown = sorted(set(record) - {"format_version", "model", "config"})
    if unknown:
        raise VaelabError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: config, format_version, model")
    name = record.get("model")
    if not isinstance(name, str):
        raise VaelabError(f"{where}: 'model' must name a registered model")
    cls = model_class(name)
    config = record.get("config")
    if isinstance(config, dict):
        config = as_trained(cls, config)
    return cls, cls.Config.from_dict(config, where=f"{where} ({name} config)")


def state_bytes(cls, config) -> int:
    """Bytes of a model's state dict, found by building it on the meta device (no memory)."""
    with torch.device("meta"):
        probe = cls(config)
    return sum(t.numel() * t.element_size() for t in probe.state_dict().values())


def _mismatch(own: dict, tensors: dict, where) -> str | None:
    """What differs between a model's state dict and a file's tensors (None: they fit)."""
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    shapes = [k for k in own if k in tensors and tuple(own[k].shape) != tuple(tensors[k].shape)]
    if not (missing or extra or shapes):
        return None
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing[:3])}")
    if extra:
        parts.append(f"unexpected {', '.join(extra[:3])}")
    if shapes:
        k = shapes[0]
        parts.append(f"{k} has shape {list(tensors[k].shape)}, config needs {list(own[k].shape)}")
    return (f"weights in {where} do not match its config.json ({'; '.join(parts)}); "
            "the directory mixes files from different models")


def build_checked(cls, config, where: str, tensors: dict[str, torch.Tensor] | None = None):
    """Build a model from a checked config. With ``tensors``, the model is first built on the
    meta device (no memory) and compared with them, so a config.json declaring a huge model
    is refused before anything is allocated; constructor failures become one clear line."""
    try:
        if tensors is not None:
            try:
                with torch.device("meta"):
                    probe = cls(config)
            except Exception:  # a model that cannot be built on meta: its real build decides
                probe = None
            if probe is not None:
                if hasattr(probe, "adopt_shapes"):
                    probe.adopt_shapes(tensors)
                problem = _mismatch(probe.state_dict(), tensors, where)
                if problem:
                    raise VaelabError(problem)
        return cls(config)
    except VaelabError:
        raise
    except Exception as exc:  # a config that passes its checks but no layer can be built from
        raise VaelabError(f"cannot build a {cls.name} from the config for {where} "
                          f"({brief(exc, typed=True)}); fix config.json") from None


def model_from_record(record: dict, where: str):
    cls, config = record_config(record, where)
    return build_checked(cls, config, where)


def load_state(model, tensors: dict[str, torch.Tensor], where: Path) -> None:
    """Copy tensors into the model, refusing any missing, extra or mis-shaped entry."""
    if hasattr(model, "adopt_shapes"):
        model.adopt_shapes(tensors)
    problem = _mismatch(model.state_dict(), tensors, where)
    if problem:
        raise VaelabError(problem)
    model.load_state_dict(tensors)


def save(model, directory: str | os.PathLike) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (atomically each)."""
    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(directory / WEIGHTS_FILE,
                       serialize(state, {"format_version": str(FORMAT_VERSION), "model": model.name}))
    atomic_write_json(directory / CONFIG_FILE, model_record(model))
    return directory


_PICKLE_NAMES = ("model.pt", "model.pth", "checkpoint.pt", "checkpoint.pth", "pytorch_model.bin")


def load(directory: str | os.PathLike, device: str | torch.device = "cpu", prior: bool = True):
    """Load a model saved by :func:`save` or a training run directory, in eval mode.

    A VQ-VAE run with a prior trained by ``vaelab train-prior`` (``RUN/prior``) comes back
    with that prior attached, checked to belong to these weights (``prior=False``: without).

    Only ``config.json`` and ``model.safetensors`` are read; nothing is unpickled, so a
    hostile file can be refused but never run. The model is built only after its size
    was checked against the weights file.
    """
    directory = Path(directory)
    if (directory / STAGES_FILE).is_file():
        return load_stages(directory, device)
    if directory.is_file():
        kind = " (it holds a pickle, which vaelab never loads)" if directory.name.endswith(
            (".pt", ".pth", ".bin", ".pkl", ".ckpt")) else ""
        raise VaelabError(f"{directory} is a file{kind}; vaelab.load takes the directory holding "
                          "config.json and model.safetensors")
    if not directory.is_dir():
        raise VaelabError(f"model directory not found: {directory}")
    config_path = directory / CONFIG_FILE
    if not config_path.exists():
        hint = " (it holds a pickle; vaelab loads only config.json + model.safetensors)" if any(
            (directory / n).exists() for n in _PICKLE_NAMES) else ""
        raise VaelabError(f"no {CONFIG_FILE} in {directory}: not a vaelab model directory{hint}; "
                          "train one with `vaelab train` or write one with vaelab.save")
    cls, config = record_config(read_json(config_path, "model config"), str(config_path))
    weights = directory / WEIGHTS_FILE
    tensors, _ = read_safetensors(weights)
    model = build_checked(cls, config, weights, tensors)
    load_state(model, tensors, weights)
    model = model.to(device).eval()
    if prior and (directory / PRIOR_DIR / CONFIG_FILE).is_file() and hasattr(model, "code_shape"):
        from .models.vq_prior import attach

        attach(model, load(directory / PRIOR_DIR, device, prior=False), directory / PRIOR_DIR)
    return model


PRIOR_DIR = "prior"  # a second stage inside a run: the prior over a VQ-VAE's codes


STAGES_FILE = "stages.json"


class Stages(torch.nn.Module):
    """The models of a run of stages, in order, by stage name (``stages["m1"]``), for runs
    whose plan names no composite model."""

    def __init__(self, models: dict):
        super().__init__()
        self.stages = torch.nn.ModuleDict(models)

    def __getitem__(self, name: str):
        return self.stages[name]


def load_stages(directory: Path, device="cpu"):
    """A run of stages: every stage's model from its sub-directory, combined by the plan's
    composite class (``from_stages``) where it names one."""
    plan = read_json(directory / STAGES_FILE, "stage plan")
    entries = plan.get("stages")
    if not isinstance(entries, list) or not entries or not all(
            isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("dir"), str)
            and "/" not in e["dir"] and e["dir"] not in (".", "..") for e in entries):
        raise VaelabError(f"{directory / STAGES_FILE} does not list its stages (name and dir each); "
                          "restore it or load a stage's own directory")
    models = {e["name"]: load(directory / e["dir"], device) for e in entries}
    composite = plan.get("composite")
    if composite is None:
        return Stages(models).eval()
    cls = model_class(composite) if isinstance(composite, str) else None
    if cls is None or not hasattr(cls, "from_stages"):
        raise VaelabError(f"{directory / STAGES_FILE} names the composite {composite!r}, which cannot be built "
                          "from stages; load a stage's own directory")
    return cls.from_stages(models).to(device).eval()
