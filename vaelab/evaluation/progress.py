"""Progress of long evaluations, so minutes of work are never minutes of silence.

On a terminal a tqdm bar (rate and ETA); otherwise (a log file, a pipe, CI) one line
every few percent, since a bar's carriage returns are noise there. ``update`` may be
called from several threads and costs a lock and an addition between reports.
"""
from __future__ import annotations

import sys
import threading
import time

LINE_STEP = 0.05  # without a terminal: one line per 5 % of the work


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


class Progress:
    """Counts finished items out of ``total`` and reports them on ``stream`` (default stderr)."""

    def __init__(self, total: int, desc: str, unit: str = "images", stream=None):
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._lock = threading.Lock()
        self._start = time.perf_counter()
        self._next = 1
        self._bar = None
        if _isatty(self.stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="img" if unit == "images" else unit, file=self.stream, leave=False,
                             mininterval=0.5, dynamic_ncols=True)

    def update(self, n: int) -> None:
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(n)
            elif self.total and self.done >= self._next * LINE_STEP * self.total:
                self._next = int(self.done / (LINE_STEP * self.total)) + 1
                self._line()

    def _line(self) -> None:
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        print(f"{self.desc}: {self.done}/{self.total} {self.unit} ({100 * self.done / self.total:.0f}%), "
              f"{rate:.1f} {self.unit}/s, ETA {_duration(eta)}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
