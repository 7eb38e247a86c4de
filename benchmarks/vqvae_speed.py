"""A VQ-VAE training epoch on MNIST and the share of it spent in the nearest-code search.

The model is vaelab's ``vqvae`` with 64-channel encoder and decoder (two 4×4 stride-2
convolutions, two residual blocks each), K = 512 codes of D = 64, a 7×7 code map, Bernoulli
likelihood with dynamic binarization, batch 128, Adam 1e-3, no validation: one epoch of
vaelab's trainer over the training images. The search (``vaelab.nn.quantizer.nearest``: the
expanded-distance GEMM ‖e‖² − 2 z·eᵀ and the argmin) is wrapped in a timer for the epoch, so
its share is measured inside the very epoch that is timed. For comparison, the same search
written as a broadcast ((z[:, None] − e[None])² summed over D) is timed on one batch's
vectors. Issue 13's goal: the search ≤ 15 % of the epoch.

    python benchmarks/vqvae_speed.py --threads 1                  # the whole training set
    python benchmarks/vqvae_speed.py --threads 1 --train-size 12800   # 100 steps
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import vaelab
import vaelab.nn.quantizer as quantizer
from vaelab.threads import set_threads

from common import add_common, sync, trainer_epoch_seconds

SETTINGS = {"channels": [64, 64], "residual_channels": 32, "codebook_size": 512, "code_dim": 64}


class Timed:
    """``nearest`` with a wall-clock total (the device synchronised around each call)."""

    def __init__(self, fn, device: str):
        self.fn, self.device, self.seconds, self.calls = fn, device, 0.0, 0

    def __call__(self, *args, **kwargs):
        sync(self.device)
        t = time.perf_counter()
        out = self.fn(*args, **kwargs)
        sync(self.device)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        return out


def search_seconds(n: int, k: int, d: int, device: str, repeats: int = 5) -> dict[str, float]:
    """Best time of the GEMM search and of a broadcast search for n vectors against k codes
    (the broadcast on an eighth of the rows, scaled by 8: its (n, k, d) tensor is large)."""
    g = torch.Generator().manual_seed(0)
    z, e = torch.randn(n, d, generator=g).to(device), torch.randn(k, d, generator=g).to(device)
    part = z[: max(1, n // 8)]

    def best(fn):
        times = []
        for _ in range(repeats):
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - t)
        return min(times)

    gemm = best(lambda: quantizer.nearest(z, e))
    broadcast = best(lambda: (part[:, None, :] - e[None]).square().sum(-1).argmin(1)) * n / len(part)
    return {"gemm_s": gemm, "broadcast_s": broadcast}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common(parser)
    parser.add_argument("--batch-size", type=int, default=128, help="minibatch size (default: 128)")
    parser.add_argument("--train-size", type=int, default=0, help="first N training images (default: 0 = all 60,000)")
    args = parser.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    train = vaelab.load_dataset("mnist", "train", data_dir=args.data_dir)
    data = vaelab.Batch(train.x[:args.train_size] if args.train_size else train.x)
    trainer_epoch_seconds("vqvae", SETTINGS, data[:512], args.batch_size, args.device, args.threads)  # warm-up
    timed = Timed(quantizer.nearest, args.device)
    quantizer.nearest = timed
    try:
        wall, cpu = trainer_epoch_seconds("vqvae", SETTINGS, data, args.batch_size, args.device, args.threads)
    finally:
        quantizer.nearest = timed.fn
    steps = -(-len(data) // args.batch_size)
    vectors = args.batch_size * 7 * 7
    search = search_seconds(vectors, SETTINGS["codebook_size"], SETTINGS["code_dim"], args.device)
    result = {"threads": args.threads, "device": args.device, "batch_size": args.batch_size, "images": len(data),
              "steps": steps, "epoch_wall_s": round(wall, 2), "epoch_cpu_s": round(cpu, 2),
              "step_ms": round(1000 * wall / steps, 1), "search_s": round(timed.seconds, 3),
              "search_calls": timed.calls, "search_share": round(timed.seconds / wall, 4),
              "one_batch_search_ms": {k: round(1000 * v, 2) for k, v in search.items()}}
    print(f"{len(data)} images, {steps} steps of {args.batch_size}: epoch {wall:.1f} s wall ({cpu:.1f} s CPU), "
          f"{result['step_ms']:.0f} ms a step; nearest-code search {timed.seconds:.2f} s = "
          f"{100 * timed.seconds / wall:.1f} % of the epoch (goal <= 15 %)")
    print(f"one batch's search ({vectors} vectors x {SETTINGS['codebook_size']} codes, D = {SETTINGS['code_dim']}): "
          f"GEMM {1000 * search['gemm_s']:.1f} ms, broadcast {1000 * search['broadcast_s']:.1f} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
