"""``vaelab train-prior RUN``: fit a prior over the codes of a trained VQ-VAE run, as a second
stage inside that run.

    RUN/                     the VQ-VAE's run (config.json, model.safetensors, run.json, ...)
    RUN/prior/               the prior's own complete run: checkpoints, metrics, resume
    RUN/prior/codes.safetensors   the code maps of the training images (a cache, keyed by
                                  the VQ-VAE's fingerprint and the images)

The prior is trained by the same trainer on the VQ-VAE's codes of the run's training data
(binarized once with a fixed seed where the VQ-VAE saw binary images), with the run's
validation rows held out the same way. It records the VQ-VAE's fingerprint; ``vaelab.load(RUN)``
attaches it only to those exact weights (:func:`vaelab.models.vq_prior.attach`).
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ..errors import VaelabError
from ..files import read_json, read_run_record
from ..io import PRIOR_DIR

CODES_FILE = "codes.safetensors"
CODE_BINARIZATION_SEED = 123  # one fixed draw of binary training images, as evaluation draws its test images
INHERITED = ("val_size", "val_rows", "seed")  # the VQ-VAE run's validation rows, unless told otherwise


def train_prior(run_dir: str | os.PathLike, *, model_config: dict | None = None, config=None,
                data=None, data_dir: str | os.PathLike | None = None, resume: bool = False, progress: bool = True):
    """Train a ``vq-prior`` on the codes of the VQ-VAE in ``run_dir``; returns the TrainResult.

    ``config``: a TrainConfig, or a dict of training settings over the run's validation
    split (:func:`inherited_settings`) and the prior's defaults. ``data``: the training images,
    a spec or a Dataset (default: the spec the run records, its training split as the run
    saw it)."""
    from ..data import binarize_static, encoded
    from ..data.samplers import resolve_binarize
    from ..io import load
    from ..models.vq_prior import fingerprint_of
    from .run import train, train_config
    from .trainer import TrainConfig

    run_dir = Path(run_dir)
    vq = load(run_dir, prior=False)
    if not hasattr(vq, "code_shape"):
        raise VaelabError(f"{run_dir} holds a '{vq.name}', which has no discrete codes to fit a prior to; "
                          "train-prior takes a vqvae run")
    record = read_run_record(run_dir / "run.json", "run record") if (run_dir / "run.json").is_file() else None
    if record is None:
        raise VaelabError(f"{run_dir} has no run record (run.json); train-prior needs the run directory "
                          "`vaelab train vqvae` wrote")
    out = run_dir / PRIOR_DIR
    fp = fingerprint_of(vq)
    _check_existing(out, fp, resume)
    images = _images(run_dir, record, data, data_dir)
    if resolve_binarize("auto", vq, run_dir) != "none":
        images = replace(images, x=binarize_static(images.x, CODE_BINARIZATION_SEED))
    out.mkdir(exist_ok=True)
    codes = encoded(vq, images, out / CODES_FILE)
    h, w = vq.code_shape
    codes = replace(codes, x=codes.x.reshape(len(codes), 1, h, w))
    if not isinstance(config, TrainConfig):
        config = train_config("vq-prior", {**inherited_settings(run_dir), **(config or {})})
    prior_config = {**(model_config or {}), "codebook_size": vq.config.codebook_size, "vqvae": fp}
    return train("vq-prior", codes, out, model_config=None if resume and (out / "run.json").exists() else prior_config,
                 config=config, resume=resume, progress=progress)


def inherited_settings(run_dir: str | os.PathLike) -> dict:
    """The VQ-VAE run's validation split settings, which its prior keeps by default so that
    no validation code map comes from an image the VQ-VAE trained on."""
    path = Path(run_dir) / "run.json"
    record = read_run_record(path, "run record") if path.is_file() else {}
    return {k: record["train"][k] for k in INHERITED if k in record.get("train", {})}


def _images(run_dir: Path, record: dict, data, data_dir):
    from ..data import Dataset
    from .run import run_split

    if isinstance(data, Dataset):
        return data
    spec = data or record.get("data", {}).get("spec")
    if not isinstance(spec, str):
        raise VaelabError(f"{run_dir}/run.json names no training data; pass the images the VQ-VAE was trained on "
                          "(--data SPEC)")
    return run_split(run_dir, spec, "train", data_dir=data_dir)


def _check_existing(out: Path, fp: str, resume: bool) -> None:
    """A prior already there is continued only with --resume, and only for these weights."""
    if not (out / "run.json").is_file():
        return
    recorded = read_json(out / "run.json", "prior run record").get("config", {})
    if recorded.get("vqvae") != fp:
        raise VaelabError(f"{out} holds a prior trained on the codes of a different VQ-VAE (its weights changed "
                          "since); remove that directory to train a prior for the VQ-VAE as it is now")
    if not resume:
        raise VaelabError(f"{out} already holds a prior; pass --resume to continue it (more --epochs), or remove "
                          "that directory to train a new one")
