"""An epoch's running loss terms: kept per step, averaged once at the epoch's end, and saved
with a mid-epoch checkpoint so a resumed epoch reports what an uninterrupted one would."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import VaelabError


class EpochTerms:
    """Per-step term values (detached, on the device) and batch sizes of the current epoch."""

    def __init__(self, history=None, sizes=None, names=None):
        self.history: list[torch.Tensor] = history or []
        self.sizes: list[int] = sizes or []
        self.names: tuple[str, ...] | None = names

    def add(self, terms: dict[str, torch.Tensor], size: int) -> None:
        self.names = self.names or tuple(terms)
        self.history.append(torch.stack(tuple(terms.values())))
        self.sizes.append(size)

    def means(self) -> dict[str, float]:
        """Size-weighted means over the epoch (empty when every step was skipped)."""
        if not self.history:
            return {}
        weights = torch.tensor(self.sizes, dtype=torch.float32, device=self.history[0].device).unsqueeze(1)
        return dict(zip(self.names, ((torch.stack(self.history) * weights).sum(0) / sum(self.sizes)).tolist()))

    def stretches(self, points: int, first_step: int, steps: int) -> dict[str, list[float]]:
        """The epoch cut into ``points`` contiguous stretches of steps (fewer when it has fewer
        steps): each stretch's size-weighted term means, at the global step where it ends."""
        n = len(self.history)
        points = min(points, n)
        values = torch.stack(self.history).double()
        sizes = torch.tensor(self.sizes, dtype=torch.float64, device=values.device)
        curve: dict[str, list[float]] = {"step": []}
        curve.update({name: [] for name in self.names})
        for k in range(points):
            a, b = k * n // points, (k + 1) * n // points
            w = sizes[a:b]
            means = (values[a:b] * w.unsqueeze(1)).sum(0) / w.sum()
            curve["step"].append(first_step + round(steps * b / n))
            for name, v in zip(self.names, means.tolist()):
                curve[name].append(v)
        return curve

    def recent(self, steps: int = 25) -> dict[str, str]:
        """The last steps' means, for the progress bar."""
        return {k: f"{v:.2f}" for k, v in zip(self.names, torch.stack(self.history[-steps:]).mean(0).tolist())}

    def saved(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Tensors and state for a mid-epoch checkpoint."""
        tensors = {"history": torch.stack(self.history) if self.history else torch.zeros(0, 0),
                   "sizes": torch.tensor(self.sizes, dtype=torch.int64)}
        return tensors, {"terms": list(self.names or ())}


def restore_epoch_terms(tensors: dict, state: dict, counters: dict, steps: int, device, where: Path) -> EpochTerms:
    """The running terms a mid-epoch checkpoint saved, checked against this run."""
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
    return EpochTerms(list(history.to(device).unbind(0)), sizes.tolist(), tuple(names) or None)
