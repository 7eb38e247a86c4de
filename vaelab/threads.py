"""How many CPU threads torch uses: one helper for training, evaluation, baselines and benchmarks."""
from __future__ import annotations

import contextlib
import os

import torch


def set_threads(n: int | None) -> None:
    """Use ``n`` CPU threads: 0 means all cores, None leaves the current setting."""
    if n is not None:
        torch.set_num_threads(n or os.cpu_count() or 1)


@contextlib.contextmanager
def threads(n: int | None):
    """``set_threads(n)`` inside the block, then the caller's count again, so a library call
    leaves the process's setting as it found it."""
    previous = torch.get_num_threads()
    set_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
