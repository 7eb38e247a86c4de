"""``vaelab.train``: dataset spec + model name (or model) + settings -> a run directory."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from ..data import Dataset, has_test_split, labelled_subset, load_dataset, split_test, split_validation
from ..data.sources import DATASETS, OWN_VALIDATION, TEST_SPLIT_SEED, canonical_spec, training_images_of
from ..data.kinds import check_reads
from ..errors import VaelabError, VaelabWarning
from ..files import read_run_record
from ..io import state_bytes
from ..models.base import Model
from ..models.registry import as_trained, build, model_class
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


def _hold_out_test(data: str | Dataset, ds: Dataset, fraction: float) -> tuple[Dataset, dict]:
    """Carve the ``test_fraction`` test split off data that has none, and the record of it
    that lets ``vaelab eval`` and ``reconstruct`` rebuild exactly that split."""
    if not fraction:
        return ds, {}
    if isinstance(data, str) and has_test_split(data):
        raise VaelabError(f"{data} has a test split of its own; drop --test-fraction (it would only take "
                          "images away from training)")
    kept, test = split_test(ds, fraction, TEST_SPLIT_SEED)
    return kept, {"test_fraction": fraction, "test_seed": TEST_SPLIT_SEED, "n_test": len(test)}


def _check_test_split(data: str, ds: Dataset, data_dir) -> None:
    """A named test split (``npy:A,test=B``) is read before step 1, so a wrong path or size is
    said now, not by the first evaluation after training."""
    if not data.startswith(("npy:", "folder:")) or ",test=" not in data:
        return
    test = load_dataset(data, "test", data_dir=data_dir)
    if tuple(test.shape) != tuple(ds.shape):
        raise VaelabError(f"{data}: the test images have shape {list(test.shape)}, the training images "
                          f"{list(ds.shape)}; name a test split of images of the training images' size")


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
    carved from the training split by seed unless ``val_data`` is given; user data
    without a test split can hold one out with ``test_fraction`` (see :func:`run_split`).
    With ``resume=True`` a model name and settings left out are taken from the run's
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
    check_reads(model_class(model) if isinstance(model, str) else model, ds, model if isinstance(model, str) else None)
    if isinstance(data, str):
        _check_test_split(data, ds, data_dir)
    own_val = isinstance(data, str) and val_data is None and data.strip().lower() in OWN_VALIDATION
    if own_val:  # the dataset's own validation file (ptb.valid.txt) chooses, not a carve-out
        val_data = load_dataset(data, "val", data_dir=data_dir)
    ds, test_record = _hold_out_test(data, ds, config.test_fraction)
    if not recorded:
        config = fitted_val_size(model, config, len(ds))
    if isinstance(model, str):
        if recorded and model_config is None:
            if recorded.get("model") != model:
                raise VaelabError(f"--resume: {out} holds a '{recorded.get('model')}' run, not '{model}'")
            model_config = as_trained(model, recorded["config"])
        settings = {"input_shape": list(ds.shape), **(model_config or {})}
        fit_settings = getattr(model_class(model), "data_settings", None)  # e.g. attribute statistics
        settings = fit_settings(ds, settings) if fit_settings else settings
        _check_memory(model, settings)
        torch.manual_seed(config.seed)  # the initial weights follow the run's seed too
        name, model = model, build(model, **settings)
        if hasattr(model, "stages"):  # a run of stages (M1 + M2): each stage a complete run
            return _train_stages(name, model, ds, out, config, resume, progress)
    elif model_config is not None:
        raise VaelabError("model_config is only used with a model name, not a built model")
    if tuple(model.input_shape) != tuple(ds.shape):
        raise VaelabError(f"the model expects images of shape {list(model.input_shape)}, "
                          f"the data has {list(ds.shape)}")
    ds = conditioned(model, ds)
    if val_data is None and config.val_size > 0:
        train_ds, val_ds = split_validation(ds, config.val_size if config.val_size < 1 else int(config.val_size),
                                            seed=config.seed, last=config.val_rows == "last")
    else:
        train_ds, val_ds = ds, None if val_data is None else conditioned(model, val_data)
    train_ds, label_record = labelled_part(train_ds, config)
    record = {"spec": canonical_spec(data) if isinstance(data, str) else ds.name, "split": "train",
              "n_train": len(train_ds), "n_val": 0 if val_ds is None else len(val_ds),
              "shape": list(ds.shape), **test_record, **label_record}
    if own_val:
        record["val_file"] = True  # run_split(..., "val") reads the same file
    elif val_data is not None:
        record["val_given"] = True  # not a carve-out: run_split cannot rebuild it
    return fit(model, train_ds, val_ds, config, out, resume=resume, data_record=record, progress=progress)


def fitted_val_size(model: str | Model, config: TrainConfig, n: int) -> TrainConfig:
    """A family's default validation count, made for MNIST (the last 10,000 of 60,000, as the
    papers), replaced by TrainConfig's default fraction on data that it would leave with no
    more than half its rows for training (8×8 digits: 1,500), with a warning that says so."""
    cls = model_class(model) if isinstance(model, str) else type(model)
    default = getattr(cls, "train_defaults", {}).get("val_size")
    if default is None or default < 1 or config.val_size != default or default < n / 2:
        return config
    fraction = TrainConfig().val_size
    left = max(0, n - int(default))
    warnings.warn(f"--val-size {default:g} ({cls.name}'s default) would leave {left} of the {n} training images "
                  f"to train on; validating on {fraction:g} of them instead (--val-size sets it)",
                  VaelabWarning, stacklevel=2)
    return config.replace(val_size=fraction)


def _train_stages(name: str, model, ds: Dataset, out: Path, config: TrainConfig, resume: bool,
                  progress: bool) -> TrainResult:
    """Train a composite model's stages into ``out``; the result describes the last stage,
    with the composite (as ``vaelab.load(out)`` rebuilds it) as its model."""
    from ..io import load
    from .stages import train_stages

    results = train_stages(model.stages(config.to_dict()), ds, out, composite=name, resume=resume,
                           progress=progress)
    last = list(results.values())[-1]
    return TrainResult(load(out), out, last.epochs_run, last.best_epoch, last.best_val, last.stopped_early,
                       sum(r.skipped_steps for r in results.values()),
                       all(r.already_finished for r in results.values()), last.monitor)


def labelled_part(ds: Dataset, config: TrainConfig) -> tuple[Dataset, dict]:
    """The training rows with only ``config.labels`` labels kept, N/K per class drawn by
    ``label_seed`` (the rest unlabelled), and the record that makes ``--resume`` refuse
    another draw; ``labels`` 0 keeps every label."""
    if not config.labels:
        return ds, {}
    if not isinstance(ds, Dataset) or not ds.has_class_labels:
        raise VaelabError(f"--labels {config.labels} keeps the labels of some training images, but this data has "
                          "no class labels; train on a labelled dataset (e.g. mnist) or drop --labels")
    k = ds.n_classes
    if config.labels % k:
        low, high = config.labels // k * k, (config.labels // k + 1) * k
        raise VaelabError(f"--labels {config.labels} is not a multiple of the {k} classes (the labelled subset is "
                          f"class-balanced, N/{k} per class); choose {low or high} or {high}")
    subset = labelled_subset(ds, config.labels // k, config.label_seed)
    return subset, {"labels": config.labels, "label_seed": config.label_seed}


def conditioned(model, ds: Dataset) -> Dataset:
    """``ds`` with y as ``model`` conditions on it (attribute vectors for ``cmma``), where the
    model says so through ``condition_data``; otherwise ``ds`` as it is."""
    condition = getattr(model, "condition_data", None)
    return condition(ds) if condition is not None and isinstance(ds, Dataset) else ds


def run_split(run_dir: str | os.PathLike, data: str, split: str = "test",
              data_dir: str | os.PathLike | None = None) -> Dataset:
    """The ``split`` of dataset ``data`` as the run in ``run_dir`` saw it.

    If the run carved its test split off this data (``test_fraction``), "test" is exactly
    that carve-out and "train" the rest; otherwise the data's own split, and a "test"
    split that user data lacks is refused (a result on it would be on training images).
    "val" is exactly the validation images the trainer held out of "train" (rebuilt from
    run.json's ``val_size``, ``val_rows`` and ``seed``): the split that chooses settings.
    """
    if split == "val" and data.strip().lower() in OWN_VALIDATION:
        return load_dataset(data, "val", data_dir=data_dir)
    if split == "val":
        return validation_parts(run_dir, data, data_dir)[1]
    carve = _recorded_carve(Path(run_dir), data)
    if carve is None:
        return load_dataset(data, split, data_dir=data_dir)
    full = load_dataset(data, "train", data_dir=data_dir)
    n_run = carve["n_train"] + carve["n_val"] + carve["n_test"]
    if len(full) != n_run:
        raise VaelabError(f"{data} now holds {len(full)} images, but the run in {run_dir} carved its test split "
                          f"off {n_run}; the split cannot be rebuilt: evaluate on the data the run was trained on")
    kept, test = split_test(full, carve["test_fraction"], carve["test_seed"])
    return test if split == "test" else kept


TRAINING_IMAGES = "computed on training images (the train split), not on held-out data"


def held_out(run_dir: str | os.PathLike, data: str, split: str = "test") -> tuple[bool, str | None]:
    """(held_out, note): whether the ``split`` images of ``data`` were outside the training
    split of the run in ``run_dir``, and what to say about them. Images of other data than the
    run's were never in it (whatever the split), and the note names both datasets; the train
    split of the run's own data is training images. Without a run record, only the split says."""
    recorded = _recorded_spec(Path(run_dir))
    if recorded is not None and training_images_of(recorded) != training_images_of(data):
        return True, (f"{data} is not the data the run trained on ({recorded}); none of these images were in "
                      "its training split")
    return (False, TRAINING_IMAGES) if split == "train" else (True, None)


def _recorded_spec(run_dir: Path) -> str | None:
    """The data spec the run's record names (None: no record, or data given as a Dataset)."""
    if not (run_dir / "run.json").is_file():
        return None
    spec = read_run_record(run_dir / "run.json").get("data", {}).get("spec")
    if not isinstance(spec, str):
        return None
    try:
        named = spec.startswith(("npy:", "folder:")) or training_images_of(spec) in DATASETS
    except VaelabError:  # a damaged spec: nothing is known of the images
        return None
    return spec if named else None


def _recorded_carve(run_dir: Path, data: str) -> dict | None:
    """The run's record of a test split carved off ``data`` (None: no run record, no
    carve-out, or the run trained on other data)."""
    if has_test_split(data) or not (run_dir / "run.json").is_file():
        return None
    record = read_run_record(run_dir / "run.json").get("data", {})
    keys = {"test_fraction": float, "test_seed": int, "n_test": int, "n_train": int, "n_val": int}
    if "test_fraction" not in record or not isinstance(record.get("spec"), str):
        return None
    if canonical_spec(record["spec"]) != canonical_spec(data):
        return None
    if not all(isinstance(record.get(k), t) and not isinstance(record.get(k), bool) for k, t in keys.items()):
        raise VaelabError(f"{run_dir / 'run.json'}: the record of the carved test split is damaged "
                          f"({', '.join(keys)} expected); evaluate with --split train or retrain")
    return record


def validation_parts(run_dir: str | os.PathLike, data: str,
                     data_dir: str | os.PathLike | None = None) -> tuple[Dataset, Dataset]:
    """(the "train" images the run did not hold out, its validation images), carved from
    its "train" split as the trainer carved them (before any ``--labels`` subset); refused
    where run.json cannot say which images those were."""
    run_dir = Path(run_dir)
    path = run_dir / "run.json"
    if not path.is_file():
        raise VaelabError(f"--split val needs the run's record of its validation split, but {run_dir} has no "
                          "run.json; give a run directory (not an exported model) or use --split test")
    record = read_run_record(path, "--split val: run record")
    settings, seen = record.get("train"), record.get("data", {})
    if not isinstance(settings, dict) or not isinstance(seen, dict):
        raise VaelabError(f"{path} records no training settings, so its validation split cannot be rebuilt; "
                          "use a run trained by vaelab train")
    if isinstance(seen.get("spec"), str) and canonical_spec(seen["spec"]) != canonical_spec(data):
        raise VaelabError(f"the run in {run_dir} was trained on {seen['spec']}, not {data}: its validation split "
                          f"is part of {seen['spec']}; give --data {seen['spec']}")
    config = TrainConfig.from_dict(settings, where=f"{path} training settings")
    if seen.get("val_given"):
        raise VaelabError(f"the run in {run_dir} was validated on images given to it (val_data), not on a split "
                          f"carved from {data}; evaluate on those images directly")
    if not config.val_size or not seen.get("n_val"):
        raise VaelabError(f"the run in {run_dir} held out no validation images (val_size 0); "
                          "retrain with --val-size above 0 to choose settings on validation data")
    train = run_split(run_dir, data, "train", data_dir=data_dir)  # without a test part the run carved off
    size = config.val_size if config.val_size < 1 else int(config.val_size)
    kept, val = split_validation(train, size, seed=config.seed, last=config.val_rows == "last")
    if len(val) != seen["n_val"]:
        raise VaelabError(f"the run in {run_dir} validated on {seen['n_val']} images, but {data} now gives "
                          f"{len(val)}; its validation split cannot be rebuilt (was it given its own val_data?)")
    return kept, val
