"""What training prints: a progress bar per epoch (on a terminal; elsewhere a line every
``LINE_SECONDS``), one summary line per epoch, notices."""
from __future__ import annotations

import sys
import time

from ..words import count

LINE_SECONDS = 30.0  # without a terminal: a progress line at most this often within an epoch


def write_line(text: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(text, file=sys.stderr)


def epoch_bar(progress: bool, total: int, desc: str, initial: int = 0):
    """A tqdm bar on a terminal; otherwise (a log file, a pipe) :class:`EpochLines`, so a long
    epoch is never minutes of silence there."""
    if not progress:
        return None
    from ..evaluation.progress import _isatty

    if not _isatty(sys.stderr):
        return EpochLines(total, desc, initial)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, mininterval=0.5, dynamic_ncols=True,
                disable=None)


class EpochLines:
    """An epoch's progress as lines on stderr, one at most every ``LINE_SECONDS``: steps done,
    rate, the epoch's ETA and the recent loss terms. Quacks as the bar does where the trainer
    uses it (``update``, ``set_postfix``, ``close``)."""

    def __init__(self, total: int, desc: str, initial: int = 0):
        self.total, self.desc, self.done, self.initial = total, desc, initial, initial
        self.start = self.last = time.perf_counter()
        self.postfix: dict = {}

    def update(self, n: int = 1) -> None:
        from ..evaluation.progress import _duration

        self.done += n
        now = time.perf_counter()
        if now - self.last < LINE_SECONDS:
            return
        self.last = now
        rate = (self.done - self.initial) / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        terms = "".join(f", {k} {v}" for k, v in self.postfix.items())
        print(f"{self.desc}: step {self.done}/{self.total} ({100 * self.done / max(self.total, 1):.0f}%), "
              f"{rate:.2f} steps/s, ETA {_duration(eta)}{terms}", file=sys.stderr, flush=True)

    def set_postfix(self, values: dict, refresh: bool = False) -> None:
        self.postfix = dict(values)

    def close(self) -> None:
        pass


def summary(line: dict, best: bool) -> None:
    from tqdm.auto import tqdm

    fmt = lambda d: " ".join(f"{k} {v:.2f}" for k, v in d.items())  # noqa: E731
    text = f"epoch {line['epoch']}  train: {fmt(line['train'])}"
    if "val" in line:
        text += f"  | val: {fmt(line['val'])}{' *' if best else ''}"
    if line.get("skipped"):
        text += f"  [{count(line['skipped'], 'non-finite step')} skipped]"
    tqdm.write(f"{text}  ({line['seconds']:.1f}s)")
