"""How many CPU threads a command uses: one helper for training, evaluation, baselines and
benchmarks. It sets torch's threads and the native pools that numpy, scipy and scikit-learn
multiply matrices in (OpenBLAS, OpenMP, through threadpoolctl): with only the first, a process
told `--threads 1` still spread each small product of librosa's inversion over every core and,
beside another job, waited for them (`vaelab convert` ran twice as long so)."""
from __future__ import annotations

import contextlib
import os

import torch
from threadpoolctl import threadpool_limits


def _count(n: int) -> int:
    return n or os.cpu_count() or 1


def set_threads(n: int | None) -> None:
    """Use ``n`` CPU threads: 0 means all cores, None leaves the current setting."""
    if n is not None:
        torch.set_num_threads(_count(n))
        threadpool_limits(_count(n))


@contextlib.contextmanager
def threads(n: int | None):
    """``set_threads(n)`` inside the block, then the caller's counts again, so a library call
    leaves the process's setting as it found it."""
    previous = torch.get_num_threads()
    with threadpool_limits(None if n is None else _count(n)):
        if n is not None:
            torch.set_num_threads(_count(n))
        try:
            yield
        finally:
            torch.set_num_threads(previous)
