"""What training prints: a progress bar per epoch, one summary line per epoch, notices."""
from __future__ import annotations

import sys

from ..words import count


def write_line(text: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(text, file=sys.stderr)


def epoch_bar(progress: bool, total: int, desc: str, initial: int = 0):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, mininterval=0.5, dynamic_ncols=True,
                disable=None)


def summary(line: dict, best: bool) -> None:
    from tqdm.auto import tqdm

    fmt = lambda d: " ".join(f"{k} {v:.2f}" for k, v in d.items())  # noqa: E731
    text = f"epoch {line['epoch']}  train: {fmt(line['train'])}"
    if "val" in line:
        text += f"  | val: {fmt(line['val'])}{' *' if best else ''}"
    if line.get("skipped"):
        text += f"  [{count(line['skipped'], 'non-finite step')} skipped]"
    tqdm.write(f"{text}  ({line['seconds']:.1f}s)")
