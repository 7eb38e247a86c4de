"""Classification error of models with q(y|x).

A model has the ``classify`` capability when ``classify(batch) -> Tensor`` returns one row
of class scores per example, shape (B, K): probabilities or log-probabilities of q(y|x)
(only their argmax is used). The error counts the labelled rows only.
"""
from __future__ import annotations

from ..data.batch import Batch


def can_classify(model) -> bool:
    return hasattr(model, "classify")


def misclassified(model, batch: Batch) -> tuple[int, int]:
    """(wrongly classified labelled rows, labelled rows) of one batch."""
    rows = batch.labelled_rows()
    if batch.y is None or not bool(rows.any()):
        return 0, 0
    predicted = model.classify(batch).argmax(-1)
    wrong = (predicted[rows] != batch.y[rows].to(predicted.device)).sum()
    return int(wrong), int(rows.sum())
