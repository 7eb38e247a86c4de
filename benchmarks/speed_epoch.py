"""Training-epoch speed: vaelab's trainer against a bare in-memory PyTorch loop.

Model: the pytorch/examples VAE (784-400-20, ReLU, Bernoulli on grey MNIST, no
binarization), batch 128 and 512, default Adam (lr 1e-3), all 60,000 training images,
no validation. Both loops are timed in the same process, alternating, best of
``--repeats``. Also prints the fraction of this machine's float32 GEMM throughput that
an epoch reaches, with FLOPs counted analytically (see common.mlp_vae_train_flops).

    python benchmarks/speed_epoch.py
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

import vaelab
from vaelab.threads import set_threads
from vaelab.training.step import Stepper
from vaelab.training.trainer import TrainConfig, fit

from common import add_common, matmul_peak_gflops, mlp_vae_train_flops, step_breakdown, sync


class ExamplesVAE(nn.Module):
    """The model of pytorch/examples vae/main.py."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def bare_epoch(x: torch.Tensor, batch_size: int, device: str) -> float:
    """A plain in-memory loop: one permutation, slicing, the examples' loss, default Adam."""
    torch.manual_seed(0)
    model = ExamplesVAE().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xf = x.view(-1, 784).to(device)
    sync(device)
    t = time.perf_counter()
    perm = torch.randperm(xf.shape[0], device=device)
    for i in range(0, xf.shape[0], batch_size):
        xb = xf[perm[i:i + batch_size]]
        recon, mu, logvar = model(xb)
        loss = F.binary_cross_entropy(recon, xb, reduction="sum") - 0.5 * torch.sum(
            1 + logvar - mu.pow(2) - logvar.exp())
        opt.zero_grad()
        loss.backward()
        opt.step()
    sync(device)
    return time.perf_counter() - t


def vaelab_epoch(x: torch.Tensor, batch_size: int, device: str) -> float:
    """One epoch of vaelab's trainer (seconds of the epoch loop as recorded in metrics.jsonl)."""
    model = vaelab.build("vae", latent_dim=20, hidden=[400], activation="relu", likelihood="bernoulli")
    config = TrainConfig(epochs=1, batch_size=batch_size, binarize="none", val_size=0, device=device,
                         threads=torch.get_num_threads())  # the bare loop's threads (--threads), not all cores
    with tempfile.TemporaryDirectory() as tmp:
        fit(model, vaelab.Batch(x), None, config, f"{tmp}/run", progress=False)
        with open(f"{tmp}/run/metrics.jsonl") as f:
            return json.loads(f.readline())["seconds"]


def vaelab_step_breakdown(x: torch.Tensor, batch_size: int, steps: int = 20) -> str:
    """Where vaelab's training step of this model spends its time (see common.step_breakdown)."""
    model = vaelab.build("vae", latent_dim=20, hidden=[400], activation="relu", likelihood="bernoulli")
    stepper = Stepper(model, TrainConfig(batch_size=batch_size))
    batch = vaelab.Batch(x[:batch_size])
    for _ in range(3):
        stepper(batch)
    return step_breakdown(lambda: stepper(batch), steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common(parser)
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per loop (default: 3)")
    parser.add_argument("--batch-sizes", default="128,512", help="comma-separated (default: 128,512)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also profile 20 of vaelab's steps per batch size: the share in matrix products")
    args = parser.parse_args()
    set_threads(args.threads)
    x = vaelab.load_dataset("mnist", "train", data_dir=args.data_dir).x
    peak = matmul_peak_gflops(args.device)
    flops = mlp_vae_train_flops([784, 400, 40], [20, 400, 784], x.shape[0])
    print(f"device {args.device}, {torch.get_num_threads()} threads, float32 GEMM peak {peak:.0f} GFLOP/s, "
          f"{flops / 1e9:.0f} GFLOP per epoch")
    results = {}
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        bare, ours = [], []
        bare_epoch(x[:5000], bs, args.device)  # warm-up
        for _ in range(args.repeats):
            bare.append(bare_epoch(x, bs, args.device))
            ours.append(vaelab_epoch(x, bs, args.device))
        b, o = min(bare), min(ours)
        results[bs] = {"bare_s": b, "vaelab_s": o, "ratio": o / b,
                       "vaelab_peak_fraction": flops / o / 1e9 / peak,
                       "bare_peak_fraction": flops / b / 1e9 / peak}
        print(f"batch {bs:4d}: bare loop {b:.2f} s/epoch, vaelab {o:.2f} s/epoch, ratio {o / b:.2f}; "
              f"GEMM-peak fraction vaelab {results[bs]['vaelab_peak_fraction']:.0%}, "
              f"bare {results[bs]['bare_peak_fraction']:.0%}")
        if args.breakdown:
            print(f"batch {bs:4d}: vaelab's step: {vaelab_step_breakdown(x, bs)}")
    print(json.dumps({"peak_gflops": peak, "results": results}))


if __name__ == "__main__":
    main()
