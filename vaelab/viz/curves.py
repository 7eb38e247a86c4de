"""Training curves: every loss term, validation value and the learning rate against epoch,
read from runs' ``metrics.jsonl`` (one JSON line per epoch, written by the trainer). A run
trained with ``--curve-points N`` also records each epoch's training terms at N points
(``train_curve``); its training lines follow those points, at fractional epochs, so a
collapse within the first epoch shows.

A resumed run may hold an epoch twice (a crash after the line, before the checkpoint): the
last line for an epoch wins, as it is the one the checkpoint continued from. A run of
stages keeps one run per sub-directory (``1-NAME``, ...); each becomes its own curve.
"""
from __future__ import annotations

import io
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import VaelabError, VaelabWarning
from ..files import atomic_write_bytes
from ..io import STAGES_FILE


@dataclass
class History:
    """One run's per-epoch values: ``series[(part, name)]`` is aligned with ``epochs``
    (NaN where an epoch lacks it); part is ``train``, ``val`` or ``""`` (lr, seconds)."""

    label: str
    run: Path
    epochs: list[int]
    series: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    within: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)  # name: (epochs, values)

    @property
    def seconds(self) -> float:
        """Wall time of the recorded epochs (training and validation), in seconds."""
        return sum(v for v in self.series.get(("", "seconds"), []) if math.isfinite(v))


def metrics_lines(path: Path) -> list[dict]:
    """The epoch records of one ``metrics.jsonl``, the last line of each epoch kept. A damaged
    last line (a crash mid-write) is skipped with a warning; a damaged earlier one is an error."""
    try:
        raw = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise VaelabError(f"cannot read {path}: {exc.strerror}") from None
    lines = [(i, text) for i, text in enumerate(raw, 1) if text.strip()]
    by_epoch: dict[int, dict] = {}
    for pos, (number, text) in enumerate(lines):
        record = _record(text)
        if record is None:
            if pos == len(lines) - 1:
                warnings.warn(f"{path}: skipping its damaged last line {number} (a run stopped mid-write)",
                              VaelabWarning, stacklevel=2)
                continue
            raise VaelabError(f"{path}: line {number} is not an epoch record of vaelab's trainer; "
                              "repair or remove that line")
        by_epoch[record["epoch"]] = record
    return [by_epoch[e] for e in sorted(by_epoch)]


def _record(text: str) -> dict | None:
    try:
        record = json.loads(text)
    except ValueError:
        return None
    ok = isinstance(record, dict) and isinstance(record.get("epoch"), int) and isinstance(record.get("train"), dict)
    return record if ok else None


def run_histories(run: str | os.PathLike) -> list[tuple[str, Path, list[dict]]]:
    """``(suffix, directory, records)`` of a run, or of each stage of a run of stages."""
    run = Path(run)
    if not run.is_dir():
        raise VaelabError(f"{run} is not a run directory (no such directory); give the --out of a `vaelab train`")
    if (run / STAGES_FILE).is_file():
        stages = sorted((p for p in run.iterdir() if p.is_dir() and (p / "metrics.jsonl").is_file()),
                        key=lambda p: (int(p.name.split("-")[0]) if p.name.split("-")[0].isdigit() else 0, p.name))
        if not stages:
            raise VaelabError(f"{run} is a run of stages with no metrics yet; wait for its first epoch to end")
        return [(f"/{p.name}", p, _records(p)) for p in stages]
    return [("", run, _records(run))]


def _records(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        what = "a run without metrics yet (its first epoch has not ended)" if (run / "run.json").is_file() \
            else "not a run directory (no run.json, no metrics.jsonl)"
        raise VaelabError(f"{run} is {what}; give the --out of a `vaelab train` after its first epoch")
    records = metrics_lines(path)
    if not records:
        raise VaelabError(f"{path} holds no epochs yet; wait for the first epoch to end")
    return records


def run_labels(runs: list[Path]) -> list[str]:
    """Legend names: each run's directory name, with parent directories added where names
    clash (``a/run``, ``b/run``). The same directory twice is refused."""
    resolved = [p.resolve() for p in runs]
    for i, p in enumerate(resolved):
        if p in resolved[:i]:
            raise VaelabError(f"{runs[i]} is given twice; name each run once")
    depth = [1] * len(runs)
    labels = [_tail(p, 1) for p in resolved]
    for _ in range(max((len(p.parts) for p in resolved), default=1)):
        clash = [i for i, name in enumerate(labels) if labels.count(name) > 1]
        if not clash:
            break
        for i in clash:
            depth[i] += 1
            labels[i] = _tail(resolved[i], depth[i])
    return labels


def _tail(path: Path, n: int) -> str:
    return "/".join(path.parts[-n:]) or str(path)


def histories(runs) -> list[History]:
    """The History of each run (each stage of a run of stages), labelled for a legend."""
    runs = [Path(r) for r in ([runs] if isinstance(runs, (str, os.PathLike)) else runs)]
    if not runs:
        raise VaelabError("no runs given; name at least one run directory")
    found = []
    for label, run in zip(run_labels(runs), runs):
        for suffix, directory, records in run_histories(run):
            found.append(history(label + suffix, directory, records))
    return found


def history(label: str, run: Path, records: list[dict]) -> History:
    """A History of epoch records (as :func:`run_histories` reads them)."""
    epochs = [r["epoch"] for r in records]
    keys: list[tuple[str, str]] = []
    for r in records:
        for part in ("train", "val"):
            keys += [(part, k) for k in (r.get(part) or {}) if (part, k) not in keys]
    keys += [("", k) for k in ("lr", "seconds") if any(k in r for r in records)]
    series = {key: [_number((r.get(key[0]) or {}).get(key[1]) if key[0] else r.get(key[1])) for r in records]
              for key in keys}
    return History(label, run, epochs, series, within_epochs(records))


def within_epochs(records: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """Each training term at the points of the epochs' ``train_curve`` (empty without one), placed
    at fractional epochs by step: a point at step s of epoch e, which ran steps (a, b], lies at
    e − 1 + (s − a) / (b − a). An epoch without a curve keeps its mean at its end."""
    if not any(isinstance(r.get("train_curve"), dict) for r in records):
        return {}
    out: dict[str, tuple[list[float], list[float]]] = {}
    previous = {r["epoch"]: r.get("step") for r in records}
    for r in records:
        e, end, curve = r["epoch"], r.get("step"), r.get("train_curve")
        start = previous.get(e - 1, 0 if e == 1 else None)
        if isinstance(curve, dict) and isinstance(curve.get("step"), list):
            steps = curve["step"]
            span = (end - start) if isinstance(end, int) and isinstance(start, int) and end > start else None
            xs = [e - 1 + ((s - start) / span if span else (k + 1) / len(steps)) for k, s in enumerate(steps)]
            points = {k: v for k, v in curve.items() if k != "step" and isinstance(v, list) and len(v) == len(xs)}
        else:
            xs, points = [float(e)], {k: [v] for k, v in (r.get("train") or {}).items()}
        for name, values in points.items():
            ex, ey = out.setdefault(name, ([], []))
            ex += xs
            ey += [_number(v) for v in values]
    return out


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def quantities(found: list[History]) -> list[str]:
    """Panel names in order: loss terms (train and val share a panel), then the lr."""
    names: list[str] = []
    for h in found:
        for part, name in h.series:
            if part and name not in names:
                names.append(name)
    return names + (["lr"] if any(("", "lr") in h.series for h in found) else [])


def curves_png(runs, ncols: int = 4) -> bytes:
    """PNG bytes of the curves of ``runs`` (paths), one small panel per quantity, runs overlaid
    (one colour each): solid lines training values, dashed lines validation values."""
    return render_curves(histories(runs), ncols)


def render_curves(found: list[History], ncols: int = 4) -> bytes:
    """PNG bytes of the curves of histories already read (see :func:`curves_png`)."""
    buf = io.BytesIO()
    curves_figure(found, ncols).savefig(buf, format="png")
    return buf.getvalue()


def curves_figure(found: list[History], ncols: int = 4):
    """The matplotlib Figure :func:`render_curves` draws (its axes can be read or restyled)."""
    names = quantities(found)
    ncols = min(ncols, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = _figure(3.2 * ncols, 2.4 * nrows, legend_rows=math.ceil(2 * len(found) / 4))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, name in zip(axes.flat, names):
        _panel(ax, name, found)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    legend: dict = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncols=min(4, len(legend)),
               fontsize="small", frameon=False)
    return fig


def _figure(width: float, height: float, legend_rows: int):
    """A figure with fixed margins: one drawing pass (a layout engine takes two, and curves
    are drawn for every run of a report)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    legend = 0.22 * legend_rows + 0.1
    fig = Figure(figsize=(width, height + legend), dpi=90)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.6 / width, right=1 - 0.1 / width, top=1 - 0.3 / (height + legend),
                        bottom=(legend + 0.45) / (height + legend), wspace=0.3, hspace=0.5)
    return fig


def _panel(ax, name: str, found: list[History]) -> None:
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator

    colours = colormaps["tab10"]
    positive = True
    for i, h in enumerate(found):
        for part, style in (("train", "-"), ("val", "--"), ("", "-")):
            ys = h.series.get((part, name))
            if ys is None or (part == "" and name != "lr"):
                continue
            xs = h.epochs
            if part == "train" and name in h.within:  # the points within each epoch, not its mean
                xs, ys = h.within[name]
            positive = positive and all(y > 0 for y in ys if math.isfinite(y))
            ax.plot(xs, ys, style, color=colours(i % 10), marker="o" if len(ys) <= 30 else None,
                    markersize=2.5, label=f"{h.label} (val)" if part == "val" else h.label)
    if name == "lr" and positive:
        ax.set_yscale("log")
    ax.set_title(name, fontsize="medium")
    ax.set_xlabel("epoch", fontsize="small")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # epochs are whole: no tick at 1.5
    ax.tick_params(labelsize="small")
    ax.grid(True, alpha=0.3)


def plot_curves(runs, output: str | os.PathLike = "curves.png") -> Path:
    """Write the curves of ``runs`` (run directories) to ``output`` (PNG, JPEG or WebP as its
    extension says, atomically; missing parent directories are created); returns the path."""
    from ..outputs import image_format, png_as

    output = Path(output)
    image_format(output)
    atomic_write_bytes(output, png_as(curves_png(runs), output))
    return output
