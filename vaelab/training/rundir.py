"""A training run's directory: its layout, its lock, the checks before training, its write
order, and which process writes it.

Layout::

    run.json                 full resolved configuration (model, training, data)
    config.json, model.safetensors   the best weights so far (what ``vaelab.load`` reads)
    checkpoints/last.safetensors     end of the latest epoch (weights, optimizers, RNGs), or
                                     the step where Ctrl-C stopped the run
    checkpoints/last.prev.safetensors  the checkpoint before it (fallback if last is damaged)
    checkpoints/best.safetensors     the best epoch, with its *own* optimizer and RNG state
    metrics.jsonl            one JSON line per epoch
    samples.png, ...         the model's end-of-run pictures

Crash safety: every file is replaced atomically, and at the end of an epoch the files are
written in the order metrics, best, model, last, so ``last`` is always the newest complete
state. Only the writer (rank 0 of a distributed run) touches the directory; the other
ranks read it when they resume.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sys
from pathlib import Path

from ..errors import VaelabError, brief
from ..files import WriteError, atomic_write_bytes, fsync_dir, read_run_record, remove_stale_temporaries
from ..models.registry import as_trained
from .checkpoint import previous_path

RUN_FILES = ("run.json", "config.json", "model.safetensors", "metrics.jsonl", "samples.png",
             "reconstructions.png", "write-test")
CHECKPOINT_FILES = ("last.safetensors", "last.prev.safetensors", "best.safetensors")


class RunDir:
    """Paths and file operations of one run directory; ``writer`` False makes every write a no-op."""

    def __init__(self, root: str | os.PathLike, writer: bool = True):
        self.root = Path(root)
        self.writer = writer
        self.last = self.root / "checkpoints" / "last.safetensors"
        self.best = self.root / "checkpoints" / "best.safetensors"
        self.metrics = self.root / "metrics.jsonl"
        self.record = self.root / "run.json"

    # -- before training -----------------------------------------------------------
    def has_checkpoint(self) -> bool:
        return self.last.exists() or previous_path(self.last).exists()

    def check_new(self) -> None:
        """A run directory is never overwritten without ``--resume``."""
        if self.last.exists() or self.record.exists():
            raise VaelabError(f"{self.root} already holds a run; pass --resume to continue it, "
                              "or choose another --out")

    def resumable(self, record: dict, same_data) -> bool:
        """Whether ``--resume`` continues a checkpoint (True) or starts the run from the
        beginning (False: no run yet, or killed before its first checkpoint), so a script or
        an elastic restart can always re-run the same command. A different or damaged run is
        refused, and nothing of it is touched."""
        if not self.record.exists():
            written = [p for p in (self.last, previous_path(self.last), self.best,
                                   *(self.root / n for n in ("model.safetensors", "config.json", "metrics.jsonl")))
                       if p.exists()]  # files a run writes only after run.json
            if written:
                raise VaelabError(f"--resume: {self.root} holds {written[0].relative_to(self.root)} but no run.json, so "
                                  "it is damaged or not a vaelab run; restore its run.json or choose another --out")
            self.say(f"--resume: no run in {self.root} yet; starting a new one")
            return False
        recorded = read_run_record(self.record)
        if recorded.get("model") == record.get("model") and isinstance(recorded.get("config"), dict):
            recorded = {**recorded, "config": as_trained(record["model"], recorded["config"])}
        for key in ("model", "config", "stage"):
            if recorded.get(key) != record.get(key):
                raise VaelabError(f"--resume: the run in {self.root} is a different model "
                                  f"({_model_differences(recorded, record)}); "
                                  "resume with the same settings or choose another --out")
        if recorded.get("data") and record.get("data") and not same_data(recorded["data"], record["data"]):
            raise VaelabError(f"--resume: the run in {self.root} was trained on other data "
                              f"({differences(recorded['data'], record['data'], DATA_WORDS)}); "
                              "resume with the same data and --val-size, or choose another --out")
        if not self.has_checkpoint():
            self.say(f"--resume: the run in {self.root} stopped before its first checkpoint; starting it again "
                     "from the beginning")
        return self.has_checkpoint()

    def say(self, text: str) -> None:
        if self.writer:
            print(text, file=sys.stderr, flush=True)

    def check_writable(self) -> None:
        """Find a read-only or full run directory before training, not at the first checkpoint."""
        if not self.writer:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".write-test.tmp"
            with open(probe, "wb") as f:
                f.write(b"0" * 65536)
                f.flush()
                os.fsync(f.fileno())
            probe.unlink()
        except OSError as exc:
            why = "it is read-only" if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else exc.strerror
            raise VaelabError(f"cannot write to run directory {self.root}: {why}; "
                              "choose a writable --out with free space") from None

    def check_space(self, checkpoint_bytes: int) -> None:
        """Refuse to start when the disk cannot hold the run's files: last, its .prev, best and
        a temporary copy of each being replaced, plus model.safetensors and room for metrics."""
        if not self.writer:
            return
        need = 4 * checkpoint_bytes + 2 * (checkpoint_bytes // 3) + (1 << 20)
        try:
            free = shutil.disk_usage(self.root).free
        except OSError:
            return
        if free < need:
            raise VaelabError(f"only {free / 2**20:.1f} MiB free on the disk holding {self.root}; this run's "
                              f"checkpoints need about {need / 2**20:.1f} MiB; free space or choose another --out")

    @contextlib.contextmanager
    def lock(self):
        """One training job per run directory (the lock dies with its process, even on SIGKILL).
        Only the writer takes it: the ranks of one job share the directory."""
        if not self.writer:
            yield
            return
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            yield
            return
        try:
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            yield
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise VaelabError(f"another vaelab process is training in {self.root}; wait for it or stop it "
                                  "first (two writers would mix their checkpoints)") from None
            self.remove_temporaries()
            yield
        finally:
            os.close(fd)

    def remove_temporaries(self) -> None:
        """Temporary files left by a process killed mid-write."""
        remove_stale_temporaries(self.root, RUN_FILES)
        remove_stale_temporaries(self.last.parent, CHECKPOINT_FILES)

    # -- writes --------------------------------------------------------------------
    def write(self, action, step: int) -> None:
        """Run a write (writer only); a failure stops the run with the last good checkpoint named."""
        if not self.writer:
            return
        try:
            action()
        except WriteError as exc:
            kept = f"the last good checkpoint {self.last} is intact" if self.last.exists() else \
                "no checkpoint was written yet"
            raise VaelabError(f"{exc}; training stopped after step {step}; {kept}: "
                              "continue with --resume once the disk has room and is writable") from None

    def append_metrics(self, line: dict) -> None:
        new = not self.metrics.exists()
        try:
            with open(self.metrics, "a") as f:
                f.write(json.dumps(line) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise WriteError(f"cannot write {self.metrics}: {exc.strerror or brief(exc)}") from None
        if new:
            fsync_dir(self.metrics.parent)

    def truncate_metrics(self, epoch: int) -> None:
        """Drop lines from epochs after the checkpoint (written before a crash)."""
        if not self.writer or not self.metrics.exists():
            return
        keep = []
        for raw in self.metrics.read_text(errors="replace").splitlines():
            try:
                if json.loads(raw)["epoch"] <= epoch:
                    keep.append(raw)
            except (ValueError, KeyError, TypeError):
                continue
        atomic_write_bytes(self.metrics, ("\n".join(keep) + "\n").encode() if keep else b"")


DATA_WORDS = {"spec": "data", "n_train": "training images", "n_val": "validation images", "n_test": "test images",
              "shape": "image shape", "split": "split", "test_fraction": "--test-fraction", "test_seed": "test seed",
              "labels": "--labels", "label_seed": "--label-seed"}


def differences(recorded: dict, now: dict, words: dict | None = None) -> str:
    """What differs between a recorded dict and the one of now, as words a user reads:
    ``data mnist, now fashion-mnist; training images 54,000, now 60,000``."""
    words = words or {}
    keys = [k for k in dict.fromkeys([*words, *recorded, *now]) if recorded.get(k) != now.get(k)]
    return "; ".join(f"{words.get(k, k)} {_shown(recorded.get(k))}, now {_shown(now.get(k))}" for k in keys)


def _shown(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return "×".join(map(str, value))
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _model_differences(recorded: dict, record: dict) -> str:
    """A different model, stage or setting, named (``latent_dim 4, now 3``), not two dicts."""
    if recorded.get("model") != record.get("model"):
        return f"a '{recorded.get('model')}', not '{record.get('model')}'"
    if recorded.get("stage") != record.get("stage"):
        return f"stage {recorded.get('stage')}, now {record.get('stage')}"
    old, new = recorded.get("config"), record.get("config")
    if isinstance(old, dict) and isinstance(new, dict):
        return differences(old, new, {"input_shape": "image shape"})
    return "its settings differ"
