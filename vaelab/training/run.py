"""``vaelab.train``: dataset spec + model name (or model) + settings -> a run directory."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..data import Dataset, load_dataset, split_validation
from ..errors import VaelabError
from ..io import read_run_record, state_bytes
from ..models.base import Model
from ..models.registry import build, model_class
from .trainer import TrainConfig, TrainResult, fit


def _recorded(run_dir: Path) -> dict | None:
    """The run record to continue; None where there is no run yet (the trainer starts one)."""
    path = run_dir / "run.json"
    return read_run_record(path, "--resume: run record") if path.exists() else None


def _check_memory(name: str, settings: dict) -> None:
    """Refuse a model whose weights, gradients and Adam state exceed this machine's memory,
    before anything is allocated (its size is measured on the meta device)."""
    cls = model_class(name)
    config = cls.Config.from_dict(settings, where=f"{name} config")
    try:
        need = 4 * state_bytes(cls, config)
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except Exception:  # no meta build or no sysconf here: the real build decides
        return
    if need > ram:
        raise VaelabError(f"a {name} with these settings needs about {need / 2**30:.1f} GiB for weights, "
                          f"gradients and optimizer state, more than this machine's {ram / 2**30:.1f} GiB; "
                          "choose smaller layer sizes")


def train_config(model: str | Model | type, settings: dict | None = None) -> TrainConfig:
    """``settings`` over the model family's ``train_defaults`` over TrainConfig's defaults,
    so ``linear-ae`` trains with the schedule that reaches PCA's subspace unless told otherwise."""
    cls = model_class(model) if isinstance(model, str) else model if isinstance(model, type) else type(model)
    return TrainConfig.from_dict({**getattr(cls, "train_defaults", {}), **(settings or {})},
                                 where="training settings")


def train(model: str | Model, data: str | Dataset, out: str | os.PathLike, *,
          model_config: dict | None = None, config: TrainConfig | dict | None = None,
          val_data: Dataset | None = None, data_dir: str | os.PathLike | None = None,
          resume: bool = False, progress: bool = True) -> TrainResult:
    """Train a model on a dataset and write the run directory ``out``.

    ``model`` is a registered name (built with ``model_config``; ``input_shape`` comes
    from the data) or a model instance. ``data`` is a dataset spec (``"mnist"``,
    ``"folder:PATH"``, ...) or a :class:`~vaelab.data.Dataset`. A validation set is
    carved from the training split by seed unless ``val_data`` is given. With
    ``resume=True`` a model name and settings left out are taken from the run's
    ``run.json``, so ``train("vae", "mnist", out, resume=True)`` continues a run. Settings
    left out of ``config`` (a dict or None) take the model family's ``train_defaults``.
    """
    out = Path(out)
    recorded = _recorded(out) if resume else None
    if recorded and config is None:
        config = TrainConfig.from_dict(recorded["train"])
    elif not isinstance(config, TrainConfig):
        config = train_config(model, config)
    ds = load_dataset(data, "train", data_dir=data_dir) if isinstance(data, str) else data
    if isinstance(model, str):
        if recorded and model_config is None:
            if recorded.get("model") != model:
                raise VaelabError(f"--resume: {out} holds a '{recorded.get('model')}' run, not '{model}'")
            model_config = dict(recorded["config"])
        settings = {"input_shape": list(ds.shape), **(model_config or {})}
        _check_memory(model, settings)
        torch.manual_seed(config.seed)  # the initial weights follow the run's seed too
        model = build(model, **settings)
    elif model_config is not None:
        raise VaelabError("model_config is only used with a model name, not a built model")
    if tuple(model.input_shape) != tuple(ds.shape):
        raise VaelabError(f"the model expects images of shape {list(model.input_shape)}, "
                          f"the data has {list(ds.shape)}")
    if val_data is None and config.val_size > 0:
        train_ds, val_ds = split_validation(ds, config.val_size if config.val_size < 1 else int(config.val_size),
                                            seed=config.seed)
    else:
        train_ds, val_ds = ds, val_data
    record = {"spec": data if isinstance(data, str) else ds.name, "split": "train",
              "n_train": len(train_ds), "n_val": 0 if val_ds is None else len(val_ds),
              "shape": list(ds.shape)}
    return fit(model, train_ds.x, train_ds.y, None if val_ds is None else val_ds.x,
               None if val_ds is None else val_ds.y, config, out, resume=resume,
               data_record=record, progress=progress)
