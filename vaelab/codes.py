"""A dataset's codes under a trained model, for users who take the representation elsewhere.

``export_codes`` (``vaelab encode``) writes one NumPy ``.npz`` of named arrays, row i for
image i of the split; ``numpy.load(path)`` reads it without pickle:

    mean    (N, L) float32  posterior mean E[z | x]         (VAE family)
    logvar  (N, L) float32  posterior log-variance          (VAE family)
    code    (N, L) float32  the code z = f(x)               (deterministic autoencoders)
    y       (N,)   int64    labels, where the data has them
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch

from .data.samplers import resolve_binarize
from .errors import VaelabError


@torch.inference_mode()
def encode_images(model, x: torch.Tensor, batch_size: int = 500) -> dict[str, torch.Tensor]:
    """Codes of images ``x`` in batches, without gradients, on the model's device; returned
    on the CPU as float32: ``mean`` and ``logvar`` for a VAE, ``code`` for an autoencoder."""
    if batch_size < 1:
        raise VaelabError(f"batch size must be at least 1, got {batch_size}")
    if not (hasattr(model, "posterior_params") or hasattr(model, "code") or hasattr(model, "encode")):
        raise VaelabError(f"a '{getattr(model, 'name', type(model).__name__)}' model has no codes to export "
                          "(no encoder of x alone); encode with a VAE or an autoencoder")
    model.eval()
    p = next(model.parameters())
    parts: dict[str, list[torch.Tensor]] = {}
    for i in range(0, x.shape[0], batch_size):
        for key, value in _codes(model, x[i:i + batch_size].to(p.device, p.dtype)).items():
            parts.setdefault(key, []).append(value.float().cpu())
    if not parts:
        raise VaelabError("no images to encode")
    return {key: torch.cat(values) for key, values in parts.items()}


def _codes(model, xb: torch.Tensor) -> dict[str, torch.Tensor]:
    if hasattr(model, "posterior_params"):
        mean, logvar = model.posterior_params(xb)
        return {"mean": mean, "logvar": logvar}
    if hasattr(model, "code"):
        return {"code": model.code(xb)}
    return {"mean": model.encode(xb).mean}


def export_codes(run: str | os.PathLike, data: str, output: str | os.PathLike, *, split: str = "test",
                 data_dir: str | os.PathLike | None = None, binarize: str = "auto", batch_size: int = 500,
                 device: str = "auto") -> dict[str, np.ndarray]:
    """Encode the ``split`` of ``data`` with the model in ``run`` and write the arrays to
    ``output`` (``.npz``, see the module docstring); returns them. ``binarize="auto"`` binarizes
    as the run trained (once, with the test seed, as ``evaluate`` does); ``none`` keeps grey levels.
    ``device``: auto (CUDA when present), cpu or cuda[:N]."""
    from .data import binarize_static
    from .evaluation import TEST_BINARIZATION_SEED
    from .files import atomic_write_bytes
    from .io import load
    from .training import run_split
    from .training.trainer import resolve_device

    output = Path(output)
    if output.suffix != ".npz":
        raise VaelabError(f"-o {output}: codes are written as one .npz of named arrays (mean, logvar or code, "
                          "and y); give a file name ending in .npz")
    if binarize not in ("auto", "dynamic", "static", "none"):
        raise VaelabError(f"unknown binarize {binarize!r}; choose auto, dynamic, static or none")
    model = load(run, device=resolve_device(device))
    ds = run_split(run, data, split, data_dir=data_dir)  # a carved test split as the run carved it
    if tuple(ds.shape) != tuple(model.input_shape):
        raise VaelabError(f"{data} images have shape {list(ds.shape)}, the model in {run} expects "
                          f"{list(model.input_shape)}; encode data of the shape it was trained on")
    x = ds.x
    if ds.front_end.get("kind") == "log-mel" and hasattr(model, "content_code"):  # speech: clips with lengths
        from .convert import encode_speech
        arrays = encode_speech(model, ds)
    else:
        if resolve_binarize(binarize, model, run) != "none":
            x = binarize_static(x, TEST_BINARIZATION_SEED)
        arrays = {k: v.numpy() for k, v in encode_images(model, x, batch_size).items()}
    if ds.y is not None:
        arrays["y"] = ds.y.numpy()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(output, buffer.getvalue())
    return arrays


def run_data_spec(run: str | os.PathLike) -> str | None:
    """The dataset spec a run was trained on (``run.json``), or None for a bare model directory."""
    from .files import read_run_record

    path = Path(run) / "run.json"
    spec = read_run_record(path).get("data", {}).get("spec") if path.exists() else None
    return spec if isinstance(spec, str) else None


def training_code_gaussian(run: str | os.PathLike, model, data: str | None = None,
                           data_dir: str | os.PathLike | None = None):
    """The Gaussian fitted to a deterministic autoencoder's codes of its training images
    (the train split of ``data``, default the run's recorded data): where its decoder was
    trained, unlike N(0, I). Returns ``(distribution, spec, n_images)`` for ``model.sample(codes=...)``."""
    from .data import binarize_static
    from .evaluation import TEST_BINARIZATION_SEED
    from .training import run_split

    if not hasattr(model, "code_gaussian"):
        raise VaelabError(f"--codes fitted is for deterministic autoencoders; a '{model.name}' samples its prior "
                          "N(0, I), which it was trained to decode: drop --codes fitted")
    spec = data or run_data_spec(run)
    if spec is None:
        raise VaelabError(f"--codes fitted needs the training images and {run} records no data; pass --data SPEC")
    ds = run_split(run, spec, "train", data_dir=data_dir)  # without a test part the run carved off
    if tuple(ds.shape) != tuple(model.input_shape):
        raise VaelabError(f"{spec} images have shape {list(ds.shape)}, the model in {run} expects "
                          f"{list(model.input_shape)}; pass the --data it was trained on")
    x = ds.x if resolve_binarize("auto", model, run) == "none" else binarize_static(ds.x, TEST_BINARIZATION_SEED)
    return model.code_gaussian(x), spec, len(ds)
