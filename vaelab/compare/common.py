"""What every comparison shares: its result table, where it is written, and how models are fitted."""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data import Dataset, has_test_split, load_dataset, split_test
from ..data.sources import canonical_spec
from ..errors import VaelabError, VaelabWarning
from ..files import atomic_write_bytes, atomic_write_json

HELD_OUT_FRACTION = 0.1  # user data without a test split: the part comparisons measure on


@dataclass
class Comparison:
    """A comparison's table (``columns`` + ``rows`` of dicts), the figures it wrote and the
    settings it ran with. ``write`` stores ``table.md`` and ``results.json`` in ``out``."""

    name: str
    title: str
    columns: list[str]
    rows: list[dict]
    settings: dict = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def markdown(self) -> str:
        head = "| " + " | ".join(self.columns) + " |"
        rule = "|" + "|".join("---" for _ in self.columns) + "|"
        body = ["| " + " | ".join(_cell(row.get(c)) for c in self.columns) + " |" for row in self.rows]
        lines = [f"### {self.title}", "", head, rule, *body]
        if self.notes:
            lines += ["", *[f"- {n}" for n in self.notes]]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        return {"comparison": self.name, "title": self.title, "data": self.settings.get("data"),
                "columns": self.columns, "rows": self.rows,
                "settings": self.settings, "figures": self.figures, "notes": self.notes,
                "seconds": round(self.seconds, 1)}

    def write(self, out: str | os.PathLike) -> None:
        out = Path(out)
        atomic_write_bytes(out / "table.md", self.markdown().encode())
        atomic_write_json(out / "results.json", self.to_dict())


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4f}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def prepare_out(out: str | os.PathLike) -> Path:
    """Create the output directory; refuse a path that exists as a file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VaelabError(f"--out {out} is a file; give a directory for the comparison's tables and figures")
    out.mkdir(parents=True, exist_ok=True)
    return out


def split(spec: str, data_dir, train_size: int = 0, test_size: int = 0) -> tuple[Dataset, Dataset]:
    """The first ``train_size`` / ``test_size`` images of a dataset's splits (0 = all). User
    data without a test split of its own is compared on a seeded held-out part, said in a line."""
    for name, n in (("train_size", train_size), ("test_size", test_size)):
        if n < 0:
            raise VaelabError(f"{name} must be >= 0 (0 = the whole split), got {n}")
    if has_test_split(spec):
        train, test = load_dataset(spec, "train", data_dir=data_dir), load_dataset(spec, "test", data_dir=data_dir)
    else:
        train, test = split_test(load_dataset(spec, "train", data_dir=data_dir), HELD_OUT_FRACTION)
        warnings.warn(f"{spec} has no test split of its own: its models are measured on {len(test)} held-out images "
                      f"({HELD_OUT_FRACTION:.0%}, carved as vaelab train --test-fraction {HELD_OUT_FRACTION} does)",
                      VaelabWarning, stacklevel=2)
    if train_size:
        train = train.subset(slice(0, train_size))
    if test_size:
        test = test.subset(slice(0, test_size))
    return train, test


def same_data(a: str, b: str) -> bool:
    """Whether two dataset specs name the same data: names up to case and ``_``/``-``,
    ``npy:``/``folder:`` paths after resolving."""
    def norm(spec: str) -> str:
        spec = spec.strip()
        return canonical_spec(spec) if spec.startswith(("npy:", "folder:")) else spec.lower().replace("_", "-")
    return norm(a) == norm(b)


def load_run(run, spec: str, shape, option: str = "--run"):
    """A trained model to measure on ``spec``, refused when its run recorded other data or
    its input shape differs: its numbers would silently describe images it never saw."""
    from ..files import read_run_record
    from ..io import load

    model = load(run)
    if tuple(model.input_shape) != tuple(shape):
        raise VaelabError(f"{option} {run} takes images of shape {list(model.input_shape)}, but {spec} has "
                          f"{list(shape)}; pass the --data it was trained on")
    record = Path(run) / "run.json"
    trained_on = read_run_record(record).get("data", {}).get("spec") if record.exists() else None
    if isinstance(trained_on, str) and not same_data(trained_on, spec):
        raise VaelabError(f"{option} {run} was trained on {trained_on}, not {spec}; pass --data {trained_on} "
                          f"or a run trained on {spec}")
    return model


def fit(model: str, data: Dataset, out: Path, model_config: dict, train_config: dict, progress: bool,
        val_data: Dataset | None = None):
    """Train a model into ``out`` (validated on ``val_data`` when given); a finished run there
    with the same settings is loaded instead, and an interrupted one is resumed, so
    re-running a comparison is cheap."""
    from ..files import read_run_record
    from ..io import load
    from ..models.registry import as_trained
    from ..training import train
    from ..training.rundir import differences
    from ..training.trainer import RESUME_MAY_CHANGE

    if (out / "run.json").exists():
        rec = read_run_record(out / "run.json", "run record")
        wanted = {k: list(v) if isinstance(v, tuple) else v for k, v in model_config.items()}
        held = 0 if val_data is not None else rec.get("data", {}).get("n_val", 0)  # rows carved for validation
        recorded = {**rec["train"], **rec.get("resolved", {})}  # "auto" as the run resolved it
        trained = as_trained(model, rec["config"])  # an old record: the settings it was trained with
        same = (rec.get("model") == model and rec.get("data", {}).get("n_train", 0) + held == len(data)
                and all(trained.get(k) == v for k, v in wanted.items())
                and all(recorded.get(k) == v for k, v in train_config.items()
                        if k not in RESUME_MAY_CHANGE))
        if not same:
            changed = differences({k: trained.get(k) for k in wanted}, wanted)  # the model's settings, named
            raise VaelabError(f"{out} holds a run with other settings{f' ({changed})' if changed else ''}; "
                              "remove it or choose another --out")
        if _finished(out, train_config) and (out / "model.safetensors").exists():
            return load(out)
        train(model, data, out, config=train_config, resume=True, val_data=val_data, progress=progress)
    else:
        train(model, data, out, model_config=model_config, config=train_config, val_data=val_data,
              progress=progress)
    return load(out)  # the best weights when validated, else the last


def _finished(run: Path, train_config: dict) -> bool:
    """All epochs ran, or early stopping ended the run (patience epochs without a better
    validation loss after the best one)."""
    path = run / "metrics.jsonl"
    if not path.exists():
        return False
    try:
        records = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
        last = int(records[-1]["epoch"]) if records else 0
        vals = [(r["val"]["loss"], int(r["epoch"])) for r in records if isinstance(r.get("val"), dict) and "loss" in r["val"]]
    except (ValueError, KeyError, TypeError):
        return False
    patience = train_config.get("patience", 0)
    stopped = bool(vals and patience and last - min(vals)[1] >= patience)
    return last >= train_config.get("epochs", 0) or stopped


@torch.no_grad()
def batched(fn, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """``fn`` applied to ``x`` in batches, concatenated (inference mode, float32 on the model's device)."""
    return torch.cat([fn(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])
