"""``vaelab report``: one self-contained HTML page of one or more runs.

Every image is embedded as ``data:image/png;base64``, the style is inline and there is no
script, so the file opens from disk, offline, and can be mailed as it is. Per run: its
settings (``run.json``), data, wall time, a metrics table (best and last epoch, a quick
evaluation on the test split), its curves and the pictures of :mod:`.report_sections`.
Several runs get a comparison table and their curves overlaid first. Every text is escaped.
"""
from __future__ import annotations

import base64
import functools
import html
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import VaelabError, brief
from ..files import atomic_write_bytes, read_json, read_run_record
from .curves import History, history, render_curves, run_histories, run_labels


class NotApplicable(Exception):
    """A picture section that does not fit this model or run; the message says why."""


@dataclass
class ReportContext:
    """What a picture section may use: the run, its model, its test images (or why there
    are none), the binarization it trained with, and the report's label and seed."""

    run: Path
    model: torch.nn.Module
    record: dict
    test: object | None  # a Dataset, or None (``test_note`` says why)
    test_note: str
    binarize: str
    label: int | None = None
    seed: int = 0
    extra: dict = field(default_factory=dict)  # room for sections that share work

    def images(self, n: int, need: str = "this picture needs test images"):
        """``n`` test images spread over the split (seeded: a class-sorted file still shows every
        class) as a Batch, binarized once as the evaluation is."""
        from ..data import binarize_static
        from ..evaluation import TEST_BINARIZATION_SEED
        from .grids import spread_rows

        if self.test is None:
            raise NotApplicable(f"{need}: {self.test_note}")
        batch = self.test.subset(spread_rows(len(self.test), n, self.seed)).batch()
        return batch.with_x(binarize_static(batch.x, TEST_BINARIZATION_SEED)) if self.binarize != "none" else batch

    @functools.cached_property
    def view(self):
        """The model's :class:`~vaelab.viz.latent.LatentView` (NotApplicable where it has none)."""
        from .latent import LatentView

        try:
            return LatentView(self.model)
        except VaelabError as exc:
            raise NotApplicable(str(exc)) from None


@dataclass
class RunReport:
    """One run's part of the page, gathered before any HTML is written."""

    label: str
    ctx: ReportContext
    history: list[History]
    evaluation: dict | None
    eval_note: str


def make_report(runs, output: str | os.PathLike = "report.html", *, data: str | None = None,
                data_dir: str | os.PathLike | None = None, eval_images: int = 1000, nll_samples: int = 0,
                label: int | None = None, seed: int = 0) -> Path:
    """Write the report of ``runs`` (run directories) to ``output`` (atomically; missing
    parent directories are created) and return its path. ``data`` (a spec) overrides the
    data each run records for the test evaluation and the pictures; ``eval_images`` test
    images are evaluated (0: none), with ``nll_samples`` importance samples (0: no NLL)."""
    output = Path(output)
    if output.suffix.lower() not in (".html", ".htm"):
        raise VaelabError(f"-o {output}: the report is one HTML file; give a name ending in .html")
    if eval_images < 0 or nll_samples < 0:
        raise VaelabError("--eval-images and --nll-samples must be >= 0 (0 skips them)")
    runs = [Path(r) for r in ([runs] if isinstance(runs, (str, os.PathLike)) else runs)]
    if not runs:
        raise VaelabError("no runs given; name at least one run directory")
    labels = run_labels(runs)
    parts = [_gather(run, name, data, data_dir, eval_images, nll_samples, label, seed)
             for run, name in zip(runs, labels)]
    atomic_write_bytes(output, render(parts).encode("utf-8"))
    return output


def _gather(run: Path, name: str, data, data_dir, eval_images: int, nll_samples: int, label, seed: int) -> RunReport:
    """Load a run, its history, its test split and a quick evaluation on it."""
    from ..data.samplers import resolve_binarize
    from ..io import load

    found = [history(name + suffix, directory, records)  # refuses a missing run or one without metrics
             for suffix, directory, records in run_histories(run)]
    record = _record(run)
    model = load(run)
    binarize = resolve_binarize("auto", model, run) if (run / "run.json").is_file() else "none"
    test, note = _test_split(run, model, data or record.get("data", {}).get("spec"), data_dir)
    ctx = ReportContext(run, model, record, test, note, binarize, label, seed)
    evaluation, eval_note = _evaluate(ctx, eval_images, nll_samples)
    return RunReport(name, ctx, found, evaluation, eval_note)


def _record(run: Path) -> dict:
    if (run / "run.json").is_file():
        return read_run_record(run / "run.json")
    plan = read_json(run / "stages.json", "stage plan")
    return {"model": plan.get("composite") or "stages", "stages": plan.get("stages")}


def _test_split(run: Path, model, spec, data_dir):
    """The test split as the run saw it, or None and the reason."""
    from ..training import run_split

    if not isinstance(spec, str):
        return None, "the run records no data; pass --data SPEC"
    if getattr(model, "input_shape", None) is None:
        return None, "its model does not take images as a whole (a run of stages without a composite model)"
    try:
        ds = run_split(run, spec, "test", data_dir=data_dir)
    except VaelabError as exc:
        return None, f"no test split of {spec} ({exc})"
    if tuple(ds.shape) != tuple(model.input_shape):
        return None, f"{spec} images have shape {list(ds.shape)}, the model expects {list(model.input_shape)}"
    return ds, ""


def _evaluate(ctx: ReportContext, n: int, nll_samples: int) -> tuple[dict | None, str]:
    from ..evaluation import evaluate

    if ctx.test is None:
        return None, f"no test evaluation: {ctx.test_note}"
    if n == 0:
        return None, "no test evaluation (--eval-images 0)"
    try:
        result = evaluate(ctx.model, ctx.test.subset(slice(0, n)), nll_samples=nll_samples, binarize=ctx.binarize,
                          seed=ctx.seed)
    except VaelabError as exc:
        return None, f"no test evaluation: {exc}"
    return result, ""


# -- HTML ------------------------------------------------------------------------------
STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.25em;border-bottom:1px solid #ccc;margin-top:2em}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 8px;text-align:left}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
.cols{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}.cols>div{min-width:0;max-width:100%}
.wide{overflow-x:auto;max-width:100%}
figure{display:inline-block;max-width:100%;margin:.5em 1em .5em 0}img{max-width:100%;image-rendering:pixelated}
figcaption,.note{color:#666;font-size:.9em}
"""


def render(parts: list[RunReport]) -> str:
    """The whole page for the gathered runs."""
    title = "vaelab report: " + ", ".join(p.label for p in parts)
    body = [f"<h1>{_e(title)}</h1>"]
    if len(parts) > 1:
        body += ["<h2>Comparison</h2>", _comparison(parts),
                 _figure("the runs overlaid (solid: training, dashed: validation)",
                         render_curves([h for p in parts for h in p.history]))]
    body += [_run_section(p) for p in parts]
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><link rel=icon href='data:,'>"
            f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _number(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}" if abs(value) < 1e4 else f"{value:.6g}"
    return _e(value)


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    cells = lambda row: "".join(  # noqa: E731
        f"<td class=n>{_number(v)}</td>" if isinstance(v, (int, float)) and not isinstance(v, bool)
        else f"<td>{_e(v)}</td>" for v in row)
    table = f"<table><tr>{head}</tr>" + "".join(f"<tr>{cells(r)}</tr>" for r in rows) + "</table>"
    return f"<div class=wide>{table}</div>"  # a table wider than the window scrolls in its box


def _figure(caption: str, png: bytes) -> str:
    src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return f"<figure><img src='{src}' alt='{_e(caption)}'><figcaption>{_e(caption)}</figcaption></figure>"


def _scalars(result: dict | None) -> dict:
    skip = {"n", "k", "binarize"}
    return {k: v for k, v in (result or {}).items() if k not in skip and isinstance(v, (int, float))
            and not isinstance(v, bool)}


def _comparison(parts: list[RunReport]) -> str:
    """One row per run: model, epochs, best validation value, wall time, test figures."""
    keys: list[str] = []
    for p in parts:
        keys += [k for k in _scalars(p.evaluation) if k not in keys]
    header = ["run", "model", "epochs", "best val", "wall time"] + [f"test {k}" for k in keys]
    rows = []
    for p in parts:
        best = _best(p.history[-1], _monitor(p))
        test = _scalars(p.evaluation)
        rows.append([p.label, p.ctx.record.get("model", "?"), sum(len(h.epochs) for h in p.history),
                     "" if best is None else f"{best[2]:.4g} ({best[1]}, epoch {best[0]})",
                     _duration(sum(h.seconds for h in p.history))] + [test.get(k, "") for k in keys])
    return _table(header, rows)


def _monitor(p: RunReport) -> str:
    """The validation value the run kept its best epoch by (a run of stages: its last stage's)."""
    stages = p.ctx.record.get("stages") or [{}]
    train = p.ctx.record.get("train") or (stages[-1] if isinstance(stages[-1], dict) else {}).get("train") or {}
    return train.get("monitor", "loss")


def _best(h: History, monitor: str):
    """(epoch, name, value) of the best validation value (None without validation)."""
    values = h.series.get(("val", monitor))
    finite = [(v, e) for v, e in zip(values or [], h.epochs) if math.isfinite(v)]
    if not finite:
        return None
    value, epoch = min(finite)
    return epoch, monitor, value


def _duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h {m:02d}m" if hours else f"{m}m {s:02d}s" if m else f"{seconds:.1f}s"


def _run_section(p: RunReport) -> str:
    from .report_sections import SECTIONS

    out = [f"<h2>{_e(p.label)}</h2>", f"<p class=note>{_e(p.ctx.run)}</p>", "<div class=cols>",
           _settings(p), _metrics(p), "</div>", "<h3>Curves</h3>",
           _figure("solid: training, dashed: validation", render_curves(p.history))]
    if getattr(p.ctx.model, "reads", "images") == "text":  # sentence models: text, not pictures
        out += ["<h3>Sentences</h3>", _sentences(p.ctx)]
    elif getattr(p.ctx.model, "reads", "images") == "audio":  # speech: sounds and spectrograms
        from .report_audio import audio_sections
        out += audio_sections(p.ctx, _figure)
    else:
        for title, make in SECTIONS:
            out.append(f"<h3>{_e(title)}</h3>")
            out.append(_pictures(make, p.ctx))
    return "<section>" + "\n".join(out) + "</section>"


def _sentences(ctx: ReportContext) -> str:
    """Samples (greedy and drawn), reconstructions, a homotopy and nearest sentences, as text
    (:func:`vaelab.text_outputs.text_report`, on test sentences where the run has them)."""
    from ..text_outputs import text_report

    try:
        data = ctx.test.subset(slice(0, 1000)).batch() if ctx.test is not None else None
        text = text_report(ctx.model, data, ctx.seed)
    except VaelabError as exc:
        return f"<p class=note>could not write them: {_e(brief(exc))}</p>"
    return f"<pre class=wide>{_e(text)}</pre>"


def _pictures(make, ctx: ReportContext) -> str:
    try:
        return "".join(_figure(caption, png) for caption, png in make(ctx))
    except NotApplicable as exc:
        return f"<p class=note>not shown: {_e(exc)}</p>"
    except VaelabError as exc:
        return f"<p class=note>could not draw it: {_e(brief(exc))}</p>"


def _settings(p: RunReport) -> str:
    """Model, training and data settings as recorded in run.json, and the wall time."""
    from ..training import TrainConfig

    r = p.ctx.record
    rows = [["model", r.get("model", "?")]]
    config = _applicable(_config_class(r.get("model")), r.get("config") or {})
    rows += [[k, _plain(v)] for k, v in sorted(config.items())]
    data = r.get("data") or {}
    rows += [[f"data {k}", _plain(v)] for k, v in data.items()]
    rows += [["binarization", p.ctx.binarize]]
    train = [[k, _plain(v)] for k, v in sorted(_applicable(TrainConfig, r.get("train") or {}).items())]
    for stage in r.get("stages") or []:
        if isinstance(stage, dict):
            config = _applicable(_config_class(stage.get("model")), stage.get("config"))
            rows.append([f"stage {stage.get('name')}", f"{stage.get('model')} {_plain(config)}"])
    epochs = sum(len(h.epochs) for h in p.history)
    rows.append(["wall time", f"{_duration(sum(h.seconds for h in p.history))} over {epochs} epochs "
                              "(training and validation)"])
    more = f"<details><summary>training settings</summary>{_table(['setting', 'value'], train)}</details>" \
        if train else ""
    return "<div><h3>Settings</h3>" + _table(["setting", "value"], rows) + more + "</div>"


def _applicable(config_cls, settings):
    """The recorded settings that take effect (no sigma for a Bernoulli likelihood, no channels
    for an MLP), by each config field's ``applies`` metadata, with those an old record lacks as
    it was trained; all of them where the config is unknown."""
    from ..config import applicable_settings

    from ..models.registry import as_trained

    if config_cls is None or not isinstance(settings, dict):
        return settings
    return applicable_settings(config_cls, as_trained(config_cls, settings))


def _config_class(model) -> type | None:
    from ..models import model_class, names

    return model_class(model).Config if isinstance(model, str) and model in names() else None


def _plain(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items())
    return str(value)


def _metrics(p: RunReport) -> str:
    """Best-epoch and last-epoch values of each quantity, then the test evaluation."""
    out = ["<div><h3>Metrics</h3>"]
    for h in p.history:
        best = _best(h, _monitor(p)) if h is p.history[-1] else None
        at_best = h.epochs.index(best[0]) if best else None
        header = ["quantity"] + ([f"best val {best[1]} (epoch {best[0]})"] if best else []) + \
            [f"last (epoch {h.epochs[-1]})"]
        rows = [[f"{part} {name}" if part else name] + ([values[at_best]] if best else []) + [values[-1]]
                for (part, name), values in h.series.items()]
        if len(p.history) > 1:
            out.append(f"<p class=note>{_e(h.label)}</p>")
        out.append(_table(header, rows))
    if p.evaluation is None:
        out.append(f"<p class=note>{_e(p.eval_note)}</p>")
    else:
        e = p.evaluation
        out.append(f"<p class=note>test split: first {e.get('n')} images, binarization {_e(e.get('binarize'))}"
                   f"{', ' + str(e.get('k')) + ' importance samples' if e.get('k') else ', no NLL'}</p>")
        out.append(_table(["test", "value"], [[k, v] for k, v in _scalars(e).items()]))
    return "\n".join(out) + "</div>"
