"""The training loop: seeded, resumable, crash-safe checkpoints, metrics in ``metrics.jsonl``.

Run directory layout::

    run.json                 full resolved configuration (model, training, data)
    config.json, model.safetensors   the best weights so far (what ``vaelab.load`` reads)
    checkpoints/last.safetensors     end of the latest epoch (weights, optimizer, RNGs), or
                                     the step where Ctrl-C stopped the run
    checkpoints/last.prev.safetensors  the checkpoint before it (fallback if last is damaged)
    checkpoints/best.safetensors     the best epoch, with its *own* optimizer and RNG state
    metrics.jsonl            one JSON line per epoch
    samples.png, reconstructions.png written when training ends

Crash safety: every file is replaced atomically, and at the end of an epoch the files
are written in the order metrics, best, model, last, so ``last`` is always the newest
complete state and a run killed at any moment resumes to exactly the weights of an
uninterrupted run (``benchmarks/soak.py`` checks this with SIGKILL).
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..config import Config, choice, require
from ..data import binarize_static
from ..data.batch import Batch
from ..data.batches import BINARIZE, Batches
from ..errors import VaelabError, VaelabWarning, brief
from ..io import (WriteError, atomic_write_bytes, atomic_write_json, fsync_dir, model_record,
                  read_run_record, remove_stale_temporaries, save)
from ..words import count
from .checkpoint import previous_path, read_checkpoint, read_resume_checkpoint, restore_checkpoint, save_checkpoint
from .schedules import SCHEDULES, learning_rate

VAL_BINARIZATION_SEED = 123
NONFINITE = ("stop", "skip")
RUN_FILES = ("run.json", "config.json", "model.safetensors", "metrics.jsonl", "samples.png",
             "reconstructions.png", "write-test")
CHECKPOINT_FILES = ("last.safetensors", "last.prev.safetensors", "best.safetensors")


@dataclass(frozen=True)
class TrainConfig(Config):
    """Training settings; recorded in ``run.json``.

    ``binarize="auto"`` means dynamic binarization for Bernoulli-likelihood models and
    none otherwise. ``val_size`` below 1 is a fraction of the training set, otherwise a
    count. ``test_fraction`` > 0 holds that fraction of user data without a test split
    out of training, by a fixed seed, as its test split (``run.json`` records it, so
    ``vaelab eval`` uses the same images). ``patience`` > 0 stops after that many epochs without a better validation
    loss. ``grad_clip`` > 0 clips the global gradient norm. ``threads`` 0 = all cores.
    ``nonfinite="stop"`` ends the run at the first non-finite loss (naming the step and
    term); ``"skip"`` drops that step (and steps with non-finite gradients), multiplies
    the learning rate by ``nonfinite_lr_factor`` and stops only after
    ``nonfinite_max_skips`` skipped steps; skips are counted in ``metrics.jsonl``.
    """

    epochs: int = field(default=20, metadata={"help": "training epochs (with --resume: the new total)"})
    batch_size: int = field(default=128, metadata={"help": "minibatch size"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    lr_schedule: str = field(
        default="constant",
        metadata={"help": "constant, cosine, or iwae (10^(-i/7) for 3^i epochs, compressed to --epochs)"})
    adam_betas: tuple[float, float] = field(default=(0.9, 0.999), metadata={"help": "Adam's β1,β2"})
    adam_eps: float = field(default=1e-8, metadata={"help": "Adam epsilon"})
    weight_decay: float = field(default=0.0, metadata={"help": "Adam weight decay"})
    grad_clip: float = field(default=0.0, metadata={"help": "clip the gradient norm to this value (0 = off)"})
    seed: int = field(default=0, metadata={"help": "seed for weights, data order, binarization and sampling"})
    binarize: str = field(
        default="auto",
        metadata={"help": "auto (dynamic for Bernoulli likelihoods), dynamic, static or none"})
    val_size: float = field(
        default=0.1,
        metadata={"help": "validation split carved from train: a fraction (<1) or a count"})
    test_fraction: float = field(
        default=0.0,
        metadata={"help": "hold out this fraction of folder:/npy: data without a test split as its test split (fixed seed; eval and reconstruct reuse it)"})
    patience: int = field(
        default=0,
        metadata={"help": "stop after this many epochs without a better validation loss (0 = off)"})
    eval_batch_size: int = field(default=1000, metadata={"help": "images per batch of the validation pass"})
    threads: int = field(default=0, metadata={"help": "CPU threads (0 = all cores)"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present, else CPU), cpu or cuda[:N]"})
    nonfinite: str = field(
        default="stop",
        metadata={"help": "on a NaN/inf loss or gradient: stop (naming the step and term) or skip the step"})
    nonfinite_lr_factor: float = field(
        default=0.5,
        metadata={"help": "with --nonfinite skip: multiply the learning rate by this at each skip"})
    nonfinite_max_skips: int = field(
        default=10,
        metadata={"help": "with --nonfinite skip: stop after this many skipped steps"})

    def validate(self) -> None:
        require(self.epochs > 0, f"epochs must be positive, got {self.epochs}")
        require(self.batch_size > 0, f"batch_size must be positive, got {self.batch_size}")
        require(self.lr > 0 and math.isfinite(self.lr), f"lr must be a positive number, got {self.lr}")
        choice("lr schedule", self.lr_schedule, SCHEDULES)
        require(all(0 <= b < 1 for b in self.adam_betas), f"adam_betas must lie in [0, 1), got {list(self.adam_betas)}")
        require(0 < self.adam_eps < math.inf, f"adam_eps must be > 0, got {self.adam_eps}")
        require(0 <= self.weight_decay < math.inf, f"weight_decay must be >= 0, got {self.weight_decay}")
        require(0 <= self.grad_clip < math.inf, f"grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        require(abs(self.seed) < 2**62, f"seed must lie in (-2^62, 2^62), got {self.seed}")
        choice("binarization", self.binarize, ("auto",) + BINARIZE)
        require(0 <= self.val_size < math.inf, f"val_size must be >= 0, got {self.val_size}")
        require(0 <= self.test_fraction < 1, f"test_fraction must lie in [0, 1) (0 = off), got {self.test_fraction}")
        require(self.patience >= 0, f"patience must be >= 0 (0 = off), got {self.patience}")
        require(self.eval_batch_size > 0, f"eval_batch_size must be positive, got {self.eval_batch_size}")
        require(0 <= self.threads <= 4096, f"threads must be >= 0 (0 = all cores), got {self.threads}")
        require(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
                f"unknown device '{self.device}'; choose auto, cpu or cuda[:N]")
        choice("non-finite policy", self.nonfinite, NONFINITE)
        require(0 < self.nonfinite_lr_factor <= 1,
                f"nonfinite_lr_factor must lie in (0, 1], got {self.nonfinite_lr_factor}")
        require(self.nonfinite_max_skips >= 0, f"nonfinite_max_skips must be >= 0, got {self.nonfinite_max_skips}")


@dataclass
class TrainResult:
    model: torch.nn.Module = field(repr=False)
    run_dir: Path
    epochs_run: int
    best_epoch: int
    best_val: float | None
    stopped_early: bool
    skipped_steps: int = 0
    already_finished: bool = False  # a --resume that found every epoch done: nothing was trained


class TrainingInterrupted(VaelabError):
    """Ctrl-C or SIGTERM stopped the run; the checkpoint written holds everything."""

    exit_code = 130
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VaelabError(f"--device {name} asked for, but no CUDA device is available; use --device cpu")
    return torch.device(name)


def resolve_binarize(setting: str, model) -> str:
    if setting != "auto":
        return setting
    return "dynamic" if getattr(model.config, "likelihood", None) == "bernoulli" else "none"


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads or os.cpu_count() or 1)


@contextlib.contextmanager
def threads(n: int):
    """Use ``n`` CPU threads (0 = all cores) inside the block, then restore the caller's."""
    previous = torch.get_num_threads()
    set_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def make_adam(params, config: TrainConfig) -> torch.optim.Adam:
    """Adam with the fused kernel where this torch has one for the device (same maths,
    one pass over the parameters), else the multi-tensor implementation."""
    params = list(params)
    kwargs = dict(lr=config.lr, betas=config.adam_betas, eps=config.adam_eps,
                  weight_decay=config.weight_decay)
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, **kwargs)


def _check_writable(run_dir: Path) -> None:
    """Find a read-only or full run directory before training, not at the first checkpoint."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test.tmp"
        with open(probe, "wb") as f:
            f.write(b"0" * 65536)
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as exc:
        why = "it is read-only" if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else exc.strerror
        raise VaelabError(f"cannot write to run directory {run_dir}: {why}; "
                          "choose a writable --out with free space") from None


def checkpoint_bytes(model) -> int:
    """Size of one training checkpoint: weights plus Adam's two moments, plus RNG states."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return 3 * weights + (1 << 16)


def _check_space(run_dir: Path, model) -> None:
    """Refuse to start when the disk cannot hold the run's files: last, its .prev, best and a
    temporary copy of each being replaced, plus model.safetensors and room for metrics."""
    ckpt = checkpoint_bytes(model)
    need = 4 * ckpt + 2 * (ckpt // 3) + (1 << 20)
    try:
        free = shutil.disk_usage(run_dir).free
    except OSError:
        return
    if free < need:
        raise VaelabError(f"only {free / 2**20:.1f} MiB free on the disk holding {run_dir}; this run's "
                          f"checkpoints need about {need / 2**20:.1f} MiB; free space or choose another --out")


@contextlib.contextmanager
def _lock(run_dir: Path):
    """One training process per run directory (the lock dies with its process, even on SIGKILL)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    try:
        fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise VaelabError(f"another vaelab process is training in {run_dir}; wait for it or stop it "
                              "first (two writers would mix their checkpoints)") from None
        yield
    finally:
        os.close(fd)


class _StopRequest:
    """Ctrl-C (or SIGTERM) once: finish the current step, save a checkpoint, stop. Twice: stop
    at once; atomic writes leave the last checkpoint intact either way."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self):
        self.signal: str | None = None
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:
            for sig in self._previous:
                signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        # os.write, not print: a handler may run while the progress bar is writing to stderr
        os.write(2, (f"\n{self.signal}: stopping after this step and saving a checkpoint; "
                     "press Ctrl-C again to stop at once\n").encode())

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        return False


def _nonfinite(loss, epoch: int, step: int, last: Path, grad: bool = False, skipped: int = 0) -> VaelabError:
    bad = [k for k, v in loss.terms.items() if not torch.isfinite(v).all()] or ["total"]
    values = ", ".join(f"{k} = {float(v.detach()):.4g}" for k, v in loss.terms.items())
    kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
    what = "the gradient became non-finite" if grad else "loss became non-finite"
    where = f"at epoch {epoch + 1}, step {step}: " + ("" if grad else f"term '{bad[0]}' ")
    after = f" after {count(skipped, 'skipped step')} (--nonfinite-max-skips)" if skipped else ""
    return VaelabError(f"{what} {where}({values}){after}; {kept}; lower --lr or set --grad-clip"
                       + ("" if skipped else " or --nonfinite skip"))


def _check_counters(counters, where: Path) -> dict:
    """The loop counters of a checkpoint, each of the type the loop needs (defaults for
    counters that older checkpoints lack)."""
    counters = {"epoch_step": 0, "lr_scale": 1.0, "skipped": 0, "epoch_skipped": 0, **counters}
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # noqa: E731
    ok = all(isinstance(counters.get(k), int) and not isinstance(counters[k], bool) and counters[k] >= 0
             for k in ("epoch", "step", "best_epoch", "bad_epochs", "epoch_step", "skipped", "epoch_skipped"))
    ok = ok and (counters["best_val"] is None if "best_val" not in counters or counters["best_val"] is None
                 else number(counters["best_val"]))
    ok = ok and number(counters["lr_scale"]) and 0 < counters["lr_scale"] <= 1
    ok = ok and ("epoch_lr" not in counters or number(counters["epoch_lr"]))
    if not ok:
        raise VaelabError(f"checkpoint {where} holds damaged loop counters; delete it to resume from "
                          f"{previous_path(where).name}, or start a new run")
    counters.setdefault("best_val", None)
    return counters


NEAR_CONSTANT_RANGE = 1 / 32  # about 8 grey levels of 255 across the whole training set
NEAR_CONSTANT_STD = 0.01


def check_spread(x: torch.Tensor) -> None:
    """Check the training images before step 1: non-finite pixels are refused, and (nearly)
    constant images get a one-line warning, since a model learns nothing from them and
    the cause is usually a scaling slip (0/1 masks divided by 255, say)."""
    if x.numel() == 0:
        return
    finite = torch.isfinite(x)
    if not finite.all():
        raise VaelabError(f"the training images hold {int((~finite).sum()):,} NaN or inf pixel values; "
                          "replace or drop them before training")
    lo, hi = (float(v) for v in torch.aminmax(x))
    std = float(x.std()) if x.numel() > 1 else 0.0
    if hi - lo < NEAR_CONSTANT_RANGE or std < NEAR_CONSTANT_STD:
        warnings.warn(f"the {len(x):,} training images are nearly constant (pixels {lo:.4g}..{hi:.4g}, standard "
                      f"deviation {std:.2g}): a model learns next to nothing from them; check how the data "
                      "was scaled", VaelabWarning, stacklevel=2)


def _grad_norm(params) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def _mean_terms(model, x, y, batch_size: int) -> dict[str, float]:
    """Full-objective loss terms averaged over a dataset (no gradients)."""
    sums: dict[str, float] = {}
    model.schedule(math.inf)
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size]
            yb = None if y is None else y[i:i + batch_size]
            loss = model(Batch(xb, yb))
            n = xb.shape[0]
            sums["loss"] = sums.get("loss", 0.0) + float(loss.total) * n
            for k, v in loss.terms.items():
                sums[k] = sums.get(k, 0.0) + float(v) * n
    return {k: v / x.shape[0] for k, v in sums.items()}




def fit(model, train_x: torch.Tensor, train_y: torch.Tensor | None, val_x: torch.Tensor | None,
        val_y: torch.Tensor | None, config: TrainConfig, run_dir: str | os.PathLike, *,
        resume: bool = False, data_record: dict | None = None, progress: bool = True) -> TrainResult:
    """Train ``model`` and write the run directory. Inputs are float tensors in [0, 1]."""
    run_dir = Path(run_dir)
    last_path = run_dir / "checkpoints" / "last.safetensors"
    best_path = run_dir / "checkpoints" / "best.safetensors"
    binarize = resolve_binarize(config.binarize, model)
    record = {"vaelab_version": __version__, **model_record(model), "train": config.to_dict(),
              "resolved": {"binarize": binarize}, "data": data_record or {}}
    if resume:
        resume = _resumable(run_dir, last_path, record, data_record)
    elif last_path.exists() or (run_dir / "run.json").exists():
        raise VaelabError(f"{run_dir} already holds a run; pass --resume to continue it, "
                          "or choose another --out")
    _check_writable(run_dir)
    _check_space(run_dir, model)

    with _lock(run_dir), threads(config.threads):
        remove_stale_temporaries(run_dir, RUN_FILES)  # left by a process killed mid-write
        remove_stale_temporaries(last_path.parent, CHECKPOINT_FILES)
        device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        np.random.seed(config.seed % 2**32)
        random.seed(config.seed)
        order = torch.Generator().manual_seed(config.seed)
        bin_gen = torch.Generator().manual_seed(config.seed + 1)
        generators = {"order": order, "binarize": bin_gen}

        model.to(device)
        train_x = train_x.to(device, torch.float32)
        if not resume:
            check_spread(train_x)
        if binarize == "static":
            train_x = binarize_static(train_x, config.seed + 2)
        if val_x is not None and val_x.shape[0] > 0:
            val_x = val_x.to(device, torch.float32)
            if binarize != "none":
                val_x = binarize_static(val_x, VAL_BINARIZATION_SEED)
            val_y = None if val_y is None else val_y.to(device)
        else:
            val_x = None
        train_y = None if train_y is None else train_y.to(device)

        optimizer = make_adam(model.parameters(), config)
        counters = _check_counters({"epoch": 0, "step": 0, "best_val": None, "best_epoch": 0, "bad_epochs": 0},
                                   last_path)
        metrics_path = run_dir / "metrics.jsonl"
        batches = Batches(train_x, train_y, config.batch_size, order=order,
                          binarize=bin_gen if binarize == "dynamic" else None)
        steps = len(batches)
        partial = None  # the running terms of an epoch that a Ctrl-C checkpoint cut short
        if resume:
            try:
                tensors, state, used = read_resume_checkpoint(last_path)
                counters = _check_counters(restore_checkpoint(tensors, state, model, optimizer, generators, used),
                                           used)
                if counters["epoch_step"]:
                    partial = _partial_epoch(tensors, state, counters, steps, device, used)
            except VaelabError as exc:
                raise VaelabError(f"--resume: {exc}") from None
            if _finished(counters, config):  # nothing to train: leave every file as it is
                _load_best(model, best_path)
                if not all((run_dir / name).exists() for name in ("samples.png", "reconstructions.png")):
                    _save_pictures(model, run_dir, config.seed, val_x if val_x is not None else train_x)
                return TrainResult(model, run_dir, counters["epoch"], counters["best_epoch"], counters["best_val"],
                                   counters["epoch"] < config.epochs, counters["skipped"], already_finished=True)
            _truncate_metrics(metrics_path, counters["epoch"])
            atomic_write_json(run_dir / "run.json", record)  # the settings now in force (e.g. new epochs)
        else:
            model.prepare(train_x)
            atomic_write_json(run_dir / "run.json", record)
            metrics_path.unlink(missing_ok=True)

        params = [p for p in model.parameters()]
        skip_mode = config.nonfinite == "skip"
        stopped_early = False
        epoch = counters["epoch"]
        stop = _StopRequest()

        def write(action):
            """Run a write; a failure stops the run with the last good checkpoint named."""
            try:
                action()
            except WriteError as exc:
                kept = f"the last good checkpoint {last_path} is intact" if last_path.exists() else \
                    "no checkpoint was written yet"
                raise VaelabError(f"{exc}; training stopped after step {counters['step']}; {kept}: "
                                  "continue with --resume once the disk has room and is writable") from None

        try:
            with stop:
                while epoch < config.epochs:
                    if config.patience and counters["bad_epochs"] >= config.patience:
                        stopped_early = True
                        break
                    start = counters["epoch_step"]
                    if partial is None:
                        history: list[torch.Tensor] = []  # per-step term values, summed once per epoch
                        sizes: list[int] = []
                        names: tuple[str, ...] | None = None
                        counters["epoch_skipped"] = 0
                        counters["epoch_lr"] = learning_rate(config.lr_schedule, config.lr, epoch,
                                                             config.epochs) * counters["lr_scale"]
                    else:
                        history, sizes, names = partial
                        partial = None
                    lr = counters["epoch_lr"]
                    base_lr = learning_rate(config.lr_schedule, config.lr, epoch, config.epochs)
                    _set_lr(optimizer, base_lr * counters["lr_scale"])
                    t0 = time.perf_counter()
                    model.train()
                    epoch_order = order.get_state()  # this epoch's permutation is drawn from it
                    bar = _bar(progress, steps, f"epoch {epoch + 1}/{config.epochs}", start)
                    for i, (xb, yb) in enumerate(batches.epoch(start), start):
                        model.schedule(epoch + i / steps)
                        loss = model(Batch(xb, yb))
                        bad = None
                        if not math.isfinite(loss.total.item()):
                            bad = "loss"
                        else:
                            optimizer.zero_grad(set_to_none=True)
                            loss.total.backward()
                            norm = None
                            if config.grad_clip > 0:
                                norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                            if skip_mode and not torch.isfinite(norm if norm is not None else _grad_norm(params)):
                                bad = "gradient"
                            else:
                                optimizer.step()
                                history.append(torch.stack(tuple(loss.terms.values())).detach())
                                sizes.append(xb.shape[0])
                                names = names or tuple(loss.terms)
                        if bad is not None:
                            if not skip_mode or counters["skipped"] >= config.nonfinite_max_skips:
                                raise _nonfinite(loss, epoch, counters["step"] + 1, last_path,
                                                 grad=bad == "gradient", skipped=counters["skipped"])
                            counters["skipped"] += 1
                            counters["epoch_skipped"] += 1
                            counters["lr_scale"] *= config.nonfinite_lr_factor
                            _set_lr(optimizer, base_lr * counters["lr_scale"])
                            optimizer.zero_grad(set_to_none=True)
                            if progress:
                                _write_line(f"skipped step {counters['step'] + 1}: non-finite {bad}; "
                                            f"learning rate now {base_lr * counters['lr_scale']:.3g}")
                        counters["step"] += 1
                        if bar is not None:
                            bar.update(1)
                            if i % 25 == 0 and history:
                                bar.set_postfix(_running(names, history), refresh=False)
                        if stop.signal and i + 1 < steps:  # save mid-epoch, resumable bit for bit
                            counters["epoch_step"] = i + 1
                            extra = {"history": torch.stack(history) if history else torch.zeros(0, 0),
                                     "sizes": torch.tensor(sizes, dtype=torch.int64)}
                            write(lambda: save_checkpoint(
                                last_path, model, optimizer, {"order": epoch_order, "binarize": bin_gen},
                                counters, extra, {"terms": list(names or ())}, keep_previous=True))
                            if bar is not None:
                                bar.close()
                            raise TrainingInterrupted(
                                f"stopped by {stop.signal} at epoch {epoch + 1}, step {counters['step']}; "
                                f"{last_path} holds everything: continue with --resume")
                    if bar is not None:
                        bar.close()
                    train_terms = _epoch_means(history, sizes, names)
                    model.eval()
                    val_terms = _mean_terms(model, val_x, val_y, config.eval_batch_size) if val_x is not None else None
                    score = val_terms["loss"] if val_terms else None
                    if score is not None and not math.isfinite(score):
                        raise VaelabError(f"validation loss became non-finite after epoch {epoch + 1} "
                                          f"({', '.join(f'{k} = {v:.4g}' for k, v in val_terms.items())}); "
                                          f"the last good checkpoint is {last_path}; lower --lr or set --grad-clip")
                    epoch += 1
                    improved = counters["best_val"] is None or (score is not None and score < counters["best_val"])
                    if improved:
                        counters.update(best_val=score, best_epoch=epoch, bad_epochs=0)
                    else:
                        counters["bad_epochs"] += 1
                    counters.update(epoch=epoch, epoch_step=0)
                    line = {"epoch": epoch, "step": counters["step"], "lr": lr,
                            "seconds": round(time.perf_counter() - t0, 3), "train": train_terms}
                    if val_terms is not None:
                        line["val"] = val_terms
                    if skip_mode:
                        line.update(skipped=counters["epoch_skipped"], lr_scale=counters["lr_scale"])
                    # Order matters: `last` goes last, so it never points past a missing best/model.
                    write(lambda: _append_metrics(metrics_path, line))
                    if improved:
                        write(lambda: save_checkpoint(best_path, model, optimizer, generators, counters))
                        write(lambda: save(model, run_dir))
                    write(lambda: save_checkpoint(last_path, model, optimizer, generators, counters,
                                                  keep_previous=True))
                    if progress:
                        _summary(line, improved and val_terms is not None)
                    if stop.signal and epoch < config.epochs:
                        raise TrainingInterrupted(f"stopped by {stop.signal} after epoch {epoch}; {last_path} "
                                                  "holds everything: continue with --resume")
        except KeyboardInterrupt:
            saved = _describe_checkpoint(last_path)
            if saved is None:
                raise TrainingInterrupted("interrupted before the first checkpoint; nothing was saved: the same "
                                          "command with --resume starts the run again") from None
            raise TrainingInterrupted(f"interrupted; {run_dir} keeps {saved} (intact): continue with --resume") from None

        _load_best(model, best_path)
        _save_pictures(model, run_dir, config.seed, val_x if val_x is not None else train_x)
        if progress and counters["skipped"]:
            _write_line(f"{count(counters['skipped'], 'step')} with non-finite values "
                        f"{'was' if counters['skipped'] == 1 else 'were'} skipped")
        return TrainResult(model, run_dir, epoch, counters["best_epoch"], counters["best_val"], stopped_early,
                           counters["skipped"])


def _same_data(recorded: dict, now: dict) -> bool:
    """Whether a resumed run sees the data it started on (a spec recorded with a relative
    path by an older vaelab equals its absolute form)."""
    from ..data.sources import canonical_spec

    def canonical(record: dict) -> dict:
        spec = record.get("spec")
        try:
            return {**record, "spec": canonical_spec(spec)} if isinstance(spec, str) else record
        except VaelabError:
            return record

    return canonical(recorded) == canonical(now)


def _save_pictures(model, run_dir: Path, seed: int, x: torch.Tensor) -> None:
    """samples.png and reconstructions.png of the best weights: the last step of a run."""
    from ..viz.grids import save_reconstructions, save_samples

    save_samples(model, run_dir / "samples.png", n=64, seed=seed)
    save_reconstructions(model, x[:32], run_dir / "reconstructions.png")


def _resumable(run_dir: Path, last: Path, record: dict, data_record: dict | None) -> bool:
    """Whether ``--resume`` continues a checkpoint (True) or starts the run from the beginning
    (False: there is no run yet, or it was killed before its first checkpoint), so a script
    or an elastic restart can always re-run the same command. A different or damaged run is
    refused, and nothing of it is touched."""
    has_checkpoint = last.exists() or previous_path(last).exists()
    if not (run_dir / "run.json").exists():
        if has_checkpoint:
            raise VaelabError(f"--resume: {run_dir} holds checkpoints but no run.json, so it is damaged or not a "
                              "vaelab run; restore its run.json or choose another --out")
        print(f"--resume: no run in {run_dir} yet; starting a new one", file=sys.stderr, flush=True)
        return False
    recorded = read_run_record(run_dir / "run.json")
    for key in ("model", "config"):
        if recorded.get(key) != record[key]:
            raise VaelabError(f"--resume: the run in {run_dir} is a different model "
                              f"({recorded.get('model')} {recorded.get('config')}); "
                              "resume with the same settings or choose another --out")
    if recorded.get("data") and data_record and not _same_data(recorded["data"], record["data"]):
        raise VaelabError(f"--resume: the run in {run_dir} was trained on {recorded['data']}, "
                          f"not {record['data']}; resume with the same data and --val-size")
    if not has_checkpoint:
        print(f"--resume: the run in {run_dir} stopped before its first checkpoint; starting it again "
              "from the beginning", file=sys.stderr, flush=True)
    return has_checkpoint


def _finished(counters: dict, config: TrainConfig) -> bool:
    """Every epoch ran, or early stopping ended the run: a resume has nothing to train."""
    return counters["epoch"] >= config.epochs or bool(config.patience and counters["bad_epochs"] >= config.patience)


def _load_best(model, best: Path) -> None:
    """The best epoch's weights, in eval mode: what a finished run hands back."""
    best_tensors, _ = read_checkpoint(best)
    model.load_state_dict({k[6:]: v for k, v in best_tensors.items() if k.startswith("model/")})
    model.eval()
    model.zero_grad(set_to_none=True)


def _describe_checkpoint(last: Path) -> str | None:
    """Which checkpoint a resume would use, checked (None: there is none)."""
    for path in (last, previous_path(last)):
        try:
            _, state = read_checkpoint(path)
            c = state["counters"]
            if c.get("epoch_step"):
                return f"the checkpoint at epoch {c['epoch'] + 1}, step {c['step']}"
            return f"the checkpoint of epoch {c['epoch']}"
        except (VaelabError, KeyError, TypeError):
            continue
    return None


def _set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _partial_epoch(tensors: dict, state: dict, counters: dict, steps: int, device, where: Path):
    """The running terms saved by a mid-epoch checkpoint, as the loop keeps them."""
    history, sizes = tensors.get("extra/history"), tensors.get("extra/sizes")
    extra = state.get("extra")
    names = extra.get("terms") if isinstance(extra, dict) else None
    if (history is None or sizes is None or not isinstance(names, list)
            or not all(isinstance(n, str) for n in names) or history.ndim != 2
            or history.dtype not in (torch.float32, torch.float64) or sizes.dtype != torch.int64
            or sizes.ndim != 1 or len(sizes) != len(history) or not 0 < counters["epoch_step"] < steps
            or (len(history) and (history.shape[1] != len(names) or int(sizes.min()) <= 0))
            or not isinstance(counters.get("epoch_lr"), float)):
        raise VaelabError(f"checkpoint {where} was taken mid-epoch but does not fit this run "
                          "(its epoch data are damaged or the batch size changed)")
    return list(history.to(device).unbind(0)), sizes.tolist(), tuple(names) or None


def _epoch_means(history: list, sizes: list, names) -> dict[str, float]:
    if not history:  # every step of the epoch was skipped
        return {}
    means = (torch.stack(history) * torch.tensor(sizes, dtype=torch.float32, device=history[0].device)
             .unsqueeze(1)).sum(0) / sum(sizes)
    return dict(zip(names, means.tolist()))


def _write_line(text: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(text, file=sys.stderr)


def _running(names, history: list) -> dict:
    recent = torch.stack(history[-25:]).mean(0).tolist()
    return {k: f"{v:.2f}" for k, v in zip(names, recent)}


def _bar(progress: bool, total: int, desc: str, initial: int = 0):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, mininterval=0.5, dynamic_ncols=True,
                disable=None)


def _summary(line: dict, best: bool) -> None:
    from tqdm.auto import tqdm

    fmt = lambda d: " ".join(f"{k} {v:.2f}" for k, v in d.items())  # noqa: E731
    text = f"epoch {line['epoch']}  train: {fmt(line['train'])}"
    if "val" in line:
        text += f"  | val: {fmt(line['val'])}{' *' if best else ''}"
    if line.get("skipped"):
        text += f"  [{count(line['skipped'], 'non-finite step')} skipped]"
    tqdm.write(f"{text}  ({line['seconds']:.1f}s)")


def _append_metrics(path: Path, line: dict) -> None:
    new = not path.exists()
    try:
        with open(path, "a") as f:
            f.write(json.dumps(line) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc.strerror or brief(exc)}") from None
    if new:
        fsync_dir(path.parent)


def _truncate_metrics(path: Path, epoch: int) -> None:
    """Drop lines from epochs after the checkpoint (written before a crash)."""
    if not path.exists():
        return
    keep = []
    for raw in path.read_text(errors="replace").splitlines():
        try:
            if json.loads(raw)["epoch"] <= epoch:
                keep.append(raw)
        except (ValueError, KeyError, TypeError):
            continue
    atomic_write_bytes(path, ("\n".join(keep) + "\n").encode() if keep else b"")
