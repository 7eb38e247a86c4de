"""Stages of a run, as a family declares them: which model each stage trains, with what
settings, on what data (the run's, or data derived from earlier stages' models).
:func:`vaelab.training.stages.train_stages` runs them; ``vaelab.load`` rebuilds the composite."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Stage:
    """One stage: a registered ``model`` with its settings, trained on the run's data or on
    ``data(models, dataset, directory)``: data derived from the earlier stages' trained
    models (a dict by stage name), cached in this stage's ``directory``."""

    name: str
    model: str
    model_config: dict = field(default_factory=dict)
    train_config: dict = field(default_factory=dict)
    data: Callable | None = None
