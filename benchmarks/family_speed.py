"""Every family's training epoch at its paper profile on MNIST: time, FLOPs, share of the GEMM peak.

    python benchmarks/family_speed.py [--only FAMILY ...] [--steps 20] [--threads 1]

For each family the paper profile's model is built and trained for ``--steps`` steps (after
two warm-up steps) by the trainer's own step (all phases, their optimisers) on batches drawn
by the sampler the trainer would choose for the profile's data; the epoch is that step time
times the epoch's step count. FLOPs per training image are counted by PyTorch's
``FlopCounterMode`` over one step (matrix products and convolutions, forward and backward:
what the GEMM peak measures; element-wise work is not counted), so the share of the peak
says how much of the epoch is arithmetic the hardware is best at. The peak is the best
4096 x 4096 float32 product on the same threads, measured again right after each family's
steps (a shared machine's load moves during a run). Families whose data is not
MNIST images (a VQ-VAE's codes, a run of stages) are listed with the reason they are left out.
Prints a Markdown table, and with ``--json`` one JSON object per family.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import tempfile
import time
import types
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import vaelab
from vaelab.data.samplers import resolve_binarize
from vaelab.data.sources import binarize_static, load_dataset, split_validation
from vaelab.errors import VaelabError
from vaelab.models import model_class
from vaelab.profiles import families, profile_names, profile_settings
from vaelab.threads import set_threads
from vaelab.training.run import conditioned, labelled_part
from vaelab.training.step import Stepper
from vaelab.training.trainer import TrainConfig, _Training

from common import add_common, matmul_peak_gflops, step_breakdown

WARMUP = 2


def training_rows(family: str, mnist, model, cfg: TrainConfig):
    """The rows the trainer would train on for this profile, as a Batch, and the binarization."""
    ds = conditioned(model, mnist)
    if cfg.val_size > 0:
        size = cfg.val_size if cfg.val_size < 1 else int(cfg.val_size)
        ds, _ = split_validation(ds, size, seed=cfg.seed, last=cfg.val_rows == "last")
    ds, _ = labelled_part(ds, cfg)
    binarize = resolve_binarize(cfg.binarize, model)
    batch = ds.batch()
    if binarize == "static":
        batch = batch.with_x(binarize_static(batch.x, cfg.seed + 2))
    return batch, binarize


def trainer_sampler(batch, cfg: TrainConfig, binarize: str):
    """The sampler the trainer chooses for these rows (its own rule, not a copy of it)."""
    chooser = types.SimpleNamespace(config=cfg, binarize=binarize, ctx=types.SimpleNamespace(rank=0, world=1))
    return _Training._sampler(chooser, batch)


def with_baseline(family: str, settings: dict, mnist, tmp: str) -> dict:
    """``settings`` with a baseline run where the family's config asks for one (Sohn et al.'s
    CVAE, GSNN and hybrid feed a frozen baseline's prediction to their networks): one epoch of
    ``sohn-nn`` on 2,000 images, which costs the same per step as a trained one."""
    needs = any(f.name == "baseline" for f in dataclasses.fields(model_class(family).Config))
    if not needs or settings.get("baseline"):
        return settings
    run = f"{tmp}/baseline-{settings.get('quadrants', 'default')}"
    if not Path(run).exists():
        nn_settings = {k: settings[k] for k in ("quadrants",) if k in settings}
        vaelab.train("sohn-nn", mnist.subset(slice(0, 2000)), run, model_config=nn_settings,
                     config={"epochs": 1, "val_size": 200, "threads": torch.get_num_threads()}, progress=False)
    return {**settings, "baseline": run}


def measure(family: str, mnist, steps: int, tmp: str, breakdown: bool = False) -> dict:
    """Seconds per step, steps per epoch and FLOPs per image of ``family``'s paper profile."""
    model_settings, train_settings = profile_settings(family, "paper")
    model_settings = with_baseline(family, model_settings, mnist, tmp)
    settings = {"input_shape": list(mnist.shape), **model_settings}
    fit_settings = getattr(model_class(family), "data_settings", None)  # as vaelab.train fits them
    settings = fit_settings(mnist, settings) if fit_settings else settings
    torch.manual_seed(0)
    model = vaelab.build(family, **settings)
    if hasattr(model, "stages"):
        raise VaelabError("a run of stages: each stage is timed as its own family")
    cfg = TrainConfig.from_dict({**TrainConfig().to_dict(), **train_settings})
    batch, binarize = training_rows(family, mnist, model, cfg)
    sampler = trainer_sampler(batch, cfg, binarize)
    model.prepare(batch)
    stepper = Stepper(model, cfg)
    stream = iter(sampler.epoch())
    flops, rows = 0, 0
    for i in range(WARMUP + steps + 1):
        b = next(stream, None)
        if b is None:
            stream = iter(sampler.epoch())
            b = next(stream)
        model.schedule(i / max(1, len(sampler)))
        if i == WARMUP:
            t0 = time.perf_counter()
        if i == WARMUP + steps:  # one more step, counted and not timed
            seconds = time.perf_counter() - t0
            with FlopCounterMode(display=False) as counter:
                stepper(b)
            flops, rows = counter.get_total_flops(), len(b)
        else:
            stepper(b)
    per_step = seconds / steps
    if breakdown:
        batches = [next(stream, None) or next(iter(sampler.epoch())) for _ in range(steps)]
        print(f"{family}: " + step_breakdown(lambda: stepper(batches.pop()), steps), flush=True)
    return {"family": family, "batch_size": cfg.batch_size, "steps_per_epoch": len(sampler),
            "seconds_per_step": per_step, "epoch_seconds": per_step * len(sampler),
            "flops_per_image": flops / rows, "gflops_per_second": flops / per_step / 1e9}


def left_out(family: str) -> str:
    """Why ``family`` is not timed here ('' when it is)."""
    if "paper" not in profile_names(family):
        return "no paper profile"
    if family == "vq-prior":
        return "trains on a VQ-VAE's codes, not images: python benchmarks/vq_prior_speed.py times it"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common(parser)
    parser.add_argument("--only", nargs="+", metavar="FAMILY", help="these families only (default: every family)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per family (default: 20)")
    parser.add_argument("--json", action="store_true", help="also print one JSON object per family")
    parser.add_argument("--breakdown", action="store_true",
                        help="also profile each family's steps: the share in matrix products, the top ops")
    args = parser.parse_args()
    set_threads(args.threads)
    chosen = args.only or list(families())
    unknown = sorted(set(chosen) - set(families()))
    if unknown:
        raise SystemExit(f"error: unknown family {', '.join(unknown)}; choose from {', '.join(families())}")
    mnist = load_dataset("mnist", "train", data_dir=args.data_dir)
    peak = matmul_peak_gflops(args.device)
    print(f"threads {torch.get_num_threads()}; float32 GEMM peak {peak:.1f} GFLOP/s; load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    print("| family | batch | steps/epoch | s/step | epoch (s) | MFLOP/image | GFLOP/s | peak GFLOP/s | share of peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    tmp = tempfile.mkdtemp(prefix="family-speed-")
    for family in chosen:
        reason, figures = left_out(family), None
        try:
            figures = None if reason else measure(family, mnist, args.steps, tmp, args.breakdown)
        except VaelabError as exc:
            reason = str(exc).splitlines()[0]
        if figures is None:
            print(f"| {family} | left out: {reason} ||||||||")
            continue
        peak = matmul_peak_gflops(args.device, repeats=3)  # again beside each family: the load moves
        share = figures["gflops_per_second"] / peak
        print(f"| {family} | {figures['batch_size']} | {figures['steps_per_epoch']} | "
              f"{figures['seconds_per_step']:.4f} | {figures['epoch_seconds']:.1f} | "
              f"{figures['flops_per_image'] / 1e6:.2f} | {figures['gflops_per_second']:.1f} | {peak:.1f} | {share:.0%} |",
              flush=True)
        if args.json:
            print(json.dumps({**figures, "peak_gflops": peak, "share_of_peak": share}))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
