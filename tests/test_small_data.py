"""Defaults that fit the data they meet: a family's settings made for MNIST (10,000 validation
rows, 14 rows given to a completion) train on scikit-learn's 8×8 digits (1,797 images)."""
from __future__ import annotations

import json

import pytest

from vaelab.cli import main as cli_main

QUICK = ["--epochs", "1", "--threads", "1", "--no-progress"]


@pytest.mark.parametrize("name, sizes", [("aae-semi", ["--latent-dim", "2", "--hidden", "16"]),
                                         ("m2", ["--latent-dim", "2", "--hidden", "16"])])
def test_a_family_default_validation_count_too_big_for_the_data_becomes_a_fraction(name, sizes, tmp_path, capsys):
    out = tmp_path / name
    assert cli_main(["train", name, "--data", "digits", "--out", str(out)] + sizes + QUICK) == 0
    err = capsys.readouterr().err
    assert "--val-size 10000" in err and "0.1" in err and err.count("warning:") == 1
    record = json.loads((out / "run.json").read_text())
    assert record["train"]["val_size"] == 0.1
    assert record["data"]["n_val"] == 150 and record["data"]["n_train"] == 1350


def test_a_validation_count_given_that_does_not_fit_is_refused(tmp_path, capsys):
    assert cli_main(["train", "vae", "--data", "digits", "--out", str(tmp_path / "r"), "--val-size", "5000"]
                    + QUICK) == 2
    assert "5000" in capsys.readouterr().err


def test_the_end_line_and_the_report_name_the_monitored_figure(tmp_path, capsys):
    """m2 keeps its best epoch by validation error: its end line says error, not loss."""
    from vaelab.viz.report import make_report

    out = tmp_path / "m2"
    assert cli_main(["train", "m2", "--data", "digits", "--out", str(out), "--latent-dim", "2", "--hidden", "16"]
                    + QUICK) == 0
    said = capsys.readouterr().out
    assert "best validation error" in said and "validation loss" not in said
    assert cli_main(["train", "m2", "--data", "digits", "--out", str(out), "--resume"] + QUICK) == 0
    said = capsys.readouterr().out
    assert "nothing left to do" in said and "best validation error" in said
    page = make_report([out], tmp_path / "r.html", eval_images=0).read_text()
    assert "best val error (epoch 1)" in page


def test_the_report_of_a_run_of_stages_names_its_last_stage_monitor(tmp_path):
    from vaelab.viz.report import make_report

    out = tmp_path / "m1m2"
    sizes = ["--m1-hidden", "16", "--m1-latent-dim", "4", "--m1-epochs", "1", "--m2-hidden", "16",
             "--m2-latent-dim", "2"]
    assert cli_main(["train", "m1m2", "--data", "digits", "--out", str(out)] + sizes + QUICK) == 0
    page = make_report([out], tmp_path / "r.html", eval_images=0).read_text()
    assert "best val error (epoch 1)" in page and "best val loss" not in page
