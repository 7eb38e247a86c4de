"""VQ prior speed: drawing code maps from the PixelCNN prior of a VQ-VAE (issue 13).

Times the cached sampler of a ``vq-prior`` with its default network (10 gated layers of 64,
kernel 3, K = 512 codes, a 7×7 map: an MNIST VQ-VAE's) drawing ``-n`` maps, the best of
``--repeats``; and one training step on a batch of random code maps, scaled to an epoch of
55,000 maps. Goal: 64 maps in ≤ 1 s. Sampling time does not depend on the weights, so an
untrained prior measures it.

    python benchmarks/vq_prior_speed.py --threads 1
"""
from __future__ import annotations

import argparse
import time

import torch

import vaelab
from vaelab.threads import set_threads

from common import add_common

EPOCH_MAPS = 55_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common(parser)
    parser.add_argument("-n", type=int, default=64, help="code maps drawn (default: 64)")
    parser.add_argument("--map", type=int, default=7, help="code map side h = w (default: 7)")
    parser.add_argument("--codebook-size", type=int, default=512, help="K (default: 512)")
    parser.add_argument("--repeats", type=int, default=3, help="timings, the best kept (default: 3)")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch (default: 128)")
    args = parser.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    prior = vaelab.build("vq-prior", input_shape=(1, args.map, args.map), codebook_size=args.codebook_size).eval()
    best = float("inf")
    for r in range(args.repeats):
        t = time.perf_counter()
        prior.sample(args.n, generator=torch.Generator().manual_seed(r))
        best = min(best, time.perf_counter() - t)
    prior.train()
    opt = torch.optim.Adam(prior.parameters(), lr=3e-4)
    z = torch.randint(0, args.codebook_size, (args.batch_size, 1, args.map, args.map))
    step = float("inf")
    for _ in range(args.repeats + 1):
        t = time.perf_counter()
        opt.zero_grad()
        prior.loss(z).total.backward()
        opt.step()
        step = min(step, time.perf_counter() - t)
    epoch = step * EPOCH_MAPS / args.batch_size
    print(f"vq-prior {args.map}x{args.map}, K={args.codebook_size}, threads={torch.get_num_threads()}")
    print(f"sampling: {args.n} code maps in {best:.3f} s ({args.n / best:.0f} maps/s; goal: 64 in <= 1 s)")
    print(f"training: {step * 1000:.1f} ms per step of {args.batch_size}, {epoch:.1f} s per epoch of {EPOCH_MAPS} maps")


if __name__ == "__main__":
    main()
