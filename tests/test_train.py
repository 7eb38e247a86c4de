"""Training (on synthetic images; on real MNIST where a figure is MNIST's): the run directory, exact resume, refusal to clobber runs,
non-finite losses with a named term, determinism, early stopping, damaged checkpoints,
and the IWAE learning-rate schedule."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import vaelab
from vaelab.errors import VaelabError
from vaelab.models import Loss
from vaelab.training import TrainConfig
from vaelab.training.checkpoint import read_checkpoint
from vaelab.training.schedules import iwae_stages, learning_rate

FAST = {"threads": 1, "batch_size": 100}  # one thread: far faster for tiny models on a shared 2-core CPU
TINY = {"hidden": [32], "latent_dim": 4}


def _run(small, out, n_train=1000, resume=False, model="vae", model_config=None, **settings):
    config = {**FAST, "epochs": 2, "lr": 3e-3, "val_size": 0, **settings}
    return vaelab.train(model, small.train.subset(slice(0, n_train)), out,
                        model_config=model_config if model_config is not None or resume else dict(TINY),
                        config=config, val_data=small.val, resume=resume, progress=False)


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _without_seconds(lines: list[dict]) -> list[dict]:
    return [{k: v for k, v in line.items() if k not in ("seconds", "cpu_seconds")} for line in lines]


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def _assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _tiny_model():
    torch.manual_seed(0)
    return vaelab.build("vae", input_shape=[1, 28, 28], **TINY)


# --- a real run --------------------------------------------------------------------


def test_training_lowers_validation_loss_and_writes_the_run_directory(mnist_small, tmp_path):
    out = tmp_path / "run"
    result = _run(mnist_small, out, n_train=2000, epochs=3)
    lines = _metrics(out)
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    assert [line["step"] for line in lines] == [20, 40, 60]  # 2000 images / batch 100
    first, last = lines[0]["val"]["loss"], lines[-1]["val"]["loss"]
    assert last < first - 10, (first, last)
    assert 60 < last < 250  # nats per example: the scale of a small MNIST VAE
    for line in lines:
        val = line["val"]
        assert val["kl"] >= 0 and line["train"]["kl"] >= 0  # KL has the right sign
        assert val["loss"] == pytest.approx(val["recon"] + val["kl"], rel=1e-5)
        assert line["lr"] == 3e-3
        assert 0 < line["cpu_seconds"] and 0 < line["seconds"]  # the campaign's budget counts CPU time

    for name in ("run.json", "config.json", "model.safetensors", "metrics.jsonl", "samples.png",
                 "reconstructions.png", "checkpoints/last.safetensors", "checkpoints/best.safetensors"):
        assert (out / name).is_file(), name
    for png in ("samples.png", "reconstructions.png"):
        with Image.open(out / png) as img:
            img.verify()
            assert img.format == "PNG"

    record = json.loads((out / "run.json").read_text())
    assert record["model"] == "vae" and record["format_version"] == 1
    assert record["config"] == {**vaelab.build("vae", input_shape=[1, 28, 28], **TINY).config.to_dict()}
    assert record["config"]["input_shape"] == [1, 28, 28]
    assert set(record["train"]) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert record["train"]["epochs"] == 3 and record["train"]["binarize"] == "auto"
    assert record["resolved"]["binarize"] == "dynamic"  # auto + Bernoulli likelihood
    assert record["data"]["n_train"] == 2000 and record["data"]["n_val"] == 500
    assert record["data"]["shape"] == [1, 28, 28]
    assert record["vaelab_version"] == vaelab.__version__

    assert result.epochs_run == 3 and not result.stopped_early
    best = min(range(3), key=lambda i: lines[i]["val"]["loss"])
    assert result.best_epoch == best + 1
    assert result.best_val == pytest.approx(lines[best]["val"]["loss"])
    # model.safetensors (what vaelab.load reads) holds the best epoch's weights
    loaded = vaelab.load(out)
    best_ckpt, _ = read_checkpoint(out / "checkpoints" / "best.safetensors")
    _assert_same_tensors(loaded.state_dict(),
                         {k[6:]: v for k, v in best_ckpt.items() if k.startswith("model/")})
    _assert_same_tensors(loaded.state_dict(), result.model.state_dict())


def test_gaussian_likelihood_resolves_to_no_binarization(synthetic_small, tmp_path):
    _run(synthetic_small, tmp_path / "run", n_train=300, epochs=1,
         model_config={**TINY, "likelihood": "gaussian-learned"})
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["resolved"]["binarize"] == "none"


def test_train_with_a_validation_fraction(synthetic_small, tmp_path):
    result = vaelab.train("vae", synthetic_small.train.subset(slice(0, 500)), tmp_path / "run",
                          model_config=TINY, config={**FAST, "epochs": 1, "val_size": 0.2}, progress=False)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["data"]["n_train"] == 400 and record["data"]["n_val"] == 100
    assert result.best_val is not None


# --- resume ---------------------------------------------------------------------------


def test_resume_is_exactly_an_uninterrupted_run(synthetic_small, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    _run(synthetic_small, straight, epochs=4)
    _run(synthetic_small, split, epochs=2)
    # an epoch-3 line written just before a crash (no checkpoint for it) must be dropped
    with open(split / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 3, "step": 30, "train": {"recon": 1.0}}) + "\n")
    result = _run(synthetic_small, split, epochs=4, resume=True)
    assert result.epochs_run == 4

    for name in ("checkpoints/last.safetensors", "checkpoints/best.safetensors"):
        a, _ = read_checkpoint(straight / name)
        b, _ = read_checkpoint(split / name)
        _assert_same_tensors(a, b)  # weights, Adam moments and every RNG state
    _assert_same_tensors(load_file(straight / "model.safetensors"), load_file(split / "model.safetensors"))
    assert _without_seconds(_metrics(straight)) == _without_seconds(_metrics(split))
    assert (straight / "samples.png").read_bytes() == (split / "samples.png").read_bytes()
    # run.json records the settings now in force (4 epochs), like the uninterrupted run
    assert json.loads((split / "run.json").read_text()) == json.loads((straight / "run.json").read_text())


def test_second_train_into_a_run_directory_is_refused_and_changes_nothing(synthetic_small, tmp_path):
    out = tmp_path / "run"
    _run(synthetic_small, out, n_train=300, epochs=1)
    before = _snapshot(out)
    with pytest.raises(VaelabError, match=r"already holds a run; pass --resume"):
        _run(synthetic_small, out, n_train=300, epochs=1)
    assert _snapshot(out) == before


def test_resume_where_no_run_was_written_starts_it(synthetic_small, tmp_path, capsys):
    """Killed before the first checkpoint: re-running the same command with resume starts the
    run from the beginning (scripts and elastic restarts re-run one command), as if uninterrupted."""
    straight = tmp_path / "straight"
    _run(synthetic_small, straight, n_train=300, epochs=2)
    lock_only, started = tmp_path / "lock-only", tmp_path / "started"
    lock_only.mkdir()
    (lock_only / ".lock").touch()  # killed before run.json
    _run(synthetic_small, started, n_train=300, epochs=2)
    for name in ("checkpoints", "model.safetensors", "config.json", "metrics.jsonl"):  # killed after run.json
        path = started / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    capsys.readouterr()
    for out, said in ((lock_only, "no run in"), (started, "stopped before its first checkpoint; starting it again"),
                      (tmp_path / "missing", "no run in")):
        result = _run(synthetic_small, out, n_train=300, epochs=2, resume=True, model_config=dict(TINY))
        assert said in capsys.readouterr().err
        assert result.epochs_run == 2 and not result.already_finished
        assert (out / "model.safetensors").read_bytes() == (straight / "model.safetensors").read_bytes()
        assert _without_seconds(_metrics(out)) == _without_seconds(_metrics(straight))


def test_resume_refuses_a_different_or_damaged_run_without_a_checkpoint(synthetic_small, tmp_path):
    out = tmp_path / "run"
    _run(synthetic_small, out, n_train=300, epochs=1)
    shutil.rmtree(out / "checkpoints")
    before = _snapshot(out)
    with pytest.raises(VaelabError, match=r"--resume: the run in .* is a different model"):
        _run(synthetic_small, out, n_train=300, epochs=2, resume=True, model_config={**TINY, "latent_dim": 8})
    (out / "run.json").write_text("{")
    with pytest.raises(VaelabError, match=r"--resume: run record .*run.json"):
        _run(synthetic_small, out, n_train=300, epochs=2, resume=True)
    damaged = tmp_path / "damaged"
    _run(synthetic_small, damaged, n_train=300, epochs=1)
    (damaged / "run.json").unlink()
    with pytest.raises(VaelabError, match=r"--resume: .* holds checkpoints/last.safetensors but no run.json"):
        _run(synthetic_small, damaged, n_train=300, epochs=2, resume=True, model_config=dict(TINY))
    shutil.rmtree(damaged / "checkpoints")  # a saved model is not an empty directory either
    saved = _snapshot(damaged)
    with pytest.raises(VaelabError, match=r"--resume: .* holds model.safetensors but no run.json"):
        _run(synthetic_small, damaged, n_train=300, epochs=2, resume=True, model_config=dict(TINY))
    assert _snapshot(damaged) == saved
    assert _snapshot(out) == {**before, "run.json": b"{"}


def test_resume_of_a_finished_run_trains_nothing_and_writes_nothing(synthetic_small, tmp_path):
    out = tmp_path / "run"
    first = _run(synthetic_small, out, n_train=300, epochs=2)
    before = _snapshot(out)
    for epochs in (2, 1):  # the same command again, or fewer epochs than were run
        again = _run(synthetic_small, out, n_train=300, epochs=epochs, resume=True)
        assert again.already_finished and again.epochs_run == 2 and not again.stopped_early
        assert again.best_epoch == first.best_epoch and again.best_val == first.best_val
        assert _snapshot(out) == before
    _assert_same_tensors(again.model.state_dict(), first.model.state_dict())  # the best weights
    (out / "samples.png").unlink()  # killed after the last checkpoint, before the pictures
    assert _run(synthetic_small, out, n_train=300, epochs=2, resume=True).already_finished
    assert _snapshot(out) == before
    # a run that early stopping ended is finished too, whatever --epochs says
    from vaelab.training.trainer import _finished

    assert _finished({"epoch": 3, "bad_epochs": 2}, TrainConfig(epochs=10, patience=2))
    assert not _finished({"epoch": 3, "bad_epochs": 1}, TrainConfig(epochs=10, patience=2))


def test_resume_with_a_different_model_is_refused(synthetic_small, tmp_path):
    out = tmp_path / "run"
    _run(synthetic_small, out, n_train=300, epochs=1)
    before = _snapshot(out)
    with pytest.raises(VaelabError, match=r"--resume: the run in .* is a different model"):
        _run(synthetic_small, out, n_train=300, epochs=2, resume=True, model_config={**TINY, "latent_dim": 8})
    assert _snapshot(out) == before


def test_corrupted_checkpoint_is_detected_on_resume(synthetic_small, tmp_path):
    out = tmp_path / "run"
    _run(synthetic_small, out, n_train=300, epochs=1)
    path = out / "checkpoints" / "last.safetensors"
    data = bytearray(path.read_bytes())
    for i in range(len(data) - 40, len(data) - 20):  # inside the tensor data, past the header
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(VaelabError, match=r"--resume: .*corrupt.*checksum"):
        _run(synthetic_small, out, n_train=300, epochs=2, resume=True)
    path.write_bytes(bytes(data[:100]))  # truncated
    with pytest.raises(VaelabError, match=r"--resume: .*not a valid safetensors file"):
        _run(synthetic_small, out, n_train=300, epochs=2, resume=True)


# --- non-finite losses ----------------------------------------------------------------


def test_nan_loss_names_the_term_and_step_and_keeps_the_last_good_checkpoint(synthetic_small, tmp_path):
    out = tmp_path / "run"
    model = _tiny_model()
    original = model.loss
    seen = {"steps": 0, "last": None}

    def loss(batch):
        result = original(batch)
        if not model.training:
            return result
        seen["steps"] += 1
        if seen["steps"] == 11:  # first step of epoch 2: epoch 1's checkpoint exists
            seen["last"] = (out / "checkpoints" / "last.safetensors").read_bytes()
        if seen["steps"] == 13:
            kl = result.terms["kl"] * float("nan")
            return Loss(result.terms["recon"] + kl, {"recon": result.terms["recon"], "kl": kl}, result.weights)
        return result

    model.loss = loss
    with pytest.raises(VaelabError) as err:
        vaelab.train(model, synthetic_small.train.subset(slice(0, 1000)), out,
                     config={**FAST, "epochs": 3, "val_size": 0}, val_data=synthetic_small.val, progress=False)
    message = str(err.value)
    assert "non-finite at epoch 2, step 13" in message
    assert "term 'kl'" in message and "kl = nan" in message
    assert "last good checkpoint" in message and "last.safetensors" in message
    assert "\n" not in message
    assert (out / "checkpoints" / "last.safetensors").read_bytes() == seen["last"]
    tensors, state = read_checkpoint(out / "checkpoints" / "last.safetensors")
    assert state["counters"]["epoch"] == 1 and state["counters"]["step"] == 10
    assert [line["epoch"] for line in _metrics(out)] == [1]
    vaelab.load(out)  # the best weights so far are still loadable


def test_diverging_lr_gives_a_clear_error(synthetic_small, tmp_path):
    with pytest.raises(VaelabError, match=r"non-finite at epoch 1, step \d+: term '(recon|kl|total)'.*"
                                          r"no checkpoint was written yet.*lower --lr"):
        _run(synthetic_small, tmp_path / "run", n_train=500, epochs=1, lr=1e30)


# --- determinism and early stopping ---------------------------------------------------


def test_same_seed_same_weights_different_seed_different_weights(synthetic_small, tmp_path):
    torch.manual_seed(1234)  # the caller's global RNG state must not matter
    a = _run(synthetic_small, tmp_path / "a", n_train=500, epochs=1, seed=7)
    torch.manual_seed(999)
    b = _run(synthetic_small, tmp_path / "b", n_train=500, epochs=1, seed=7)
    c = _run(synthetic_small, tmp_path / "c", n_train=500, epochs=1, seed=8)
    _assert_same_tensors(load_file(tmp_path / "a" / "model.safetensors"),
                         load_file(tmp_path / "b" / "model.safetensors"))
    _assert_same_tensors(a.model.state_dict(), b.model.state_dict())
    assert _without_seconds(_metrics(tmp_path / "a")) == _without_seconds(_metrics(tmp_path / "b"))
    assert not torch.equal(a.model.state_dict()["encoder.1.0.weight"], c.model.state_dict()["encoder.1.0.weight"])


def test_patience_stops_training_and_keeps_the_best_epoch(synthetic_small, tmp_path):
    out = tmp_path / "run"
    model = _tiny_model()
    original = model.loss

    def loss(batch):  # a validation loss that never improves after epoch 1
        if model.training:
            return original(batch)
        value = torch.tensor(100.0)
        return Loss(value, {"recon": value, "kl": torch.tensor(0.0)}, {"recon": 1.0, "kl": 1.0})

    model.loss = loss
    result = vaelab.train(model, synthetic_small.train.subset(slice(0, 500)), out,
                          config={**FAST, "epochs": 20, "patience": 2, "val_size": 0},
                          val_data=synthetic_small.val, progress=False)
    assert result.stopped_early
    assert result.epochs_run == 3 and result.best_epoch == 1
    assert [line["epoch"] for line in _metrics(out)] == [1, 2, 3]
    best, _ = read_checkpoint(out / "checkpoints" / "best.safetensors")
    last, _ = read_checkpoint(out / "checkpoints" / "last.safetensors")
    best_w = {k[6:]: v for k, v in best.items() if k.startswith("model/")}
    last_w = {k[6:]: v for k, v in last.items() if k.startswith("model/")}
    _assert_same_tensors(load_file(out / "model.safetensors"), best_w)
    assert not all(torch.equal(best_w[k], last_w[k]) for k in best_w)  # training went on after the best
    assert best["optim/model/0/step"] < last["optim/model/0/step"]  # best keeps its own optimizer state


# --- inputs and settings --------------------------------------------------------------


def test_model_and_data_shapes_must_agree(synthetic_small, tmp_path):
    model = vaelab.build("vae", input_shape=[1, 8, 8], **TINY)
    with pytest.raises(VaelabError, match=r"expects images of shape \[1, 8, 8\], the data has \[1, 28, 28\]"):
        vaelab.train(model, synthetic_small.train, tmp_path / "run", config={"epochs": 1}, progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("settings, message", [
    ({"epochs": 0}, r"epochs must be positive"),
    ({"lr": -1.0}, r"lr must be a positive number"),
    ({"lr_schedule": "step"}, r"unknown lr schedule 'step'; choose one of: constant, cosine, iwae"),
    ({"binarize": "yes"}, r"unknown binarization 'yes'"),
    ({"patience": -1}, r"patience must be >= 0"),
    ({"epoch": 3}, r"unknown setting\(s\) epoch; valid: .*epochs"),
    ({"epochs": "3"}, r"'epochs' must be an integer"),
    ({"device": "tpu"}, r"unknown device 'tpu'"),
])
def test_invalid_training_settings(settings, message):
    with pytest.raises(VaelabError, match=message):
        TrainConfig.from_dict(settings)


# --- learning-rate schedules ----------------------------------------------------------


def test_iwae_schedule_is_the_papers_for_3280_epochs():
    stages = iwae_stages(3280)
    assert [n for n, _ in stages] == [3**i for i in range(8)]
    assert sum(n for n, _ in stages) == 3280
    lr = lambda e: learning_rate("iwae", 1e-3, e, 3280)  # noqa: E731
    assert lr(0) == pytest.approx(1e-3)
    for e in (1, 2, 3):
        assert lr(e) == pytest.approx(1e-3 * 10 ** (-1 / 7))
    for e in (4, 12):
        assert lr(e) == pytest.approx(1e-3 * 10 ** (-2 / 7))
    assert lr(13) == pytest.approx(1e-3 * 10 ** (-3 / 7))
    start = 3280 - 2187
    assert lr(start - 1) == pytest.approx(1e-3 * 10 ** (-6 / 7))
    for e in (start, 2000, 3279):
        assert lr(e) == pytest.approx(1e-4)


@pytest.mark.parametrize("epochs", [9, 20, 100, 500, 3280])
def test_iwae_schedule_compressed_keeps_its_shape(epochs):
    rates = [learning_rate("iwae", 1e-3, e, epochs) for e in range(epochs)]
    assert rates[0] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates, rates[1:]))  # never increases
    assert rates[-1] == pytest.approx(1e-4)  # reaches the last stage within the budget


def test_constant_and_cosine_schedules():
    assert learning_rate("constant", 0.01, 7, 10) == 0.01
    assert learning_rate("cosine", 0.01, 0, 10) == pytest.approx(0.01)
    assert learning_rate("cosine", 0.01, 5, 10) == pytest.approx(0.01 * (0.01 + 0.99 * 0.5))
    assert learning_rate("cosine", 0.01, 10, 10) == pytest.approx(1e-4)
    rates = [learning_rate("cosine", 1.0, e, 10) for e in range(10)]
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert math.isclose(min(rates), learning_rate("cosine", 1.0, 9, 10))


def test_lr_schedule_is_applied_per_epoch(synthetic_small, tmp_path):
    _run(synthetic_small, tmp_path / "run", n_train=200, epochs=3, lr=1e-3, lr_schedule="cosine")
    lrs = [line["lr"] for line in _metrics(tmp_path / "run")]
    assert lrs == pytest.approx([learning_rate("cosine", 1e-3, e, 3) for e in range(3)])


def test_nan_validation_loss_stops_the_run(synthetic_small, tmp_path):
    out = tmp_path / "run"
    model = _tiny_model()
    original = model.loss

    def loss(batch):
        result = original(batch)
        if model.training:
            return result
        nan = result.terms["recon"] * float("nan")
        return Loss(nan, {"recon": nan, "kl": result.terms["kl"]}, result.weights)

    model.loss = loss
    with pytest.raises(VaelabError, match=r"validation loss became non-finite after epoch 1 .*recon = nan"):
        vaelab.train(model, synthetic_small.train.subset(slice(0, 300)), out,
                     config={**FAST, "epochs": 2, "val_size": 0}, val_data=synthetic_small.val, progress=False)
    assert not (out / "metrics.jsonl").exists() or "nan" not in (out / "metrics.jsonl").read_text().lower()


def test_resume_with_different_data_is_refused(synthetic_small, tmp_path):
    out = tmp_path / "run"
    _run(synthetic_small, out, n_train=300, epochs=1)
    before = _snapshot(out)
    with pytest.raises(VaelabError, match=r"--resume: the run in .* was trained on"):
        _run(synthetic_small, out, n_train=400, epochs=2, resume=True)
    assert _snapshot(out) == before


def test_training_restores_the_callers_thread_count(synthetic_small, tmp_path):
    torch.set_num_threads(1)
    _run(synthetic_small, tmp_path / "run", n_train=200, epochs=1, threads=2)
    assert torch.get_num_threads() == 1


def test_threads_are_set_inside_the_block_and_restored_after():
    from vaelab.threads import threads

    before = torch.get_num_threads()
    with threads(0):
        assert torch.get_num_threads() == (os.cpu_count() or 1)  # 0: all cores
    with threads(None):
        assert torch.get_num_threads() == before  # None: the caller's setting stands
    with pytest.raises(RuntimeError), threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError
    assert torch.get_num_threads() == before


def test_one_thread_holds_for_numpys_matrix_products_too():
    """librosa's and scikit-learn's products run in numpy's BLAS, which torch's count does not
    reach: `--threads 1` must hold there as well, inside the block and after set_threads."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from vaelab.threads import set_threads, threads

    def blas() -> set[int]:
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    with threadpool_limits(2):
        assert blas() == {2}  # numpy's BLAS is loaded and can be told; the checks below can fail
        with threads(1):
            assert blas() == {1}
        assert blas() == {2}  # the caller's again
        previous = torch.get_num_threads()
        try:
            set_threads(1)
            assert blas() == {1} and torch.get_num_threads() == 1
        finally:
            torch.set_num_threads(previous)
