"""Training curves from metrics.jsonl: the reader (resumed epochs, a crash's damaged last
line, runs of stages), the legend names, the picture and the command's one-line errors."""
from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from vaelab.cli import main
from vaelab.errors import VaelabError, VaelabWarning
from vaelab.viz.curves import curves_figure, curves_png, histories, plot_curves, quantities, run_labels


def _line(epoch, recon, lr=1e-3, val=None):
    line = {"epoch": epoch, "step": 10 * epoch, "lr": lr, "seconds": 0.5, "train": {"recon": recon, "kl": 2.0}}
    if val is not None:
        line["val"] = {"loss": val, "recon": val - 2, "kl": 2.0}
    return json.dumps(line)


def _run(path, lines, record=True):
    path.mkdir(parents=True)
    if record:
        (path / "run.json").write_text("{}")
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return path


def test_the_last_line_of_a_repeated_epoch_wins_and_every_quantity_is_read(tmp_path):
    run = _run(tmp_path / "r", [_line(1, 9.0, val=8.0), _line(2, 7.0, val=6.0), _line(2, 5.0, val=4.0),
                                _line(3, 3.0, lr=5e-4, val=2.0)])
    (h,) = histories([run])
    assert h.epochs == [1, 2, 3]
    assert h.series[("train", "recon")] == [9.0, 5.0, 3.0]
    assert h.series[("val", "loss")] == [8.0, 4.0, 2.0]
    assert h.series[("", "lr")] == [1e-3, 1e-3, 5e-4]
    assert h.seconds == pytest.approx(1.5)
    assert quantities([h]) == ["recon", "kl", "loss", "lr"]


def test_a_damaged_last_line_is_skipped_with_a_warning_an_earlier_one_is_an_error(tmp_path):
    run = _run(tmp_path / "crashed", [_line(1, 9.0), _line(2, 7.0), '{"epoch": 3, "tra'])
    with pytest.warns(VaelabWarning, match="damaged last line 3"):
        (h,) = histories([run])
    assert h.epochs == [1, 2]
    bad = _run(tmp_path / "bad", [_line(1, 9.0), "not json", _line(2, 7.0)])
    with pytest.raises(VaelabError, match="line 2 is not an epoch record"):
        histories([bad])


def test_an_epoch_without_validation_leaves_a_gap(tmp_path):
    run = _run(tmp_path / "r", [_line(1, 9.0), _line(2, 7.0, val=6.0)])
    (h,) = histories([run])
    assert math.isnan(h.series[("val", "loss")][0]) and h.series[("val", "loss")][1] == 6.0


def test_a_run_of_stages_gives_one_curve_per_stage(tmp_path):
    out = tmp_path / "pipe"
    _run(out / "1-first", [_line(1, 9.0)])
    _run(out / "2-second", [_line(1, 5.0), _line(2, 4.0)])
    (out / "stages.json").write_text("{}")
    found = histories([out])
    assert [h.label for h in found] == ["pipe/1-first", "pipe/2-second"]
    assert found[1].series[("train", "recon")] == [5.0, 4.0]


def test_clashing_run_names_get_their_parents_and_a_run_twice_is_refused(tmp_path):
    a, b, c = tmp_path / "a" / "run", tmp_path / "b" / "run", tmp_path / "other"
    assert run_labels([a, b, c]) == ["a/run", "b/run", "other"]
    with pytest.raises(VaelabError, match="given twice"):
        run_labels([a, tmp_path / "a" / ".." / "a" / "run"])


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)


def test_the_picture_has_a_panel_per_quantity_and_shows_the_values(tmp_path):
    one = _run(tmp_path / "one", [_line(e, 10.0 - e, val=9.0 - e) for e in range(1, 6)])
    other = _run(tmp_path / "other", [_line(e, 20.0 - e, val=9.0 - e) for e in range(1, 6)])
    single, pair = _pixels(curves_png([one])), _pixels(curves_png([one, other]))
    assert single.shape[1] > 2.5 * single.shape[0]  # four panels in one row: recon, kl, loss, lr
    assert single.std() > 10  # lines and text, not a blank canvas
    assert single.shape == pair.shape and np.abs(single - pair).mean() > 1  # the second run is drawn


@pytest.mark.parametrize("epochs", [1, 2, 3, 7])
def test_epoch_ticks_are_whole_numbers(tmp_path, epochs):
    run = _run(tmp_path / "r", [_line(e, 10.0 - e, val=9.0 - e) for e in range(1, epochs + 1)])
    fig = curves_figure(histories([run]))
    fig.canvas.draw()
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), (ax.get_title(), ticks)


def test_cli_writes_the_png_into_an_existing_directory_only(tmp_path, capsys):
    """A mistyped directory is refused, not created (the Python function creates it)."""
    run = _run(tmp_path / "r", [_line(1, 9.0, val=8.0), _line(2, 7.0, val=6.0)])
    out = tmp_path / "new" / "dir" / "c.png"
    assert main(["curves", str(run), "-o", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "new").exists()
    out.parent.mkdir(parents=True)
    assert main(["curves", str(run), "-o", str(out)]) == 0
    assert out.read_bytes() == plot_curves([run], tmp_path / "again" / "c.png").read_bytes()


@pytest.mark.parametrize("case, message", [
    ("missing", "is not a run directory"),
    ("no-metrics", "a run without metrics yet"),
    ("empty", "holds no epochs yet"),
    ("twice", "given twice"),
    ("suffix", "ending in .png"),
])
def test_cli_bad_input_is_one_line(tmp_path, capsys, case, message):
    run = _run(tmp_path / "r", [_line(1, 9.0)])
    (tmp_path / "no-metrics").mkdir()
    (tmp_path / "no-metrics" / "run.json").write_text("{}")
    _run(tmp_path / "empty", [""])
    args = {"missing": [str(tmp_path / "nope")], "no-metrics": [str(tmp_path / "no-metrics")],
            "empty": [str(tmp_path / "empty")], "twice": [str(run), str(run) + "/"],
            "suffix": [str(run), "-o", str(tmp_path / "c.gif")]}[case]
    assert main(["curves", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_training_lines_follow_the_points_within_each_epoch_when_recorded(tmp_path):
    """--curve-points: the training terms are drawn at their steps (fractional epochs); an epoch
    without a curve keeps its mean at its end; validation stays one point an epoch."""
    first = json.loads(_line(1, 9.0, val=8.0))
    first["train_curve"] = {"step": [5, 10], "recon": [12.0, 6.0], "kl": [3.0, 1.0]}
    second = json.loads(_line(2, 5.0, val=4.0))
    second["train_curve"] = {"step": [12, 20], "recon": [5.5, 4.5], "kl": [1.0, 1.0]}
    run = _run(tmp_path / "r", [json.dumps(first), json.dumps(second), _line(3, 4.0, val=3.5)])
    (h,) = histories([run])
    assert h.within["recon"] == ([0.5, 1.0, 1.2, 2.0, 3.0], [12.0, 6.0, 5.5, 4.5, 4.0])
    fig = curves_figure([h])
    recon = next(ax for ax in fig.axes if ax.get_title() == "recon")
    train_line, val_line = recon.get_lines()
    assert list(train_line.get_xdata()) == [0.5, 1.0, 1.2, 2.0, 3.0]
    assert list(val_line.get_xdata()) == [1, 2, 3]
    (plain,) = histories([_run(tmp_path / "p", [_line(1, 9.0), _line(2, 7.0)])])
    assert plain.within == {}
