"""Crash soak: SIGKILL a real MNIST training run at random moments, resume it, compare.

    python benchmarks/soak.py --kills 50            # about 3 minutes on 2 cores
    python benchmarks/soak.py --kills 5 --epochs 3  # a quick look
    python benchmarks/soak.py --kind two-phase      # a model with two optimisers a step
    python benchmarks/soak.py --kind stages         # a run of two stages
    python benchmarks/soak.py --kind aae            # the adversarial autoencoder's three phases
    python benchmarks/soak.py --kind aae-cluster    # the clustering aae: two discriminators

A small MLP VAE trains on a subset of real MNIST (from ``--data-dir``; written once to
a temporary ``.npy``) through the ``vaelab train`` command in a subprocess. Each run is
killed with SIGKILL several times and restarted with the same command, ``--resume``
included, as a script or an elastic restart would (a run killed before its first
checkpoint starts again from the beginning), then left to finish. Its final files must equal an uninterrupted run's bit for bit:
``model.safetensors``, every tensor of ``checkpoints/last.safetensors`` and
``checkpoints/best.safetensors`` (weights, Adam state, every RNG state) and
``metrics.jsonl`` apart from its timing field.

Kills land at random delays over a whole process lifetime, and every third one waits for
a checkpoint write to be in progress (a ``.*.tmp`` file in ``checkpoints/``). The
documented test hook ``VAELAB_TEST_WRITE_DELAY`` makes each atomic write pause halfway,
so that window is wide enough to hit. With ``--corrupt`` > 0, that fraction of kills
also truncates ``last.safetensors`` afterwards (as a disk that lost unsynced data
would), which the resume must detect and replace by ``last.prev.safetensors``.

Prints kills survived and runs lost (the goal is 0); ``--json`` prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def make_subset(data_dir: str | os.PathLike, n: int, path: Path) -> str:
    """The first ``n`` real MNIST training images as a uint8 N×28×28 ``.npy`` file."""
    import numpy as np

    import vaelab

    ds = vaelab.load_dataset("mnist", "train", data_dir=data_dir, download=False)
    x = (ds.x[:n, 0].numpy() * 255).round().astype(np.uint8)
    np.save(path, x)
    return f"npy:{path}"


def train_command(data: str, out: Path, args, resume: bool) -> list[str]:
    if args.kind != "vae":  # the driver always resumes: the same command starts or continues
        return [sys.executable, str(REPO / "benchmarks" / "soak_driver.py"), args.kind, data, str(out),
                "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                "--val-size", str(args.val_size), "--seed", str(args.seed)]
    cmd = [sys.executable, "-m", "vaelab.cli", "train", "vae", "--data", data, "--out", str(out),
           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--hidden", "64",
           "--latent-dim", "8", "--val-size", str(args.val_size), "--seed", str(args.seed),
           "--lr", "3e-3", "--threads", "1", "--no-progress"]
    return cmd + (["--resume"] if resume else [])


def _env(write_delay: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("VAELAB_TEST_WRITE_DELAY", None)
    if write_delay > 0:
        env["VAELAB_TEST_WRITE_DELAY"] = str(write_delay)
    return env


def fingerprint(run: Path) -> dict:
    """What must match bit for bit: weights file bytes, every checkpoint tensor and counter,
    and metrics.jsonl without its timing field; for a run of stages, each stage's."""
    import torch

    if (run / "stages.json").exists():
        return {d.name: fingerprint(d) for d in sorted(run.iterdir()) if d.is_dir()}

    from vaelab.training.checkpoint import read_checkpoint

    out = {"model.safetensors": (run / "model.safetensors").read_bytes()}
    for name in ("last", "best"):
        tensors, state = read_checkpoint(run / "checkpoints" / f"{name}.safetensors")
        out[name] = ({k: (v.dtype, tuple(v.shape), v.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
                      for k, v in tensors.items()}, state["counters"])
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    out["metrics"] = [{k: v for k, v in line.items() if k not in ("seconds", "cpu_seconds")} for line in lines]
    return out


def _writing(out: Path) -> bool:
    return any(p.name.endswith(".tmp") for p in out.glob("**/checkpoints/*"))


def soak(data: str, work: Path, args, log=print) -> dict:
    """Kill runs ``args.kills`` times in all; return counts, lost runs and timings."""
    rng = random.Random(args.seed_soak)
    t_start = time.perf_counter()
    ref = work / "reference"
    t = time.perf_counter()
    done = subprocess.run(train_command(data, ref, args, False), env=_env(0), capture_output=True, text=True)
    ref_seconds = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"the uninterrupted reference run failed:\n{done.stderr}")
    expected = fingerprint(ref)
    log(f"reference run: {ref_seconds:.1f} s")

    kills = survived = during_write = corrupted = runs = 0
    lost: list[str] = []
    while kills < args.kills:
        out = work / f"run{runs}"
        runs += 1
        in_run = 0
        target = min(args.kills_per_run, args.kills - kills)
        failed = None
        while True:
            final = in_run >= target  # every start is the same command, the first one too
            proc = subprocess.Popen(train_command(data, out, args, True), env=_env(args.write_delay),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if final:
                _, err = proc.communicate()
                if proc.returncode != 0:
                    failed = f"final resume exited {proc.returncode}: {err.strip().splitlines()[-1:]}"
                break
            wait_for_write = in_run % 3 == 2
            deadline = time.perf_counter() + (ref_seconds * 1.5 if wait_for_write else rng.uniform(0, ref_seconds))
            while proc.poll() is None and time.perf_counter() < deadline:
                if wait_for_write and _writing(out):
                    break
                time.sleep(0.002 if wait_for_write else 0.005)
            if proc.poll() is not None:  # it finished (or failed) before the kill came
                err = proc.stderr.read()
                proc.stderr.close()
                if proc.returncode != 0:
                    failed = f"exited {proc.returncode} before its kill: {err.strip().splitlines()[-1:]}"
                break  # the run is complete: compare it
            mid_write = _writing(out)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stderr.close()
            kills += 1
            in_run += 1
            during_write += mid_write
            lasts = sorted(out.glob("**/checkpoints/last.safetensors"))
            last = lasts[-1] if lasts else out / "checkpoints" / "last.safetensors"  # the running stage's
            prev = last.parent / "last.prev.safetensors"
            # A disk that loses unsynced data damages a newly written `last`, never the synced
            # one that a kill between keeping it as `.prev` (a hard link) and the rename left
            # under both names.
            if args.corrupt > 0 and rng.random() < args.corrupt and last.exists() and prev.exists() and \
                    not os.path.samefile(last, prev):
                last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
                corrupted += 1
        if failed is None:
            try:
                if fingerprint(out) != expected:
                    failed = "final files differ from the uninterrupted run"
            except Exception as exc:  # a damaged or missing file is a lost run too
                failed = f"cannot read the final files ({exc})"
        if failed:
            lost.append(f"{out.name}: {failed}")
        else:
            survived += in_run
        log(f"{out.name}: {in_run} kills, {'LOST: ' + failed if failed else 'identical to the reference'}")
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    return {"kills": kills, "kills_survived": survived, "kills_during_checkpoint_write": during_write,
            "truncated_last_checkpoints": corrupted, "runs": runs, "runs_lost": len(lost), "lost": lost,
            "reference_seconds": round(ref_seconds, 1), "wall_seconds": round(time.perf_counter() - t_start, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("VAELAB_DATA_DIR") or str(SHARED_DATA),
                   help="dataset directory holding mnist/ (default: $VAELAB_DATA_DIR, else ../shared/data)")
    p.add_argument("--kind", choices=("vae", "two-phase", "stages", "aae", "aae-cluster"), default="vae",
                   help="vae: `vaelab train vae`; two-phase: a model with two optimisers a step; stages: a run of "
                        "two stages; aae: the adversarial autoencoder's three phases; aae-cluster: the clustering aae "
                        "(benchmarks/soak_driver.py) "
                        "(default: vae)")
    p.add_argument("--kills", type=int, default=50, help="SIGKILLs in all (default: 50)")
    p.add_argument("--kills-per-run", type=int, default=5, help="kills before a run may finish (default: 5)")
    p.add_argument("--n-train", type=int, default=2000, help="MNIST images used (default: 2000)")
    p.add_argument("--val-size", type=int, default=200, help="of them, validation images (default: 200)")
    p.add_argument("--epochs", type=int, default=6, help="epochs per run (default: 6)")
    p.add_argument("--batch-size", type=int, default=50, help="minibatch size (default: 50)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    p.add_argument("--seed-soak", type=int, default=1, help="seed of the kill times (default: 1)")
    p.add_argument("--write-delay", type=float, default=0.05,
                   help="VAELAB_TEST_WRITE_DELAY for killed processes, seconds (default: 0.05)")
    p.add_argument("--corrupt", type=float, default=0.1,
                   help="fraction of kills after which last.safetensors is truncated (default: 0.1)")
    p.add_argument("--workdir", default=None, help="where runs go (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the run directories")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vaelab-soak-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = make_subset(args.data_dir, args.n_train, work / "mnist-subset.npy")
        result = soak(data, work, args, log=(lambda *a: None) if args.json else print)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"kills survived: {result['kills_survived']} of {result['kills']} "
              f"({result['kills_during_checkpoint_write']} during a checkpoint write, "
              f"{result['truncated_last_checkpoints']} followed by a truncated last.safetensors)")
        print(f"runs lost: {result['runs_lost']} of {result['runs']}; wall time {result['wall_seconds']:.0f} s")
        for line in result["lost"]:
            print(f"  {line}")
    return 1 if result["runs_lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
