"""TensorBoard scalars of a run (``--tensorboard``): what ``metrics.jsonl`` holds, per epoch,
in ``RUN/tensorboard/`` for users who watch runs in TensorBoard.

The ``tensorboard`` package is imported only when asked for, and its absence is said before
training starts. A resumed run opens a new event file beside the old ones (nothing is
overwritten) that purges every step from the resumed epoch on, so epochs logged after the
checkpoint by a run that then crashed are not shown twice.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import VaelabError, brief

BOARD_DIR = "tensorboard"


def check_tensorboard() -> None:
    """Refuse ``--tensorboard`` where the package is missing, before any work is done."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as exc:
        raise VaelabError(f"--tensorboard needs the tensorboard package ({brief(exc)}): pip install tensorboard, "
                          "or train without --tensorboard") from None


class Board:
    """Writes each epoch's line of ``metrics.jsonl`` as scalars tagged ``train/TERM``,
    ``val/NAME``, ``lr`` and ``seconds``, at step = epoch."""

    def __init__(self, root: Path, first_epoch: int):
        from torch.utils.tensorboard import SummaryWriter

        purge = first_epoch + 1 if first_epoch else None
        self.writer = SummaryWriter(log_dir=str(Path(root) / BOARD_DIR), purge_step=purge)

    def add(self, line: dict) -> None:
        step = line["epoch"]
        for part in ("train", "val"):
            for name, value in (line.get(part) or {}).items():
                self.writer.add_scalar(f"{part}/{name}", value, step)
        for name in ("lr", "seconds", "skipped"):
            if name in line:
                self.writer.add_scalar(name, line[name], step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
