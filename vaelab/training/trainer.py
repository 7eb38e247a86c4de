"""The training loop: seeded, resumable, crash-safe, on one process or several.

``fit`` runs epochs of steps drawn by a sampler (:mod:`vaelab.data.samplers`); each step runs
the model's phases (:mod:`.step`); each epoch ends with validation (:mod:`.validation`) and
the run directory's writes in their crash-safe order (:mod:`.rundir`); a checkpoint
(:mod:`.checkpoint`) holds every optimiser, sampler stream and RNG, so a run killed at any
moment resumes to exactly the weights of an uninterrupted run (``benchmarks/soak.py``
checks this with SIGKILL). When training ends the model writes its own pictures
(``Model.end_of_run``). Under ``torchrun`` (:mod:`.distributed`) every rank trains its
share of each global batch and rank 0 writes.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import Config, choice, require
from ..data import binarize_static
from ..data.batch import Batch
from ..data.samplers import BINARIZE, LengthBucketSampler, SemiSupervisedSampler, ShuffledSampler, resolve_binarize
from ..errors import VaelabError, VaelabWarning
from ..files import atomic_write_json
from ..io import model_record, save
from ..threads import threads
from ..version import __version__
from ..words import count
from .board import Board, check_tensorboard
from .checkpoint import previous_path, read_checkpoint, read_resume_checkpoint, restore_checkpoint, save_checkpoint
from .distributed import Context, context, is_lost, local_device, lost, test_exit
from .report import epoch_bar, summary, write_line
from .rundir import RunDir
from .schedules import SCHEDULES, learning_rate
from .signals import StopRequest, TrainingInterrupted
from .step import Stepper, nonfinite_error
from .terms import EpochTerms, restore_epoch_terms
from .validation import monitored, validation_terms

VAL_BINARIZATION_SEED = 123
NONFINITE = ("stop", "skip")
# Settings a continued run may take anew: how long and where it runs, and what it logs.
RESUME_MAY_CHANGE = ("epochs", "threads", "device", "tensorboard", "curve_points")


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
    ``monitor`` names the validation value whose minimum marks the best epoch (``loss``, a
    loss term, or ``error`` for models that classify). Data with both labelled and
    unlabelled rows is drawn ``labelled_batch_size`` labelled rows per step beside
    ``batch_size`` unlabelled ones (0: in proportion to the two sets, at least 1).
    ``tensorboard`` also writes the values of ``metrics.jsonl`` as TensorBoard scalars.
    ``curve_points`` > 0 adds the terms' means over that many stretches of each epoch
    (``train_curve``), so a curve can follow the step where one point per epoch is too coarse.
    ``profile`` names the packaged settings file (:mod:`vaelab.profiles`) the run started from:
    a record only; the settings it holds are applied by ``vaelab train --profile`` or
    :func:`vaelab.profiles.profile_settings`.
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
    val_rows: str = field(
        default="random",
        metadata={"help": "which training rows are the validation split: random (drawn by --seed) or last "
                          "(the final ones, e.g. MNIST's last 10,000 as Kingma et al.)"})
    labels: int = field(default=0, metadata={
        "help": "keep the labels of this many training images, N/K per class (class-balanced, drawn by "
                "--label-seed; the rest unlabelled): semi-supervised learning; 0 = keep every label"})
    label_seed: int = field(default=0, metadata={"help": "seed of the labelled subset drawn for --labels"})
    test_fraction: float = field(
        default=0.0,
        metadata={"help": "hold out this fraction of folder:/npy: data without a test split as its test split (fixed seed; eval and reconstruct reuse it)"})
    patience: int = field(
        default=0,
        metadata={"help": "stop after this many epochs without a better validation value (--monitor) (0 = off)"})
    eval_batch_size: int = field(default=1000, metadata={"help": "images per batch of the validation pass"})
    threads: int = field(default=0, metadata={"help": "CPU threads (0 = all cores)"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present, else CPU), cpu or cuda[:N]"})
    nonfinite: str = field(
        default="stop",
        metadata={"help": "on a NaN/inf loss or gradient: stop (naming the step and term) or skip the step"})
    nonfinite_lr_factor: float = field(
        default=0.5,
        metadata={"help": "with --nonfinite skip: multiply the learning rate by this at each skip",
                  "applies": {"nonfinite": ("skip",)}})
    nonfinite_max_skips: int = field(
        default=10,
        metadata={"help": "with --nonfinite skip: stop after this many skipped steps",
                  "applies": {"nonfinite": ("skip",)}})
    lr_halve_patience: int = field(default=0, metadata={
        "help": "halve the learning rate after each run of this many epochs without a better validation value "
                "(--monitor), at most 5 times (0 = off)"})
    monitor: str = field(default="loss", metadata={
        "help": "validation value whose minimum marks the best epoch: loss, a loss term, or error for models "
                "that classify"})
    labelled_batch_size: int = field(default=0, metadata={
        "help": "labelled rows per step beside --batch-size unlabelled ones, for partly labelled data "
                "(0 = in proportion, at least 1)"})
    curve_points: int = field(default=0, metadata={
        "help": "also record the training terms at this many evenly spaced points of each epoch (the mean "
                "of each stretch of steps) as train_curve in metrics.jsonl, for curves against the step "
                "(0 = the epoch's mean only)"})
    tensorboard: bool = field(default=False, metadata={
        "help": "also write each epoch's values as TensorBoard scalars into RUN/tensorboard/ (needs the "
                "tensorboard package)"})
    profile: str = field(default="", metadata={
        "metavar": "NAME",
        "help": "start from the family's named settings file NAME (quick, paper; vaelab profiles FAMILY shows "
                "what each sets), under --config and the options given; recorded in run.json"})

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
        choice("validation rows", self.val_rows, ("random", "last"))
        require(self.labels >= 0, f"labels must be >= 0 (0 = keep every label), got {self.labels}")
        require(self.patience >= 0, f"patience must be >= 0 (0 = off), got {self.patience}")
        require(self.lr_halve_patience >= 0, f"lr_halve_patience must be >= 0 (0 = off), got {self.lr_halve_patience}")
        require(self.curve_points >= 0, f"curve_points must be >= 0 (0 = off), got {self.curve_points}")
        require(self.eval_batch_size > 0, f"eval_batch_size must be positive, got {self.eval_batch_size}")
        require(0 <= self.threads <= 4096, f"threads must be >= 0 (0 = all cores), got {self.threads}")
        require(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
                f"unknown device '{self.device}'; choose auto, cpu or cuda[:N]")
        choice("non-finite policy", self.nonfinite, NONFINITE)
        require(0 < self.nonfinite_lr_factor <= 1,
                f"nonfinite_lr_factor must lie in (0, 1], got {self.nonfinite_lr_factor}")
        require(self.nonfinite_max_skips >= 0, f"nonfinite_max_skips must be >= 0, got {self.nonfinite_max_skips}")
        require(bool(self.monitor) and self.monitor.isprintable(), "monitor must name a validation value, e.g. loss")
        require(self.labelled_batch_size >= 0,
                f"labelled_batch_size must be >= 0 (0 = in proportion), got {self.labelled_batch_size}")


@dataclass
class TrainResult:
    model: torch.nn.Module
    run_dir: Path
    epochs_run: int
    best_epoch: int
    best_val: float | None
    stopped_early: bool
    skipped_steps: int = 0
    already_finished: bool = False  # a --resume that found every epoch done: nothing was trained
    monitor: str = "loss"  # what best_val is: the validation value named by --monitor (m2: error)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VaelabError(f"--device {name} asked for, but no CUDA device is available; use --device cpu")
    return torch.device(name)


def checkpoint_bytes(model) -> int:
    """Size of one training checkpoint: weights plus Adam's two moments, plus RNG states."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return 3 * weights + (1 << 16)


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




def fit(model, train, val, config: TrainConfig, run_dir: str | os.PathLike, *, resume: bool = False,
        data_record: dict | None = None, progress: bool = True) -> TrainResult:
    """Train ``model`` on ``train`` (a Dataset or Batch), validating on ``val`` (or None),
    and write the run directory ``run_dir``."""
    device = resolve_device(local_device(config.device))
    if config.tensorboard:
        check_tensorboard()
    ctx = context(device)
    run = RunDir(run_dir, writer=ctx.writer)
    binarize = resolve_binarize(config.binarize, model)
    record = {"vaelab_version": __version__, **model_record(model), "train": config.to_dict(),
              "resolved": {"binarize": binarize}, "data": data_record or {}}
    with contextlib.ExitStack() as held, threads(config.threads):
        resume = ctx.agree(lambda: _claim(run, record, resume, checkpoint_bytes(model), held))
        try:
            return _Training(model, config, run, ctx, device, binarize, progress).run(train, val, record, resume)
        except RuntimeError as exc:  # a collective failed: another rank died or stopped answering
            if ctx.active and is_lost(exc):
                raise lost(exc, ctx.rank, run.last) from None
            raise


def _claim(run: RunDir, record: dict, resume: bool, size: int, held: contextlib.ExitStack) -> bool:
    """The checks before training and the run directory's lock (held until ``held`` closes);
    whether there is a checkpoint to resume. In a job every rank runs it and rank 0's
    answer holds: the ranks have read the directory before rank 0 writes to it."""
    if resume:
        resume = run.resumable(record, _same_data)
    else:
        run.check_new()
    run.check_writable()
    run.check_space(size)
    held.enter_context(run.lock())
    return resume


def _batch_of(data) -> Batch | None:
    """A Dataset or Batch as a Batch (None stays None; an empty set counts as none)."""
    if data is None:
        return None
    batch = data if isinstance(data, Batch) else data.batch()
    return batch if len(batch) else None


class _Training:
    """One call of :func:`fit`: its parts, each a method a reader can hold in mind."""

    def __init__(self, model, config: TrainConfig, run: RunDir, ctx: Context, device, binarize: str, progress: bool):
        self.model, self.config, self.dir, self.ctx = model, config, run, ctx
        self.device, self.binarize = device, binarize
        self.progress = progress and ctx.writer
        self.board = None
        self.counters = _check_counters({"epoch": 0, "step": 0, "best_val": None, "best_epoch": 0, "bad_epochs": 0},
                                        run.last)

    # -- setup ---------------------------------------------------------------------------
    def _seed(self) -> None:
        seed = self.config.seed
        torch.manual_seed(seed + self.ctx.rank)  # each rank its own noise for its own rows
        np.random.seed((seed + self.ctx.rank) % 2**32)
        random.seed(seed + self.ctx.rank)

    def _data(self, train, val, fresh: bool) -> tuple[Batch, Batch | None]:
        """Training and validation batches on the device, checked and binarized as configured."""
        train = _batch_of(train)
        if train is None:
            raise VaelabError("no training data: the training set is empty")
        train = train.to(self.device)
        if train.x.is_floating_point():
            train = train.with_x(train.x.float())
            if fresh and self.ctx.writer:
                check_spread(train.x)
        if self.binarize == "static":
            train = train.with_x(binarize_static(train.x, self.config.seed + 2))
        val = _batch_of(val)
        if val is not None:
            val = val.to(self.device)
            if val.x.is_floating_point():
                val = val.with_x(val.x.float())
            if self.binarize != "none":
                val = val.with_x(binarize_static(val.x, VAL_BINARIZATION_SEED))
        return train, val

    def _sampler(self, train: Batch):
        """Semi-supervised when the data mixes labelled and unlabelled rows; batched by length
        when the rows carry lengths (sentences); else shuffled."""
        cfg, dynamic = self.config, self.binarize == "dynamic"
        mask = train.labelled_rows()
        if train.y is not None and train.labelled is not None and mask.any() and not mask.all():
            labelled, unlabelled = train.select(mask.nonzero().squeeze(1)), train.select((~mask).nonzero().squeeze(1))
            per_step = cfg.labelled_batch_size or max(1, round(cfg.batch_size * len(labelled) / len(unlabelled)))
            return SemiSupervisedSampler(labelled, unlabelled, per_step, cfg.batch_size, seed=cfg.seed,
                                         binarize=dynamic, rank=self.ctx.rank, world=self.ctx.world)
        sampler = LengthBucketSampler if "lengths" in train.extras else ShuffledSampler
        return sampler(train, cfg.batch_size, seed=cfg.seed, binarize=dynamic, rank=self.ctx.rank, world=self.ctx.world)

    # -- checkpoints ---------------------------------------------------------------------
    def _generators(self, epoch_state: dict | None = None) -> dict:
        """Every stream a checkpoint keeps: the sampler's (an epoch's order from its start,
        for a mid-epoch save) and, in a multi-process job, each rank's torch RNG."""
        generators = {**self.sampler.generators, **(epoch_state or {})}
        if self.ctx.active:  # collective: every rank calls it at the same point
            for r, state in enumerate(self.ctx.gather(torch.get_rng_state())):
                generators[f"torch@{r}"] = state
            if self.device.type == "cuda":  # each GPU's own noise stream too
                for r, state in enumerate(self.ctx.gather(torch.cuda.get_rng_state(self.device))):
                    generators[f"cuda@{r}"] = state
        return generators

    def _save(self, path: Path, generators: dict, **kwargs) -> None:
        self.dir.write(lambda: save_checkpoint(path, self.model, self.stepper.optimizers, generators,
                                               self.counters, **kwargs), self.counters["step"])

    def _restore(self, steps: int) -> EpochTerms | None:
        """Model, optimisers, streams and counters from the last checkpoint; the running terms
        of an epoch a Ctrl-C cut short (None at an epoch boundary)."""
        try:
            tensors, state, used = read_resume_checkpoint(self.dir.last)
            restored = restore_checkpoint(tensors, state, self.model, self.stepper.optimizers,
                                          self.sampler.generators, used)
            self.counters = _check_counters(restored, used)
            own, gpu = tensors.get(f"rng/torch@{self.ctx.rank}"), tensors.get(f"rng/cuda@{self.ctx.rank}")
            if self.ctx.rank and own is not None:
                torch.set_rng_state(own)
            if gpu is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(gpu, self.device)
            if self.counters["epoch_step"]:
                return restore_epoch_terms(tensors, state, self.counters, steps, self.device, used)
        except VaelabError as exc:
            raise VaelabError(f"--resume: {exc}") from None
        return None

    # -- the run -------------------------------------------------------------------------
    def run(self, train, val, record: dict, resume: bool) -> TrainResult:
        self._seed()
        train, self.val = self._data(train, val, fresh=not resume)
        self.sampler = self._sampler(train)
        self.train_head = train[:1000]  # what ``training_health`` checks without validation data
        self.model.to(self.device)
        if not resume:
            self.model.prepare(train)
        self.stepper = Stepper(self.model, self.config, self.ctx.wrap(self.model, self.device),
                               agree=self.ctx.any if self.ctx.active else None)
        self.steps = len(self.sampler)
        terms = None
        if resume:
            terms = self._restore(self.steps)
            if _finished(self.counters, self.config):  # nothing to train: leave every file as it is
                return self._already_finished(train)
            self.dir.truncate_metrics(self.counters["epoch"])
            self.dir.write(lambda: atomic_write_json(self.dir.record, record), 0)  # the settings now in force
        else:
            self.dir.write(lambda: atomic_write_json(self.dir.record, record), 0)
            self.dir.write(lambda: self.dir.metrics.unlink(missing_ok=True), 0)
        with self._board():
            stopped_early = self._epochs(terms)
        return self._finish(train, stopped_early)

    @contextlib.contextmanager
    def _board(self):
        """TensorBoard's writer for the epochs to come (rank 0, with ``tensorboard`` only)."""
        if not (self.config.tensorboard and self.ctx.writer):
            yield
            return
        self.board = Board(self.dir.root, self.counters["epoch"])
        try:
            yield
        finally:
            self.board.close()
            self.board = None

    def _epochs(self, terms: EpochTerms | None) -> bool:
        """Epochs until the configured number or early stopping (True), or a stop request."""
        stop = StopRequest(say=self.ctx.writer)
        try:
            with stop:
                while self.counters["epoch"] < self.config.epochs:
                    if self.config.patience and self.counters["bad_epochs"] >= self.config.patience:
                        return True
                    self._epoch(terms, stop)
                    terms = None
                    if self.ctx.any(stop.signal is not None) and self.counters["epoch"] < self.config.epochs:
                        raise TrainingInterrupted(f"stopped by {stop.signal or 'a stop request'} after epoch "
                                                  f"{self.counters['epoch']}; {self.dir.last} holds everything: "
                                                  "continue with --resume")
        except KeyboardInterrupt:
            saved = _describe_checkpoint(self.dir.last)
            if saved is None:
                raise TrainingInterrupted("interrupted before the first checkpoint; nothing was saved: the same "
                                          "command with --resume starts the run again") from None
            raise TrainingInterrupted(f"interrupted; {self.dir.root} keeps {saved} (intact): "
                                      "continue with --resume") from None
        return False

    def _epoch(self, terms: EpochTerms | None, stop: StopRequest) -> None:
        """One epoch's steps from where a checkpoint left off, then validation and the writes."""
        c, cfg, epoch = self.counters, self.config, self.counters["epoch"]
        start = c["epoch_step"]
        if terms is None:
            terms = EpochTerms()
            c["epoch_skipped"] = 0
            c["epoch_lr"] = learning_rate(cfg.lr_schedule, cfg.lr, epoch, cfg.epochs) * c["lr_scale"]
        base_lr = learning_rate(cfg.lr_schedule, cfg.lr, epoch, cfg.epochs)
        self.stepper.set_lr(base_lr, c["lr_scale"])
        t0 = (time.perf_counter(), time.process_time())  # wall and this process's CPU seconds
        self.model.train()
        epoch_state = self.sampler.epoch_state()  # this epoch's order is drawn from it
        bar = epoch_bar(self.progress, self.steps, f"epoch {epoch + 1}/{cfg.epochs}", start)
        for i, batch in enumerate(self.sampler.epoch(start), start):
            test_exit(self.ctx.rank, c["step"] + 1)
            self.model.schedule(epoch + i / self.steps)
            result = self.stepper(batch, self.sampler.share, skip=cfg.nonfinite == "skip")
            if result.terms is None:
                self._skip(result, epoch, base_lr)
            else:
                terms.add(*self._global(result.terms, len(batch)))
            c["step"] += 1
            if bar is not None:
                bar.update(1)
                if i % 25 == 0 and terms.history:
                    bar.set_postfix(terms.recent(), refresh=False)
            if self.ctx.any(stop.signal is not None) and i + 1 < self.steps:  # save mid-epoch, resumable bit for bit
                c["epoch_step"] = i + 1
                extra, extra_state = terms.saved()
                self._save(self.dir.last, self._generators(epoch_state), extra=extra, extra_state=extra_state,
                           keep_previous=True)
                if bar is not None:
                    bar.close()
                raise TrainingInterrupted(f"stopped by {stop.signal or 'a stop request'} at epoch {epoch + 1}, "
                                          f"step {c['step']}; {self.dir.last} holds everything: continue with --resume")
        if bar is not None:
            bar.close()
        self._end_epoch(terms, c["epoch_lr"], t0)

    def _global(self, terms: dict[str, torch.Tensor], rows: int) -> tuple[dict[str, torch.Tensor], int]:
        """A step's terms over the global batch (each rank's means weighted by its rows), so
        every rank keeps, saves and reports what one process would."""
        if not self.ctx.active:
            return terms, rows
        values = torch.stack([v.detach().double() for v in terms.values()])
        sums = self.ctx.sum(torch.cat([values * rows, values.new_tensor([rows])]))
        total = int(sums[-1].item())
        return dict(zip(terms, (sums[:-1] / total).float().unbind(0))), total

    def _skip(self, result, epoch: int, base_lr: float) -> None:
        """A step with a non-finite value: stop, or (``nonfinite="skip"``) back off the rate."""
        c, cfg = self.counters, self.config
        if cfg.nonfinite != "skip" or c["skipped"] >= cfg.nonfinite_max_skips:
            raise nonfinite_error(result, epoch, c["step"] + 1, self.dir.last, skipped=c["skipped"])
        c["skipped"] += 1
        c["epoch_skipped"] += 1
        c["lr_scale"] *= cfg.nonfinite_lr_factor
        self.stepper.set_lr(base_lr, c["lr_scale"])
        self.stepper.zero_grad()
        if self.progress:
            write_line(f"skipped step {c['step'] + 1}: non-finite {result.bad}; "
                       f"learning rate now {base_lr * c['lr_scale']:.3g}")

    def _validate(self) -> dict[str, float] | None:
        if self.val is None:
            return None
        n, world, rank = len(self.val), self.ctx.world, self.ctx.rank
        split = self.ctx.active and n >= world  # each rank its share; a set smaller than the job whole on each
        part = self.val[rank * n // world:(rank + 1) * n // world] if split else self.val
        values = validation_terms(self.model, part, self.config.eval_batch_size, reduce=self.ctx.sum if split else None)
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise VaelabError(f"validation loss became non-finite after epoch {self.counters['epoch'] + 1} "
                              f"({', '.join(f'{k} = {v:.4g}' for k, v in values.items())}); "
                              f"the last good checkpoint is {self.dir.last}; lower --lr or set --grad-clip")
        return values

    def _end_epoch(self, terms: EpochTerms, lr: float, t0: tuple[float, float]) -> None:
        """Validation, the best epoch, and the epoch's files in their crash-safe order."""
        c = self.counters
        self.model.eval()
        val_terms = self._validate()
        score = monitored(val_terms, self.config.monitor)
        epoch = c["epoch"] + 1
        train_means = terms.means()
        problems = self._health(train_means)
        train_means.update({k: v for k, v in self._figures().items() if k not in train_means})  # terms win
        improved = c["best_epoch"] == 0 or (not problems and (
            c["best_val"] is None or (score is not None and score < c["best_val"])))
        if improved:
            c.update(best_val=score, best_epoch=epoch, bad_epochs=0)
        else:
            c["bad_epochs"] += 1
            self._halve_on_plateau()
        c.update(epoch=epoch, epoch_step=0)
        line = {"epoch": epoch, "step": c["step"], "lr": lr, "seconds": round(time.perf_counter() - t0[0], 3),
                "cpu_seconds": round(time.process_time() - t0[1], 3), "train": train_means}
        if val_terms is not None:
            line["val"] = val_terms
        if self.config.curve_points and terms.history:
            line["train_curve"] = terms.stretches(self.config.curve_points, c["step"] - self.steps, self.steps)
        if problems:  # named in metrics.jsonl and on stderr; never kept as best while a sound epoch exists
            line.update(diverged=True, warning="; ".join(problems))
            if self.ctx.writer:
                kept = "kept as the best epoch only because no earlier one exists" if improved else \
                    "not kept as the best epoch"
                warnings.warn(f"epoch {epoch}: {line['warning']}; {kept}", VaelabWarning, stacklevel=2)
        if self.config.nonfinite == "skip":
            line.update(skipped=c["epoch_skipped"], lr_scale=c["lr_scale"])
        generators = self._generators()
        # Order matters: `last` goes last, so it never points past a missing best/model.
        self.dir.write(lambda: self.dir.append_metrics(line), c["step"])
        if self.board is not None:
            self.board.add(line)
        if improved:
            self._save(self.dir.best, generators)
            self.dir.write(lambda: save(self.model, self.dir.root), c["step"])
        self._save(self.dir.last, generators, keep_previous=True)
        if self.progress:
            summary(line, improved and val_terms is not None)

    MAX_HALVINGS = 5

    def _halve_on_plateau(self) -> None:
        """``lr_halve_patience``: the learning rate halves after each run of that many epochs
        without improvement (Texar's text-VAE schedule), at most five times; the scale is a
        loop counter, so a resumed run keeps it."""
        c, patience = self.counters, self.config.lr_halve_patience
        if patience and c["bad_epochs"] % patience == 0 and c["lr_scale"] > 0.5 ** self.MAX_HALVINGS:
            c["lr_scale"] *= 0.5

    def _figures(self) -> dict[str, float]:
        """What the model counted over the epoch's steps (``epoch_figures``: a codebook's usage),
        logged beside the training terms; the model resets its counts."""
        figures = getattr(self.model, "epoch_figures", None)
        return {k: float(v) for k, v in figures().items()} if figures is not None else {}

    def _health(self, train_terms: dict[str, float]) -> list[str]:
        """What the model finds wrong with the epoch (an adversarial game that diverged, say),
        for models with ``training_health``; checked on validation images, else training ones."""
        check = getattr(self.model, "training_health", None)
        if check is None:
            return []
        data = self.val if self.val is not None else self.train_head
        with torch.no_grad():
            return list(check(train_terms, data))

    # -- the end -------------------------------------------------------------------------
    def _pictures(self, train: Batch) -> None:
        if self.ctx.writer:
            self.model.end_of_run(self.dir.root, self.val if self.val is not None else train, seed=self.config.seed)

    def _already_finished(self, train: Batch) -> TrainResult:
        c = self.counters
        _load_best(self.model, self.dir.best)
        pictures = ["reconstructions.png"] + (["samples.png"] if getattr(self.model, "can_sample", True) else [])
        if not all((self.dir.root / name).exists() for name in pictures):
            self._pictures(train)
        return TrainResult(self.model, self.dir.root, c["epoch"], c["best_epoch"], c["best_val"],
                           c["epoch"] < self.config.epochs, c["skipped"], already_finished=True,
                           monitor=self.config.monitor)

    def _finish(self, train: Batch, stopped_early: bool) -> TrainResult:
        """The best weights back in the model, the model's pictures, the result."""
        c = self.counters
        self.ctx.barrier()  # rank 0's best checkpoint is on disk before any rank reads it
        _load_best(self.model, self.dir.best)
        self._pictures(train)
        if self.progress and c["skipped"]:
            write_line(f"{count(c['skipped'], 'step')} with non-finite values "
                       f"{'was' if c['skipped'] == 1 else 'were'} skipped")
        return TrainResult(self.model, self.dir.root, c["epoch"], c["best_epoch"], c["best_val"], stopped_early,
                           c["skipped"], monitor=self.config.monitor)
