"""A run's images as its encoder saw them, for pictures of its latent space."""
from __future__ import annotations

import os
from dataclasses import replace

from ..errors import VaelabError


def run_images(run: str | os.PathLike, model, data: str, split: str = "test",
               data_dir: str | os.PathLike | None = None, limit: int = 0):
    """The first ``limit`` (0: all) images of ``split`` of ``data`` as the run split them,
    binarized once with the test seed where the run trained on binarized images: codes of
    grey images the encoder never saw would put the map in the wrong place."""
    from ..data import binarize_static
    from ..data.samplers import resolve_binarize
    from ..evaluation import TEST_BINARIZATION_SEED
    from ..training import run_split

    if split not in ("train", "test"):
        raise VaelabError(f"unknown split {split!r}; choose train or test")
    if limit < 0:
        raise VaelabError(f"--limit must be >= 0 (0 = every image), got {limit}")
    ds = run_split(run, data, split, data_dir=data_dir)
    if tuple(ds.shape) != tuple(model.input_shape):
        raise VaelabError(f"{data} images have shape {list(ds.shape)}, the model in {run} expects "
                          f"{list(model.input_shape)}; give the data it was trained on")
    if limit:
        ds = ds.subset(slice(0, limit))
    if resolve_binarize("auto", model, run) != "none":
        ds = replace(ds, x=binarize_static(ds.x, TEST_BINARIZATION_SEED))
    return ds
