"""Crash safety and hostile input: SIGKILL at random moments (a fast soak), Ctrl-C once and
twice, damaged checkpoints falling back to the previous one, full and read-only disks,
non-finite steps skipped, pickles that must never run, absurd file headers and dataset
specs that try to leave their directory. docs/reliability.md links each guarantee here."""
from __future__ import annotations

import errno
import importlib.util
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import vaelab
import vaelab.files as vfiles
from vaelab.cli import main as cli_main
from vaelab.errors import VaelabError
from vaelab.models import Loss
from vaelab.training import rundir as rundir_module
from vaelab.training import trainer as trainer_module
from vaelab.training.checkpoint import previous_path, read_checkpoint

REPO = Path(__file__).resolve().parents[1]
FAST = {"threads": 1, "batch_size": 100}
TINY = {"hidden": [32], "latent_dim": 4}


def _tiny_model():
    torch.manual_seed(0)
    return vaelab.build("vae", input_shape=[1, 28, 28], **TINY)


def _train(small, out, model=None, resume=False, n_train=600, **settings):
    config = {**FAST, "epochs": 3, "lr": 3e-3, "val_size": 0, **settings}
    return vaelab.train(model if model is not None else "vae", small.train.subset(slice(0, n_train)), out,
                        model_config=None if (model is not None or resume) else dict(TINY),
                        config=config, val_data=small.val.subset(slice(0, 200)), resume=resume, progress=False)


def _metrics(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in ("seconds", "cpu_seconds")}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def _assert_same_run(a: Path, b: Path):
    """Bit-identical: weights file, every checkpoint tensor (weights, Adam, RNGs), metrics."""
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    for name in ("last", "best"):
        ta, sa = read_checkpoint(a / "checkpoints" / f"{name}.safetensors")
        tb, sb = read_checkpoint(b / "checkpoints" / f"{name}.safetensors")
        assert ta.keys() == tb.keys() and sa["counters"] == sb["counters"], name
        for k in ta:
            assert torch.equal(ta[k], tb[k]), (name, k)
    assert _metrics(a) == _metrics(b)


def _temporaries(run: Path) -> list[str]:
    return [p.name for p in run.rglob("*.tmp")]


@pytest.fixture(scope="module")
def straight(synthetic_small, tmp_path_factory):
    """The uninterrupted 3-epoch run every interrupted one must equal bit for bit."""
    out = tmp_path_factory.mktemp("straight") / "run"
    _train(synthetic_small, out)
    return out


class _StepHook:
    """Wrap ``model.loss`` to act at given training steps (1-based, counted across epochs)."""

    def __init__(self, model, actions):
        self.model, self.actions, self.steps = model, actions, 0
        self.original = model.loss
        model.loss = self

    def __call__(self, batch):
        result = self.original(batch)
        if self.model.training:
            self.steps += 1
            action = self.actions.get(self.steps)
            out = action(result) if action is not None else None
            if isinstance(out, Loss):
                result = out
        return result


def _nan(result):
    kl = result.terms["kl"] * float("nan")
    return Loss(result.terms["recon"] + kl, {"recon": result.terms["recon"], "kl": kl}, result.weights)


def _sigint(times=1):
    def send(_):
        for _ in range(times):
            os.kill(os.getpid(), signal.SIGINT)
    return send


# --- SIGKILL at random moments: the fast soak ---------------------------------------------


@pytest.fixture(scope="module")
def images_npy(synthetic_small, tmp_path_factory):
    path = tmp_path_factory.mktemp("npy") / "images1000.npy"
    np.save(path, (synthetic_small.train.x[:1000, 0].numpy() * 255).round().astype(np.uint8))
    return f"npy:{path}"


def test_sigkill_soak_fast(images_npy, tmp_path):
    """benchmarks/soak.py in miniature: 3 SIGKILLs (one during a checkpoint write), resume, compare."""
    spec = importlib.util.spec_from_file_location("soak", REPO / "benchmarks" / "soak.py")
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    args = SimpleNamespace(kind="vae", kills=3, kills_per_run=3, epochs=3, batch_size=50, val_size=200, seed=0,
                           seed_soak=3, write_delay=0.2, corrupt=0.0, keep=False)
    result = soak.soak(images_npy, tmp_path, args, log=lambda *a: None)
    assert result["kills"] == 3 and result["runs_lost"] == 0, result["lost"]
    assert result["kills_survived"] == 3
    assert result["kills_during_checkpoint_write"] >= 1


# --- Ctrl-C ---------------------------------------------------------------------------------


def test_ctrl_c_mid_epoch_saves_and_resume_is_bit_identical(synthetic_small, straight, tmp_path):
    out = tmp_path / "run"
    model = _tiny_model()
    _StepHook(model, {9: _sigint()})  # epoch 2 (6 steps per epoch), step 3 of 6
    with pytest.raises(trainer_module.TrainingInterrupted, match=r"stopped by SIGINT at epoch 2, step 9; .*"
                                                                 r"last.safetensors holds everything.*--resume"):
        _train(synthetic_small, out, model=model)
    _, state = read_checkpoint(out / "checkpoints" / "last.safetensors")
    assert state["counters"]["epoch"] == 1 and state["counters"]["epoch_step"] == 3
    assert state["counters"]["step"] == 9
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler put back
    _train(synthetic_small, out, resume=True)
    _assert_same_run(straight, out)


def test_sigterm_stops_like_a_first_ctrl_c(synthetic_small, straight, tmp_path):
    out = tmp_path / "run"
    model = _tiny_model()
    _StepHook(model, {4: lambda r: os.kill(os.getpid(), signal.SIGTERM)})
    with pytest.raises(trainer_module.TrainingInterrupted, match=r"stopped by SIGTERM at epoch 1, step 4"):
        _train(synthetic_small, out, model=model)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    _train(synthetic_small, out, resume=True)
    _assert_same_run(straight, out)


def test_second_ctrl_c_stops_at_once_and_keeps_the_checkpoint(synthetic_small, straight, tmp_path):
    out = tmp_path / "run"
    model = _tiny_model()
    seen = {}
    _StepHook(model, {7: lambda r: seen.setdefault("last", (out / "checkpoints" / "last.safetensors").read_bytes()),
                      9: _sigint(times=2)})
    with pytest.raises(trainer_module.TrainingInterrupted, match=r"interrupted; .* keeps the checkpoint of epoch 1 "
                                                                 r"\(intact\): continue with --resume"):
        _train(synthetic_small, out, model=model)
    assert (out / "checkpoints" / "last.safetensors").read_bytes() == seen["last"]
    assert not _temporaries(out)
    _train(synthetic_small, out, resume=True)
    _assert_same_run(straight, out)


def test_second_ctrl_c_during_a_checkpoint_write_corrupts_nothing(synthetic_small, straight, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_write, real_atomic = vfiles._write_fd, vfiles.atomic_write_bytes
    state = {"last_writes": 0, "armed": False}

    def atomic(path, data):  # arm the interruption for the second write of last.safetensors
        if Path(path).name == "last.safetensors":
            state["last_writes"] += 1
            state["armed"] = state["last_writes"] == 2
        return real_atomic(path, data)

    def write_fd(fd, data):
        if not state["armed"]:
            return real_write(fd, data)
        with os.fdopen(fd, "wb") as f:
            f.write(data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGINT)  # first: finish, save, stop
            os.kill(os.getpid(), signal.SIGINT)  # second: KeyboardInterrupt right here
            f.write(data[len(data) // 2:])

    monkeypatch.setattr("vaelab.training.checkpoint.atomic_write_bytes", atomic)
    monkeypatch.setattr(vfiles, "_write_fd", write_fd)
    with pytest.raises(trainer_module.TrainingInterrupted, match=r"keeps the checkpoint of epoch 1 \(intact\)"):
        _train(synthetic_small, out)
    monkeypatch.undo()
    assert not _temporaries(out)
    _, kept = read_checkpoint(out / "checkpoints" / "last.safetensors")  # checksum verified
    assert kept["counters"]["epoch"] == 1
    _train(synthetic_small, out, resume=True)
    _assert_same_run(straight, out)


def _cli_train(data, out, *extra):
    return [sys.executable, "-m", "vaelab.cli", "train", "vae", "--data", data, "--out", str(out),
            "--hidden", "32", "--latent-dim", "4", "--batch-size", "10", "--val-size", "100",
            "--threads", "1", "--no-progress", *extra]


def _wait_for_checkpoint(proc, run: Path, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if (run / "checkpoints" / "last.safetensors").exists():
            return
        time.sleep(0.01)
    pytest.fail(f"the training subprocess did not finish an epoch: {proc.poll()}")


def _read_notice(stream) -> str:
    """The first non-empty line of a pipe, read byte by byte from its descriptor: a buffered
    readline could take later lines into Python's buffer, where communicate() never sees them."""
    data = b""
    while not (data.endswith(b"\n") and data.strip()):
        chunk = os.read(stream.fileno(), 1)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_in_a_subprocess(images_npy, tmp_path, capsys, presses):
    """Real signals to a real `vaelab train`: exit status 130, no traceback, a checkpoint that
    passes its checksum, and a resume equal to an uninterrupted run. The second press is sent
    while the first one's checkpoint is being written (slowed by the documented test hook)."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if presses == 2:
        env["VAELAB_TEST_WRITE_DELAY"] = "0.5"
    proc = subprocess.Popen(_cli_train(images_npy, out, "--epochs", "100"), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(proc, out)
    proc.send_signal(signal.SIGINT)
    if presses == 2:
        first = _read_notice(proc.stderr)  # the handler's notice: the save is under way
        assert "stopping after this step" in first, first
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    err = (first if presses == 2 else "") + err
    assert proc.returncode == 130, err
    last_line = err.strip().splitlines()[-1]
    stopped = last_line.startswith("error: stopped by SIGINT") and "continue with --resume" in last_line
    if presses == 2 and "Exception ignored in" in err:  # the second press landed in a finalizer, which
        assert stopped, err                               # Python reports and swallows: the first one's stop
    else:
        assert "Traceback" not in err, err
        # a second press after the save (a loaded machine) is ignored while the command exits
        assert stopped or presses == 2 and last_line.startswith("error: interrupted; ") and "(intact)" in last_line, err
    assert not _temporaries(out)
    _, state = read_checkpoint(out / "checkpoints" / "last.safetensors")
    stopped = state["counters"]["epoch"] + 1
    code = cli_main([str(a) for a in _cli_train(images_npy, out, "--resume", "--epochs", stopped)[3:]])
    assert code == 0, capsys.readouterr().err
    ref = tmp_path / "ref"
    assert cli_main([str(a) for a in _cli_train(images_npy, ref, "--epochs", stopped)[3:]]) == 0
    _assert_same_run(ref, out)


def test_ctrl_c_while_the_stopped_command_exits_is_quiet(images_npy, tmp_path):
    """Presses after the run was stopped and saved (the interpreter is shutting down) are
    ignored: no traceback from Python's shutdown under the command's one error line."""
    out = tmp_path / "run"
    proc = subprocess.Popen(_cli_train(images_npy, out, "--epochs", "100"), env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(proc, out)
    proc.send_signal(signal.SIGINT)
    lines = []
    while not (lines and lines[-1].startswith("error: ")):
        line = proc.stderr.readline()
        assert line, "".join(lines)
        lines.append(line)
    for _ in range(3):
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        time.sleep(0.01)
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 130, rest
    assert not rest.strip(), rest
    assert lines[-1].startswith("error: stopped by SIGINT"), lines


# --- damaged checkpoints --------------------------------------------------------------------


def _damage(path: Path, how: str):
    if how == "flipped":
        data = bytearray(path.read_bytes())
        for i in range(len(data) - 40, len(data) - 20):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.unlink()


@pytest.mark.parametrize("how", ["flipped", "truncated", "missing"])
def test_damaged_last_checkpoint_falls_back_to_the_previous(synthetic_small, straight, tmp_path, capsys, how):
    out = tmp_path / "run"
    _train(synthetic_small, out, epochs=2)
    last = out / "checkpoints" / "last.safetensors"
    assert read_checkpoint(previous_path(last))[1]["counters"]["epoch"] == 1  # rotated, not copied
    _damage(last, how)
    capsys.readouterr()
    _train(synthetic_small, out, resume=True)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "last.prev.safetensors (epoch 1)" in warnings[0], warnings
    if how != "missing":
        assert (out / "checkpoints" / "last.safetensors.damaged").exists()
    _assert_same_run(straight, out)


def test_both_checkpoints_damaged_is_a_clear_error(synthetic_small, tmp_path):
    out = tmp_path / "run"
    _train(synthetic_small, out, epochs=2)
    last = out / "checkpoints" / "last.safetensors"
    _damage(last, "truncated")
    _damage(previous_path(last), "flipped")
    with pytest.raises(VaelabError, match=r"--resume: .*last.safetensors is not a valid safetensors file.*"
                                          r"the previous checkpoint is unusable too .*checksum mismatch"):
        _train(synthetic_small, out, resume=True)


def test_checksum_covers_the_state_record(synthetic_small, tmp_path):
    """Loop counters live in the metadata; editing them without the tensors is detected."""
    from safetensors.torch import save as st_save

    out = tmp_path / "run"
    _train(synthetic_small, out, epochs=1)
    last = out / "checkpoints" / "last.safetensors"
    tensors, meta = vfiles.read_safetensors(last)
    meta["state"] = meta["state"].replace('"epoch": 1', '"epoch": 7')
    last.write_bytes(st_save(tensors, metadata=meta))
    with pytest.raises(VaelabError, match=r"corrupted \(checksum mismatch\)"):
        read_checkpoint(last)


def test_stale_temporaries_are_removed_and_a_second_trainer_is_refused(synthetic_small, tmp_path):
    import fcntl

    out = tmp_path / "run"
    _train(synthetic_small, out, epochs=1)
    stale = out / "checkpoints" / ".last.safetensors.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = out / ".someone-elses.tmp"  # not a name vaelab writes: left alone
    other.write_bytes(b"x")
    with open(out / ".lock", "a") as held:  # as a running trainer holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(VaelabError, match=r"another vaelab process is training in"):
            _train(synthetic_small, out, epochs=2, resume=True)
    _train(synthetic_small, out, epochs=2, resume=True)
    assert not stale.exists() and other.exists()


# --- full and read-only disks ---------------------------------------------------------------


def test_disk_full_at_a_checkpoint_stops_cleanly(synthetic_small, straight, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = vfiles._write_fd
    calls = {"n": 0}

    def full(fd, data):
        if (out / "checkpoints" / "last.safetensors").exists():  # after the first checkpoint
            calls["n"] += 1
            os.close(fd)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(vfiles, "_write_fd", full)
    with pytest.raises(VaelabError) as err:
        _train(synthetic_small, out)
    message = str(err.value)
    assert "No space left on device" in message and "free disk space" in message
    assert "last good checkpoint" in message and "is intact" in message and "--resume" in message
    assert "\n" not in message and calls["n"] == 1
    monkeypatch.undo()
    assert not _temporaries(out)
    assert read_checkpoint(out / "checkpoints" / "last.safetensors")[1]["counters"]["epoch"] == 1
    _train(synthetic_small, out, resume=True)
    _assert_same_run(straight, out)


def test_too_little_free_space_is_refused_before_training(synthetic_small, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda p: SimpleNamespace(total=10**9, used=10**9, free=4096))
    with pytest.raises(VaelabError, match=r"only 0.0 MiB free on the disk holding .*need about .* MiB; free space"):
        _train(synthetic_small, tmp_path / "run")
    assert not (tmp_path / "run" / "run.json").exists()


def test_read_only_file_system_is_refused_before_training(synthetic_small, tmp_path, monkeypatch):
    real_open = open

    def read_only(path, *args, **kwargs):
        if str(path).endswith(".write-test.tmp"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(rundir_module, "open", read_only, raising=False)
    with pytest.raises(VaelabError, match=r"cannot write to run directory .*run: it is read-only; choose a writable"):
        _train(synthetic_small, tmp_path / "run")
    assert not (tmp_path / "run" / "run.json").exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes through chmod")
def test_read_only_run_directory(synthetic_small, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(VaelabError, match=r"cannot write to run directory .*read-only"):
            _train(synthetic_small, out)
    finally:
        out.chmod(0o755)


# --- non-finite steps -----------------------------------------------------------------------


def test_nonfinite_skip_counts_and_lowers_the_learning_rate(synthetic_small, tmp_path):
    out = tmp_path / "run"
    model = _tiny_model()
    _StepHook(model, {3: _nan, 8: _nan})
    result = _train(synthetic_small, out, model=model, nonfinite="skip", nonfinite_lr_factor=0.5)
    assert result.skipped_steps == 2
    lines = _metrics(out)
    assert [line["skipped"] for line in lines] == [1, 1, 0]
    assert [line["lr_scale"] for line in lines] == [0.5, 0.25, 0.25]
    assert [line["step"] for line in lines] == [6, 12, 18]  # skipped steps still consume their batch
    assert lines[2]["lr"] == pytest.approx(3e-3 * 0.25)
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_nonfinite_gradient_is_skipped_too(synthetic_small, tmp_path):
    def nan_gradient(result):  # finite value, NaN gradient: d sqrt(0 * s) = inf * 0
        p = next(model.parameters())
        return Loss(result.total + torch.sqrt(p.sum() * 0), result.terms, result.weights)

    model = _tiny_model()
    _StepHook(model, {2: nan_gradient})
    result = _train(synthetic_small, tmp_path / "run", model=model, epochs=1, nonfinite="skip")
    assert result.skipped_steps == 1
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_nonfinite_skips_are_bounded(synthetic_small, tmp_path):
    model = _tiny_model()
    _StepHook(model, {s: _nan for s in range(2, 20)})
    with pytest.raises(VaelabError, match=r"non-finite at epoch 1, step 5: term 'kl' .*after 3 skipped steps "
                                          r"\(--nonfinite-max-skips\)"):
        _train(synthetic_small, tmp_path / "run", model=model, nonfinite="skip", nonfinite_max_skips=3)


def test_nonfinite_options_on_the_command_line(images_npy, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli_main(["train", "vae", "--data", images_npy, "--out", str(out), "--epochs", "1", "--hidden", "16",
                     "--latent-dim", "2", "--threads", "1", "--no-progress", "--val-size", "100",
                     "--nonfinite", "skip", "--nonfinite-lr-factor", "0.25", "--nonfinite-max-skips", "4"])
    assert code == 0, capsys.readouterr().err
    train = json.loads((out / "run.json").read_text())["train"]
    assert (train["nonfinite"], train["nonfinite_lr_factor"], train["nonfinite_max_skips"]) == ("skip", 0.25, 4)
    code = cli_main(["train", "vae", "--data", images_npy, "--out", str(tmp_path / "r2"), "--nonfinite", "ignore"])
    assert code == 2 and "unknown non-finite policy 'ignore'; choose one of: stop, skip" in capsys.readouterr().err


# --- determinism ----------------------------------------------------------------------------


def test_two_fresh_runs_are_bit_identical(synthetic_small, straight, tmp_path):
    torch.manual_seed(99)  # the caller's RNG state must not leak in
    _train(synthetic_small, tmp_path / "again")
    _assert_same_run(straight, tmp_path / "again")


# --- loading never executes code ------------------------------------------------------------


class _OpenPayload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _SystemPayload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _TouchPayload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("payload", [_OpenPayload, _SystemPayload, _TouchPayload])
@pytest.mark.parametrize("name", ["model.pt", "model.safetensors", "checkpoint.pt", "checkpoint", "file"])
def test_pickle_payloads_are_refused_and_never_run(tmp_path, capsys, payload, name):
    marker = tmp_path / "pwned"
    blob = pickle.dumps({"state_dict": payload(marker)})
    model_dir = tmp_path / "m"
    if name == "checkpoint":  # a training checkpoint a --resume would read
        with pytest.raises(VaelabError, match=r"pickle/zip file, not safetensors; vaelab never unpickles"):
            path = tmp_path / "last.safetensors"
            path.write_bytes(blob)
            read_checkpoint(path)
    elif name == "file":  # the pickle itself handed to load / the CLI
        path = tmp_path / "model.pt"
        path.write_bytes(blob)
        with pytest.raises(VaelabError, match=r"is a file \(it holds a pickle, which vaelab never loads\)"):
            vaelab.load(path)
        assert cli_main(["sample", str(path), "-o", str(tmp_path / "s.png")]) == 2
    else:
        vaelab.save(_tiny_model(), model_dir)
        if name != "model.safetensors":
            (model_dir / "model.safetensors").unlink()
            (model_dir / "config.json").unlink()
        (model_dir / name).write_bytes(blob)
        with pytest.raises(VaelabError, match=r"pickle") as err:
            vaelab.load(model_dir)
        assert "\n" not in str(err.value)
        assert cli_main(["sample", str(model_dir), "-o", str(tmp_path / "s.png")]) == 2
    assert not marker.exists(), "loading executed the pickle's payload"


def test_resume_from_a_pickled_checkpoint_is_refused(synthetic_small, tmp_path):
    out = tmp_path / "run"
    _train(synthetic_small, out, epochs=1)
    marker = tmp_path / "pwned"
    (out / "checkpoints" / "last.safetensors").write_bytes(pickle.dumps(_OpenPayload(marker)))
    with pytest.raises(VaelabError, match=r"--resume: .*pickle/zip file, not safetensors"):
        _train(synthetic_small, out, epochs=2, resume=True)
    assert not marker.exists()


def _safetensors(header: dict, payload: bytes = b"", header_len: int | None = None) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if header_len is None else header_len) + text + payload


@pytest.mark.parametrize("blob", [
    _safetensors({}, header_len=2**60),
    _safetensors({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8),  # past EOF
    _safetensors({"w": {"dtype": "F32", "shape": [2**32, 2**32, 2**32], "data_offsets": [0, 0]}}),  # overflow
    _safetensors({"w": {"dtype": "F32", "shape": [2**40], "data_offsets": [0, 2**42]}}),  # huge, absent
], ids=["header-2^60", "offsets-past-eof", "shape-overflow", "huge-declared"])
def test_absurd_safetensors_headers_are_refused(tmp_path, blob):
    vaelab.save(_tiny_model(), tmp_path)
    (tmp_path / "model.safetensors").write_bytes(blob)
    start = time.perf_counter()
    with pytest.raises(VaelabError, match=r"not a valid safetensors file"):
        vaelab.load(tmp_path)
    assert time.perf_counter() - start < 2


def test_config_declaring_a_huge_model_is_refused_before_allocating(tmp_path):
    vaelab.save(_tiny_model(), tmp_path)
    record = json.loads((tmp_path / "config.json").read_text())
    record["config"]["hidden"] = [10**6, 10**6]  # 10^12 weights: 4 TB if it were built
    (tmp_path / "config.json").write_text(json.dumps(record))
    start = time.perf_counter()
    with pytest.raises(VaelabError, match=r"do not match its config.json .*config needs \[1000000, 784\]"):
        vaelab.load(tmp_path)
    assert time.perf_counter() - start < 2


def test_training_a_model_larger_than_memory_is_refused(synthetic_small, tmp_path):
    with pytest.raises(VaelabError, match=r"needs about .* GiB .* more than this machine's"):
        vaelab.train("vae", synthetic_small.train, tmp_path / "run", model_config={"hidden": [10**6, 10**6]},
                     config={"epochs": 1}, progress=False)


@pytest.mark.parametrize("text, message", [
    ('{"model": "vae", "config": {}, "train": {}, "extra": 1}', r"unknown key\(s\) extra; valid: "),
    ('{"model": "vae", "config": [], "train": {}}', r"'config' must be a JSON object"),
    ('{"model": "vae", "config": {}}', r"lacks 'train'"),
    ('{"model": "vae", "config": {}, "train": {"lr": NaN}}', r"not valid JSON"),
    ('{"model": "vae", "config": {}, "train": {"seed": 1' + "0" * 30 + '}}', r"beyond 64 bits"),
])
def test_hostile_run_json_is_refused_on_resume(synthetic_small, tmp_path, text, message):
    out = tmp_path / "run"
    _train(synthetic_small, out, epochs=1)
    (out / "run.json").write_text(text)
    with pytest.raises(VaelabError, match=message):
        _train(synthetic_small, out, epochs=2, resume=True)


# --- data paths and arrays ------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["../../x", "mnist/../../etc", "/etc/passwd", "~/mnist", "mnist\0", "..\\mnist",
                                  "mnist/train-images-idx3-ubyte.gz"])
def test_dataset_names_cannot_leave_the_data_directory(tmp_path, spec):
    with pytest.raises(VaelabError, match=r"not a dataset name; use one of .*folder:PATH, npy:PATH"):
        vaelab.load_dataset(spec, data_dir=tmp_path)


def test_named_dataset_resolves_to_its_canonical_files(tmp_path):
    with pytest.raises(VaelabError) as err:
        vaelab.load_dataset(" MNIST ", data_dir=tmp_path, download=False)
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in str(err.value)


def test_folder_symlinks(tmp_path):
    """Linked image files are read; a link loop between folders does not make the walk run forever."""
    from PIL import Image

    outside = tmp_path / "elsewhere.png"
    Image.new("L", (4, 3), 200).save(outside)
    cls = tmp_path / "data" / "cat"
    cls.mkdir(parents=True)
    Image.new("L", (4, 3), 100).save(cls / "a.png")
    (cls / "b.png").symlink_to(outside)
    (cls / "loop").symlink_to(cls, target_is_directory=True)
    ds = vaelab.load_dataset(f"folder:{tmp_path / 'data'}")
    assert len(ds) == 2 and ds.classes == ("cat",)


def test_npy_declaring_huge_shapes_is_refused_before_allocating(tmp_path):
    import tracemalloc

    header = {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)}
    with open(tmp_path / "huge.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 64)
    np.savez(tmp_path / "huge.npz", x=np.zeros((2, 3, 3), np.uint8))
    data = bytearray((tmp_path / "huge.npz").read_bytes())
    stored = (tmp_path / "huge.npz").read_bytes().find(b"(2, 3, 3)")
    data[stored:stored + 9] = b"(999999,)"  # same length: a header that lies inside a valid archive
    (tmp_path / "lying.npz").write_bytes(bytes(data))
    tracemalloc.start()
    try:
        with pytest.raises(VaelabError, match=r"declares shape \(1000000, 1000000\) .* but holds only 64"):
            vaelab.load_dataset(f"npy:{tmp_path / 'huge.npy'}")
        with pytest.raises(VaelabError, match=r"lying.npz: array 'x'"):
            vaelab.load_dataset(f"npy:{tmp_path / 'lying.npz'}")
        assert tracemalloc.get_traced_memory()[1] < 16 * 2**20
    finally:
        tracemalloc.stop()


def test_npy_object_arrays_are_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    np.save(tmp_path / "o.npy", np.array([_OpenPayload(marker), None], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "o.npz", x=np.array([_OpenPayload(marker)], dtype=object))
    for name in ("o.npy", "o.npz"):
        with pytest.raises(VaelabError, match=r"holds Python objects \(dtype=object\)"):
            vaelab.load_dataset(f"npy:{tmp_path / name}")
    assert not marker.exists()


def test_a_second_ctrl_c_while_the_previous_checkpoint_is_kept_leaves_no_temporary(tmp_path, monkeypatch):
    """The race a real double Ctrl-C can hit (test_ctrl_c_in_a_subprocess[2]): KeyboardInterrupt
    while ``last`` is being kept as ``last.prev`` propagates, leaves ``last`` and the old ``prev``
    as they were and no temporary behind."""
    import vaelab.training.checkpoint as ckpt

    last = tmp_path / "last.safetensors"
    last.write_bytes(b"the latest")
    previous_path(last).write_bytes(b"the one before")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.os, "replace", interrupted)  # the temporary exists by then
    with pytest.raises(KeyboardInterrupt):
        ckpt._keep_previous(last)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    assert last.read_bytes() == b"the latest" and previous_path(last).read_bytes() == b"the one before"
