"""Validation after each epoch: the full objective's terms averaged over the validation set,
plus what the model can measure besides (classification error where it has ``classify``),
and the one value the run monitors to keep its best epoch."""
from __future__ import annotations

import math

import torch

from ..errors import VaelabError
from ..models.base import Batch


def validation_terms(model, data: Batch, batch_size: int, reduce=None) -> dict[str, float]:
    """Loss terms averaged over ``data`` (and ``error``, the fraction of labelled rows
    misclassified, for models that classify), without gradients. ``reduce`` sums a tensor
    over the ranks of a distributed run, each of which holds its share of ``data``."""
    model.schedule(math.inf)
    names: list[str] = []
    sums = None
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            part = data[i:i + batch_size]
            loss = model.loss(part)
            values = [loss.total, *loss.terms.values()]
            names = ["loss", *loss.terms]
            row = torch.stack([v.detach().double() for v in values]) * len(part)
            row = torch.cat([row, row.new_tensor([float(len(part)), *_errors(model, part)])])
            sums = row if sums is None else sums + row
    if sums is None:
        return {}
    if reduce is not None:
        sums = reduce(sums)
    result = {k: float(v) / float(sums[len(names)]) for k, v in zip(names, sums)}
    if hasattr(model, "classify") and float(sums[-1]) > 0:
        result["error"] = float(sums[-2]) / float(sums[-1])
    return result


def _errors(model, part: Batch) -> list[float]:
    """(misclassified, labelled) row counts of a batch; zeros for models that do not classify."""
    if not hasattr(model, "classify") or part.y is None:
        return [0.0, 0.0]
    rows = part.labelled_rows()
    wrong = (model.classify(part).argmax(-1) != part.y)[rows]
    return [float(wrong.sum()), float(rows.sum())]


def monitored(terms: dict[str, float] | None, name: str) -> float | None:
    """The value whose minimum marks the best epoch (None without validation data)."""
    if terms is None:
        return None
    if name not in terms:
        raise VaelabError(f"--monitor {name}: validation reports {', '.join(sorted(terms))}; monitor one of those")
    return terms[name]
