"""Learning-rate schedules as pure functions of the epoch: nothing to checkpoint."""
from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine", "iwae")


def iwae_stages(epochs: int) -> list[tuple[int, float]]:
    """Burda et al. (2016): stage i lasts 3**i epochs at 10**(-i/7) × the base rate.

    With 3280 epochs this is exactly the paper's schedule (i = 0..7); a shorter budget
    keeps the same shape, compressed by ``epochs / 3280``.
    """
    full = [(3**i, 10 ** (-i / 7)) for i in range(8)]
    total = sum(n for n, _ in full)
    scale = epochs / total
    return [(max(1, round(n * scale)) if scale < 1 else n, f) for n, f in full]


def learning_rate(schedule: str, base: float, epoch: int, epochs: int, min_ratio: float = 0.01) -> float:
    if schedule == "constant":
        return base
    if schedule == "cosine":
        t = min(epoch / max(1, epochs), 1.0)
        return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))
    start = 0
    for length, factor in iwae_stages(epochs):
        if epoch < start + length:
            return base * factor
        start += length
    return base * iwae_stages(epochs)[-1][1]
