"""Training on several processes: real ``torchrun`` jobs of 2 gloo processes on 600 MNIST
images, against one process and against themselves interrupted.

Each job is a subprocess in its own session, so a test can kill the whole job (torchrun
and its workers) as a user's Ctrl-C or an out-of-memory killer would."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vaelab.training.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
JOB_TIMEOUT = 300  # seconds; a hang fails the test instead of stalling the suite


def _gloo() -> str | None:
    """Why a torchrun job cannot run here (None: it can)."""
    import torch.distributed as dist

    if not dist.is_available():
        return "this torch build has no torch.distributed"
    if not dist.is_gloo_available():
        return "this torch build has no gloo backend"
    return None


pytestmark = pytest.mark.skipif(_gloo() is not None, reason=f"{_gloo()}: torchrun jobs cannot run")

AE = ["ae", "--hidden", "32", "--latent-dim", "4"]
VAE = ["vae", "--hidden", "32", "--latent-dim", "4"]
# 540 training images (val 0.1 of 600) in global batches of 51: 10 full steps and one of 30
# an epoch; 51 rows split 25 + 26, so unequal shares are weighted as well.
SETTINGS = ["--threads", "1", "--batch-size", "51", "--no-progress", "--seed", "3"]


@pytest.fixture(scope="module")
def npy(synthetic_small, tmp_path_factory):
    """600 synthetic digits as a uint8 N×28×28 .npy file."""
    path = tmp_path_factory.mktemp("ddp") / "digits600.npy"
    np.save(path, (synthetic_small.train.x[:600, 0].numpy() * 255).round().astype(np.uint8))
    return f"npy:{path}"


def _env(**extra) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "VAELAB_DIST_TIMEOUT": "60", **extra}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "VAELAB_TEST_WRITE_DELAY"):
        if name not in extra:
            env.pop(name, None)
    return env


def _command(nproc: int, args: list[str]) -> list[str]:
    """``torchrun --standalone`` (a free port per job) for nproc > 0; plain ``vaelab`` for 0."""
    if nproc == 0:
        return [sys.executable, "-m", "vaelab.cli", "train", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
            "-m", "vaelab.cli", "train", *args]


def _start(nproc: int, args: list[str], **env) -> subprocess.Popen:
    return subprocess.Popen(_command(nproc, args), cwd=ROOT, env=_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    """Wait for a job; one that outlives JOB_TIMEOUT is killed with its workers and fails the test."""
    try:
        out, err = proc.communicate(timeout=JOB_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the job hung for {JOB_TIMEOUT} s:\n{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _train(nproc: int, args: list[str], **env) -> subprocess.CompletedProcess:
    return _finish(_start(nproc, args, **env))


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts each worker in a session of its own, so
    killing torchrun's process group leaves the workers running)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def _kill_job(job: subprocess.Popen) -> None:
    """SIGKILL to torchrun and every worker at once, as a crash of the machine would."""
    for pid in [job.pid, *_descendants(job.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    job.communicate()


def _weights(run: Path) -> dict[str, torch.Tensor]:
    tensors, _ = read_checkpoint(run / "checkpoints" / "last.safetensors")
    return {k: v for k, v in tensors.items() if k.startswith("model/")}


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _wait_for(path: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + JOB_TIMEOUT
    while not path.exists():
        assert proc.poll() is None, f"the job ended before writing {path}: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, f"no {path} after {JOB_TIMEOUT} s"
        time.sleep(0.05)


# Float tolerance of the 2-process result: each rank's mean loss is weighted by its share
# and DDP averages the two gradients, which sums the same numbers in another order than
# one process does, so gradients differ in the last float32 bits and Adam carries that on.
# After 22 steps the weights agree to ~1e-7 here; 1e-5 is 1 % of one Adam step
# (lr 1e-3), while any real difference in the data or the weighting moves weights by whole
# steps (the per-rank-batch control below differs by more than 1e-3).
ATOL = 1e-5


@pytest.mark.slow  # three jobs
def test_two_processes_equal_one_process_with_the_same_global_batch(npy, tmp_path):
    args = [*AE, "--data", npy, *SETTINGS, "--epochs", "2"]
    two = _ok(_train(2, [*args, "--out", str(tmp_path / "two")]))
    _ok(_train(0, [*args, "--out", str(tmp_path / "one")]))
    assert two.stdout.count("trained 2 epochs") == 1  # rank 0 alone prints
    a, b = _weights(tmp_path / "two"), _weights(tmp_path / "one")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=ATOL, msg=k)
    # Reported terms are the global batch's too, not rank 0's half of it.
    lines = [(tmp_path / run / "metrics.jsonl").read_text().splitlines() for run in ("two", "one")]
    for x, y in zip(*lines):
        x, y = json.loads(x), json.loads(y)
        assert x["train"]["recon"] == pytest.approx(y["train"]["recon"], rel=1e-5)
        assert x["val"] == pytest.approx(y["val"], rel=1e-5)
    # The tolerance tells: one process on a rank's share of each batch (25) ends elsewhere.
    half = [*AE, "--data", npy, *SETTINGS, "--epochs", "2", "--batch-size", "25"]
    _ok(_train(0, [*half, "--out", str(tmp_path / "half")]))
    c = _weights(tmp_path / "half")
    assert max(float((a[k] - c[k]).abs().max()) for k in a) > 100 * ATOL


def _interrupt(job: subprocess.Popen) -> subprocess.CompletedProcess:
    """Ctrl-C as a terminal sends it: SIGINT to torchrun, which passes it on to its workers."""
    job.send_signal(signal.SIGINT)
    return _finish(job)


@pytest.mark.slow  # three jobs each
@pytest.mark.parametrize("stop", ["sigkill", "sigint"])
def test_stopped_job_resumes_to_the_uninterrupted_weights_bit_for_bit(npy, tmp_path, stop):
    """A VAE (each rank its own noise, each rank's RNG in the checkpoint) stopped after its
    first checkpoint, by SIGKILL to the whole job or by Ctrl-C (a checkpoint at the step
    it reached), then the same command with --resume."""
    if stop == "sigkill" and not Path("/proc/self/stat").exists():
        pytest.skip("finding torchrun's workers needs /proc")
    args = [*VAE, "--data", npy, *SETTINGS, "--epochs", "3"]
    _ok(_train(2, [*args, "--out", str(tmp_path / "whole")]))
    run = tmp_path / "stopped"
    job = _start(2, [*args, "--out", str(run)], VAELAB_TEST_WRITE_DELAY="0.3")
    _wait_for(run / "checkpoints" / "last.safetensors", job)
    if stop == "sigkill":
        _kill_job(job)
    else:
        stopped = _interrupt(job)
        assert stopped.returncode != 0
        errors = _errors(stopped.stderr)
        assert len(errors) == 1 and "stopped by SIGINT" in errors[0] and "--resume" in errors[0], stopped.stderr
    done = read_checkpoint(run / "checkpoints" / "last.safetensors")[1]["counters"]["epoch"]
    assert done < 3, "the job finished before it was stopped; the test proved nothing"
    resumed = _ok(_train(2, [*args, "--out", str(run), "--resume"]))
    assert resumed.stdout.count("trained 3 epochs") == 1
    a, b = _weights(run), _weights(tmp_path / "whole")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed weights differ from the uninterrupted run's"


def _digests(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_job_on_a_run_directory_another_job_holds_fails_in_one_line(npy, tmp_path):
    run = tmp_path / "held"
    args = [*AE, "--data", npy, *SETTINGS, "--out", str(run)]
    holder = _start(0, [*args, "--epochs", "1000"])
    try:
        _wait_for(run / "checkpoints" / "last.safetensors", holder)
        os.killpg(holder.pid, signal.SIGSTOP)  # keeps its lock, writes nothing while we look
        before = _digests(run)
        result = _train(2, [*args, "--epochs", "1000", "--resume"])
        assert _digests(run) == before, "the refused job changed the run directory"
        assert holder.poll() is None, "the holder was disturbed"
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        os.killpg(holder.pid, signal.SIGCONT)
        holder.communicate()
    assert result.returncode != 0
    errors = _errors(result.stderr)
    assert len(errors) == 1 and "another vaelab process is training in" in errors[0], result.stderr[-3000:]


def test_rank_that_dies_mid_epoch_ends_the_job_with_the_checkpoint_intact(npy, tmp_path):
    run = tmp_path / "run"
    # Step 15 lies in epoch 2 (11 steps an epoch): rank 1 exits as a crashed process would.
    result = _train(2, [*AE, "--data", npy, *SETTINGS, "--epochs", "3", "--out", str(run)],
                    VAELAB_TEST_EXIT_AT="1:15")
    assert result.returncode != 0
    errors = _errors(result.stderr)
    assert len(errors) == 1 and "lost contact with another process" in errors[0], result.stderr[-3000:]
    assert "--resume" in errors[0]
    tensors, state = read_checkpoint(run / "checkpoints" / "last.safetensors")  # checked against its digest
    assert state["counters"]["epoch"] == 1 and state["counters"]["step"] == 11
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
