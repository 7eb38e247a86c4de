"""Shared helpers for the benchmark commands (data directory, matmul peak, timing)."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=os.environ.get("VAELAB_DATA_DIR") or
                        (str(SHARED_DATA) if SHARED_DATA.exists() else None),
                        help="dataset directory (default: $VAELAB_DATA_DIR, else ../shared/data)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")


def matmul_peak_gflops(device: str = "cpu", n: int = 4096, repeats: int = 5) -> float:
    """Best observed float32 GEMM throughput: the denominator of the efficiency figures."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(repeats + 1):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def mlp_vae_train_flops(sizes_enc: list[int], sizes_dec: list[int], n: int) -> float:
    """Analytic FLOPs of one training pass over n examples of an MLP VAE (2 per multiply-add).

    Forward: every linear layer. Backward: weight gradients for every layer and input
    gradients for every layer but the first (the data needs no gradient).
    """
    layers = list(zip(sizes_enc[:-1], sizes_enc[1:])) + list(zip(sizes_dec[:-1], sizes_dec[1:]))
    macs = sum(a * b for a, b in layers)
    first = sizes_enc[0] * sizes_enc[1]
    return 2.0 * n * (3 * macs - first)


def trainer_epoch_seconds(name: str, settings: dict, batch, batch_size: int, device: str,
                          threads: int) -> tuple[float, float]:
    """One epoch of vaelab's trainer for model ``name`` built with ``settings`` (dynamic
    binarization, no validation): the epoch loop's wall seconds, as metrics.jsonl records
    them, and the process's CPU seconds for the whole call (less sensitive to other jobs
    taking turns on the cores; it includes writing the run directory)."""
    import json
    import tempfile

    import vaelab
    from vaelab.training.trainer import TrainConfig, fit

    model = vaelab.build(name, **settings)
    config = TrainConfig(epochs=1, batch_size=batch_size, binarize="dynamic", val_size=0, device=device,
                         threads=threads)
    with tempfile.TemporaryDirectory() as tmp:
        cpu = time.process_time()
        fit(model, batch, None, config, f"{tmp}/run", progress=False)
        cpu = time.process_time() - cpu
        with open(f"{tmp}/run/metrics.jsonl") as f:
            return json.loads(f.readline())["seconds"], cpu


GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mkldnn_convolution",
            "aten::convolution_backward")


def step_breakdown(step, steps: int) -> str:
    """Where ``steps`` calls of ``step()`` spend their CPU time: the share in matrix products and
    convolutions, in Adam's fused update, and the three ops with the most self time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    gemm = sum(e.self_cpu_time_total for e in events if e.key in GEMM_OPS)
    adam = sum(e.self_cpu_time_total for e in events if e.key == "aten::_fused_adam_")
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:3]
    return (f"{gemm / total:.0%} of the step in matrix products and convolutions, {adam / total:.0%} in Adam's "
            f"fused update; most self time: " + ", ".join(f"{e.key} {e.self_cpu_time_total / total:.0%}" for e in top))


def add_selection_split(parser: argparse.ArgumentParser) -> None:
    """``--split`` of a sweep that chooses between settings: validation images only."""
    parser.add_argument("--split", default="val",
                        help="images that score the settings: val (held out of the training images; the only "
                             "choice: a sweep never reads the test split, which is read once for the final table)")


def refuse_test_split(split: str) -> None:
    """Stop with one ``error:`` line unless ``split`` is ``val``: settings chosen on test
    images would make the final test figure optimistic."""
    if split != "val":
        raise SystemExit(f"error: --split {split}: this sweep chooses between settings, so it scores them on "
                         "validation images only; measure the chosen setting's test figure once, with its "
                         "evaluation command (drop --split, or pass --split val)")
