"""Two gloo processes against one, same global batch: seconds per epoch and weight agreement.

Speed: the 784-400-20 MLP VAE (Bernoulli, dynamic binarization, vaelab's defaults) on the
60,000 MNIST training images, batch 128, no validation, trained by ``vaelab train`` as
1 process with 1 thread, 1 process with 2 threads, and ``torchrun`` with 2 processes of 1
thread each. Seconds per epoch are the ``seconds`` of ``metrics.jsonl`` (the training
loop only: no start-up, no checkpoint writes), best of ``--epochs``.

Agreement: the deterministic 784-400-20 autoencoder (``ae``) trained 100 steps (the first
12,800 images, batch 128, one epoch) by 1 process and by 2; the largest absolute weight
difference between the two, against the largest weight.

    python benchmarks/ddp_speed.py
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import REPO, add_common


def vaelab_train(nproc: int, threads: int, args: list[str]) -> None:
    """``vaelab train`` as one process (nproc 0) or a torchrun job of ``nproc``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)] \
        if nproc else [sys.executable]
    subprocess.run([*launcher, "-m", "vaelab.cli", "train", *args, "--threads", str(threads), "--no-progress"],
                   env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def epoch_seconds(run: Path) -> list[float]:
    return [json.loads(line)["seconds"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v for k, v in load_file(run / "checkpoints" / "last.safetensors").items() if k.startswith("model/")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common(parser)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per speed run (best one counts)")
    parser.add_argument("--steps", type=int, default=100, help="steps of the agreement run")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    data = ["--data", "mnist", "--data-dir", args.data_dir]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        speed = ["vae", *data, "--hidden", "400", "--latent-dim", "20", "--val-size", "0",
                 "--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
        rows = {}
        for name, nproc, threads in (("1 process, 1 thread", 0, 1), ("1 process, 2 threads", 0, 2),
                                     ("2 processes (gloo), 1 thread each", 2, 1)):
            run = tmp / f"speed{nproc}{threads}"
            vaelab_train(nproc, threads, [*speed, "--out", str(run)])
            rows[name] = epoch_seconds(run)
            print(f"{name}: s/epoch {', '.join(f'{s:.2f}' for s in rows[name])} (best {min(rows[name]):.2f})")

        import vaelab

        x = vaelab.load_dataset("mnist", "train", data_dir=args.data_dir).x[: args.steps * args.batch_size]
        np.save(tmp / "part.npy", (x[:, 0].numpy() * 255).round().astype(np.uint8))
        agree = ["ae", "--data", f"npy:{tmp / 'part.npy'}", "--hidden", "400", "--latent-dim", "20",
                 "--val-size", "0", "--epochs", "1", "--batch-size", str(args.batch_size)]
        for nproc in (0, 2):
            vaelab_train(nproc, 1, [*agree, "--out", str(tmp / f"agree{nproc}")])
        one, two = weights(tmp / "agree0"), weights(tmp / "agree2")
        diff = max(float((one[k] - two[k]).abs().max()) for k in one)
        scale = max(float(one[k].abs().max()) for k in one)
        print(f"ae 784-400-20, {args.steps} steps of {args.batch_size}: max |w(2 processes) - w(1 process)| = "
              f"{diff:.3g} (largest weight {scale:.3g})")


if __name__ == "__main__":
    main()
