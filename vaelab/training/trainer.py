"""The training loop: seeded, resumable, atomic checkpoints, metrics in ``metrics.jsonl``.

Run directory layout::

    run.json                 full resolved configuration (model, training, data)
    config.json, model.safetensors   the best weights so far (what ``vaelab.load`` reads)
    checkpoints/last.safetensors     end of the latest epoch (weights, optimizer, RNGs)
    checkpoints/best.safetensors     the best epoch, with its *own* optimizer and RNG state
    metrics.jsonl            one JSON line per epoch
    samples.png, reconstructions.png written when training ends
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..config import Config, choice, require
from ..data import binarize_static
from ..data.batches import BINARIZE, Batches
from ..errors import VaelabError
from ..io import atomic_write_bytes, atomic_write_json, model_record, read_json, save
from .checkpoint import read_checkpoint, restore_checkpoint, save_checkpoint
from .schedules import SCHEDULES, learning_rate

VAL_BINARIZATION_SEED = 123


@dataclass(frozen=True)
class TrainConfig(Config):
    """Training settings; recorded in ``run.json``.

    ``binarize="auto"`` means dynamic binarization for Bernoulli-likelihood models and
    none otherwise. ``val_size`` below 1 is a fraction of the training set, otherwise a
    count. ``patience`` > 0 stops after that many epochs without a better validation
    loss. ``grad_clip`` > 0 clips the global gradient norm. ``threads`` 0 = all cores.
    """

    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "constant"
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    seed: int = 0
    binarize: str = "auto"
    val_size: float = 0.1
    patience: int = 0
    eval_batch_size: int = 1000
    threads: int = 0
    device: str = "auto"

    def validate(self) -> None:
        require(self.epochs > 0, f"epochs must be positive, got {self.epochs}")
        require(self.batch_size > 0, f"batch_size must be positive, got {self.batch_size}")
        require(self.lr > 0 and math.isfinite(self.lr), f"lr must be a positive number, got {self.lr}")
        choice("lr schedule", self.lr_schedule, SCHEDULES)
        require(all(0 <= b < 1 for b in self.adam_betas), f"adam_betas must lie in [0, 1), got {list(self.adam_betas)}")
        require(self.adam_eps > 0, f"adam_eps must be > 0, got {self.adam_eps}")
        require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        require(self.grad_clip >= 0, f"grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        choice("binarization", self.binarize, ("auto",) + BINARIZE)
        require(self.val_size >= 0, f"val_size must be >= 0, got {self.val_size}")
        require(self.patience >= 0, f"patience must be >= 0 (0 = off), got {self.patience}")
        require(self.eval_batch_size > 0, f"eval_batch_size must be positive, got {self.eval_batch_size}")
        require(self.threads >= 0, f"threads must be >= 0 (0 = all cores), got {self.threads}")
        require(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
                f"unknown device '{self.device}'; choose auto, cpu or cuda[:N]")


@dataclass
class TrainResult:
    model: torch.nn.Module = field(repr=False)
    run_dir: Path
    epochs_run: int
    best_epoch: int
    best_val: float | None
    stopped_early: bool


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
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"0" * 65536)
        probe.unlink()
    except OSError as exc:
        raise VaelabError(f"cannot write to run directory {run_dir}: {exc.strerror}; "
                          "choose a writable --out with free space") from None


def _mean_terms(model, x, y, batch_size: int) -> dict[str, float]:
    """Full-objective loss terms averaged over a dataset (no gradients)."""
    sums: dict[str, float] = {}
    model.schedule(math.inf)
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size]
            yb = None if y is None else y[i:i + batch_size]
            loss = model.loss(xb, yb)
            n = xb.shape[0]
            sums["loss"] = sums.get("loss", 0.0) + float(loss.total) * n
            for k, v in loss.terms.items():
                sums[k] = sums.get(k, 0.0) + float(v) * n
    return {k: v / x.shape[0] for k, v in sums.items()}


def _nonfinite(loss, epoch: int, step: int, last: Path) -> VaelabError:
    bad = [k for k, v in loss.terms.items() if not torch.isfinite(v).all()] or ["total"]
    values = ", ".join(f"{k} = {float(v.detach()):.4g}" for k, v in loss.terms.items())
    kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
    return VaelabError(f"loss became non-finite at epoch {epoch + 1}, step {step}: term '{bad[0]}' "
                       f"({values}); {kept}; lower --lr or set --grad-clip")


def fit(model, train_x: torch.Tensor, train_y: torch.Tensor | None, val_x: torch.Tensor | None,
        val_y: torch.Tensor | None, config: TrainConfig, run_dir: str | os.PathLike, *,
        resume: bool = False, data_record: dict | None = None, progress: bool = True) -> TrainResult:
    """Train ``model`` and write the run directory. Inputs are float tensors in [0, 1]."""
    from ..viz.grids import save_reconstructions, save_samples

    run_dir = Path(run_dir)
    last_path = run_dir / "checkpoints" / "last.safetensors"
    best_path = run_dir / "checkpoints" / "best.safetensors"
    binarize = resolve_binarize(config.binarize, model)
    record = {"vaelab_version": __version__, **model_record(model), "train": config.to_dict(),
              "resolved": {"binarize": binarize}, "data": data_record or {}}
    if resume:
        if not last_path.exists():
            raise VaelabError(f"--resume: no checkpoint in {run_dir} (expected {last_path}); "
                              "start a new run without --resume")
        recorded = read_json(run_dir / "run.json", "run record") if (run_dir / "run.json").exists() else {}
        for key in ("model", "config"):
            if recorded.get(key) != record[key]:
                raise VaelabError(f"--resume: the checkpoint in {run_dir} is from a different model "
                                  f"({recorded.get('model')} {recorded.get('config')}); "
                                  "resume with the same settings or choose another --out")
        if recorded.get("data") and data_record and recorded["data"] != record["data"]:
            raise VaelabError(f"--resume: the run in {run_dir} was trained on {recorded['data']}, "
                              f"not {record['data']}; resume with the same data and --val-size")
    elif last_path.exists() or (run_dir / "run.json").exists():
        raise VaelabError(f"{run_dir} already holds a run; pass --resume to continue it, "
                          "or choose another --out")
    _check_writable(run_dir)

    with threads(config.threads):
        device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        np.random.seed(config.seed % 2**32)
        random.seed(config.seed)
        order = torch.Generator().manual_seed(config.seed)
        bin_gen = torch.Generator().manual_seed(config.seed + 1)
        generators = {"order": order, "binarize": bin_gen}

        model.to(device)
        train_x = train_x.to(device, torch.float32)
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
        counters = {"epoch": 0, "step": 0, "best_val": None, "best_epoch": 0, "bad_epochs": 0}
        metrics_path = run_dir / "metrics.jsonl"
        if resume:
            try:
                tensors, state = read_checkpoint(last_path)
            except VaelabError as exc:
                raise VaelabError(f"--resume: {exc}") from None
            counters = restore_checkpoint(tensors, state, model, optimizer, generators)
            _truncate_metrics(metrics_path, counters["epoch"])
            atomic_write_json(run_dir / "run.json", record)  # the settings now in force (e.g. new epochs)
        else:
            model.prepare(train_x)
            atomic_write_json(run_dir / "run.json", record)
            metrics_path.unlink(missing_ok=True)

        batches = Batches(train_x, train_y, config.batch_size, order=order,
                          binarize=bin_gen if binarize == "dynamic" else None)
        steps = len(batches)
        stopped_early = False
        epoch = counters["epoch"]
        try:
            while epoch < config.epochs:
                if config.patience and counters["bad_epochs"] >= config.patience:
                    stopped_early = True
                    break
                lr = learning_rate(config.lr_schedule, config.lr, epoch, config.epochs)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                t0 = time.perf_counter()
                model.train()
                history: list[torch.Tensor] = []  # per-step term values, summed once per epoch
                sizes: list[int] = []
                bar = _bar(progress, steps, f"epoch {epoch + 1}/{config.epochs}")
                for i, (xb, yb) in enumerate(batches):
                    model.schedule(epoch + i / steps)
                    loss = model.loss(xb, yb)
                    if not math.isfinite(loss.total.item()):
                        raise _nonfinite(loss, epoch, counters["step"] + 1, last_path)
                    optimizer.zero_grad(set_to_none=True)
                    loss.total.backward()
                    if config.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                    optimizer.step()
                    counters["step"] += 1
                    history.append(torch.stack(tuple(loss.terms.values())).detach())
                    sizes.append(xb.shape[0])
                    if bar is not None:
                        bar.update(1)
                        if i % 25 == 0:
                            bar.set_postfix(_running(loss.terms, history, sizes), refresh=False)
                if bar is not None:
                    bar.close()
                names = tuple(loss.terms)
                means = (torch.stack(history) * torch.tensor(sizes, dtype=torch.float32, device=history[0].device)
                         .unsqueeze(1)).sum(0) / sum(sizes)
                train_terms = dict(zip(names, means.tolist()))
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
                counters["epoch"] = epoch
                line = {"epoch": epoch, "step": counters["step"], "lr": lr,
                        "seconds": round(time.perf_counter() - t0, 3), "train": train_terms}
                if val_terms is not None:
                    line["val"] = val_terms
                _append_metrics(metrics_path, line)
                save_checkpoint(last_path, model, optimizer, generators, counters)
                if improved:
                    save_checkpoint(best_path, model, optimizer, generators, counters)
                    save(model, run_dir)
                if progress:
                    _summary(line, improved and val_terms is not None)
        except KeyboardInterrupt:
            raise VaelabError(f"interrupted; {run_dir} keeps the checkpoint of epoch {counters['epoch']}: "
                              "continue with --resume") from None

        best_tensors, _ = read_checkpoint(best_path)
        model.load_state_dict({k[6:]: v for k, v in best_tensors.items() if k.startswith("model/")})
        model.eval()
        model.zero_grad(set_to_none=True)
        save_samples(model, run_dir / "samples.png", n=64, seed=config.seed)
        save_reconstructions(model, (val_x if val_x is not None else train_x)[:32],
                             run_dir / "reconstructions.png")
        return TrainResult(model, run_dir, epoch, counters["best_epoch"], counters["best_val"], stopped_early)


def _running(terms: dict, history: list, sizes: list) -> dict:
    recent = torch.stack(history[-25:]).mean(0).tolist()
    return {k: f"{v:.2f}" for k, v in zip(terms, recent)}


def _bar(progress: bool, total: int, desc: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, mininterval=0.5, dynamic_ncols=True, disable=None)


def _summary(line: dict, best: bool) -> None:
    from tqdm.auto import tqdm

    fmt = lambda d: " ".join(f"{k} {v:.2f}" for k, v in d.items())  # noqa: E731
    text = f"epoch {line['epoch']}  train: {fmt(line['train'])}"
    if "val" in line:
        text += f"  | val: {fmt(line['val'])}{' *' if best else ''}"
    tqdm.write(f"{text}  ({line['seconds']:.1f}s)")


def _append_metrics(path: Path, line: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _truncate_metrics(path: Path, epoch: int) -> None:
    """Drop lines from epochs after the checkpoint (written before a crash)."""
    if not path.exists():
        return
    keep = []
    for raw in path.read_text().splitlines():
        try:
            if json.loads(raw)["epoch"] <= epoch:
                keep.append(raw)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    atomic_write_bytes(path, ("\n".join(keep) + "\n").encode() if keep else b"")
