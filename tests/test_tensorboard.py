"""``--tensorboard``: the event files hold exactly what metrics.jsonl holds, a resume appends
to them, and a missing package is one line before training starts."""
from __future__ import annotations

import json
import sys

import pytest

import vaelab
from vaelab.errors import VaelabError

from conftest import FAST, TINY

pytest.importorskip("tensorboard", reason="tensorboard is not installed (it is part of the test extra)")


def _scalars(run) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _train(synthetic_small, out, epochs, **kwargs):
    return vaelab.train("vae", synthetic_small.train.subset(slice(0, 300)), out, model_config=TINY,
                        config={**FAST, "epochs": epochs, "tensorboard": True},
                        val_data=synthetic_small.val.subset(slice(0, 100)), progress=False, **kwargs)


def test_event_files_hold_the_metrics_and_a_resume_appends(synthetic_small, tmp_path):
    out = tmp_path / "run"
    _train(synthetic_small, out, 2)
    first = sorted((out / "tensorboard").iterdir())
    vaelab.train("vae", synthetic_small.train.subset(slice(0, 300)), out, config={**FAST, "epochs": 3,
                 "tensorboard": True}, val_data=synthetic_small.val.subset(slice(0, 100)), resume=True, progress=False)
    files = sorted((out / "tensorboard").iterdir())
    assert len(files) == 2 and files[0] == first[0]  # the first file kept, a second one beside it
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    scalars = _scalars(out)
    assert {"train/recon", "train/kl", "val/loss", "val/recon", "val/kl", "lr", "seconds"} <= set(scalars)
    for tag, (part, name) in {"train/kl": ("train", "kl"), "val/loss": ("val", "loss")}.items():
        assert [s for s, _ in scalars[tag]] == [1, 2, 3]
        assert [v for _, v in scalars[tag]] == pytest.approx([line[part][name] for line in lines], rel=1e-6)
    assert [v for _, v in scalars["lr"]] == pytest.approx([line["lr"] for line in lines])


def test_a_missing_tensorboard_package_is_one_line_before_training(synthetic_small, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(VaelabError, match="pip install tensorboard"):
        _train(synthetic_small, tmp_path / "run", 1)
    assert not (tmp_path / "run").exists()  # refused before the run directory was made


def test_a_resume_purges_the_epochs_a_crashed_run_logged_after_its_checkpoint(tmp_path):
    from vaelab.training.board import Board

    line = lambda epoch, loss: {"epoch": epoch, "lr": 1e-3, "train": {"recon": loss}, "val": {"loss": loss}}  # noqa: E731
    board = Board(tmp_path, first_epoch=0)
    for epoch in (1, 2, 3):  # epoch 3 logged, then a crash before its checkpoint
        board.add(line(epoch, 10.0 - epoch))
    board.close()
    board = Board(tmp_path, first_epoch=2)  # resumed from the checkpoint of epoch 2
    board.add(line(3, 1.5))
    board.close()
    assert _scalars(tmp_path)["val/loss"] == [(1, 9.0), (2, 8.0), (3, 1.5)]
