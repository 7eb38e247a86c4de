"""Ctrl-C and SIGTERM during training: the first stops after the current step with a
checkpoint, the second stops at once (atomic writes keep the last checkpoint intact)."""
from __future__ import annotations

import os
import signal
import threading

from ..errors import VaelabError


class TrainingInterrupted(VaelabError):
    """Ctrl-C or SIGTERM stopped the run; the checkpoint written holds everything."""

    exit_code = 130
    job_wide = True  # in a multi-process job every rank stops at the same step; rank 0 says so


class StopRequest:
    """Ctrl-C (or SIGTERM) once: finish the current step, save a checkpoint, stop. Twice: stop
    at once; atomic writes leave the last checkpoint intact either way."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self, say: bool = True):
        self.signal: str | None = None
        self.say = say
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
        if self.say:  # os.write, not print: a handler may run while the progress bar is writing to stderr
            os.write(2, (f"\n{self.signal}: stopping after this step and saving a checkpoint; "
                         "press Ctrl-C again to stop at once\n").encode())

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        return False
