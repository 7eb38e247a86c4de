"""PixelCNN speed: a training epoch and sampling throughput (issue 13).

- **training**: the best of ``--repeats`` timings of ``--steps`` training steps (loss, backward,
  Adam) on binarized MNIST batches of ``--batch-size``, scaled to an epoch of 55,000 images (the
  trainer's default split of the 60,000); the quick profile's network by default
  (``vaelab profiles pixelcnn``: vaelab/profiles/pixelcnn/quick.toml). ``--epoch`` also times one real epoch through the trainer.
- **sampling**: 64 images of 28×28 with the cached sampler (each row's vertical features once,
  each pixel's horizontal features from cached neighbours) and, for comparison, the naive sampler
  (the whole network over the whole image for every pixel) timed over the first ``--naive-rows``
  rows and scaled to 28. Goal: 64 images in ≤ 30 s. The two draw the same images from the same
  uniforms (checked on those rows).
- ``--pixelrnn``: the same training timing for the Row LSTM (``pixelrnn`` with the PixelCNN's depth and width: 6 layers of 32).

    python benchmarks/pixelcnn_speed.py --threads 1
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

import vaelab
from vaelab.data import binarize_static
from vaelab.nn.pixelcnn import categorical_inverse_cdf
from vaelab.profiles import read_profile
from vaelab.threads import set_threads
from vaelab.training.trainer import TrainConfig, fit

from common import add_common

NETWORK = {k: v for k, v in read_profile("pixelcnn", "quick").items()
           if k in ("layers", "width", "kernel", "head")}  # the quick profile's network
ROW_LSTM = {"layers": 6, "width": 32}  # the PixelCNN's depth and width; a 7×7 mask-A first layer
EPOCH_IMAGES = 55_000


def train_seconds(x: torch.Tensor, batch_size: int, steps: int, repeats: int, name: str = "pixelcnn",
                  network: dict = NETWORK) -> float:
    model = vaelab.build(name, **network)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    best = float("inf")
    for r in range(repeats):
        t = time.perf_counter()
        for s in range(steps):
            i = ((r * steps + s) * batch_size) % (len(x) - batch_size)
            opt.zero_grad()
            model.loss(x[i:i + batch_size]).total.backward()
            opt.step()
        best = min(best, (time.perf_counter() - t) / steps)
    return best


def real_epoch_seconds(batch: vaelab.Batch, batch_size: int, threads: int) -> float:
    config = TrainConfig(epochs=1, batch_size=batch_size, binarize="dynamic", val_size=0, threads=threads)
    with tempfile.TemporaryDirectory() as tmp:
        fit(vaelab.build("pixelcnn", **NETWORK), batch, None, config, f"{tmp}/run", progress=False)
        with open(f"{tmp}/run/metrics.jsonl") as f:
            return json.loads(f.readline())["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common(parser)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--naive-rows", type=int, default=1)
    parser.add_argument("--epoch", action="store_true", help="also time one real epoch through the trainer")
    parser.add_argument("--pixelrnn", action="store_true",
                        help="also time training steps of pixelrnn (the Row LSTM) for the cost per epoch beside it")
    args = parser.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    train = vaelab.load_dataset("mnist", "train", data_dir=args.data_dir, download=False)
    x = binarize_static(train.batch().x[:5000], 0)

    step = train_seconds(x, args.batch_size, args.steps, args.repeats)
    print(f"network: {NETWORK}, threads {torch.get_num_threads()}")
    print(f"training: {step * 1e3:.0f} ms per step of {args.batch_size} -> "
          f"{step * EPOCH_IMAGES / args.batch_size / 60:.1f} min per epoch of {EPOCH_IMAGES} images "
          f"({args.batch_size / step:.0f} images/s)")
    if args.pixelrnn:
        rnn = train_seconds(x, args.batch_size, args.steps, args.repeats, "pixelrnn", ROW_LSTM)
        print(f"training pixelrnn (Row LSTM, 6 layers of 32): {rnn * 1e3:.0f} ms per step -> "
              f"{rnn * EPOCH_IMAGES / args.batch_size / 60:.1f} min per epoch ({rnn / step:.1f}x the PixelCNN's)")
    if args.epoch:
        print(f"training, one real epoch through the trainer (60,000 images): {real_epoch_seconds(train.batch(), args.batch_size, args.threads) / 60:.1f} min")

    model = vaelab.build("pixelcnn", **NETWORK).eval()
    n, shape = 64, (28, 28)
    u = torch.rand(n, 1, *shape, generator=torch.Generator().manual_seed(0))
    t = time.perf_counter()
    fast = model.net.sample(n, shape, uniforms=u)
    cached = time.perf_counter() - t
    print(f"sampling, cached: 64 images in {cached:.1f} s ({n / cached:.2f} samples/s; goal <= 30 s)")
    rows = args.naive_rows
    t = time.perf_counter()
    naive = _naive_rows(model, n, shape, u, rows)
    naive_s = (time.perf_counter() - t) * shape[0] / rows
    same = torch.equal(naive[:, :, :rows], fast[:, :, :rows])
    print(f"sampling, naive (whole network per pixel): about {naive_s:.0f} s for 64 images "
          f"({n / naive_s:.3f} samples/s; timed over {rows} row(s)); cached is {naive_s / cached:.0f}x faster; "
          f"same draws on those rows: {same}")


@torch.no_grad()
def _naive_rows(model, n, shape, u, rows):
    """:func:`~vaelab.nn.pixelcnn.sample_naive`'s loop, whole network over the whole 28×28 image
    for each pixel, stopped after ``rows`` rows (the rest left 0)."""
    out = torch.zeros(n, 1, *shape, dtype=torch.long)
    for i in range(rows):
        for j in range(shape[1]):
            logits = model.net(out)[..., i, j]
            out[:, :, i, j] = categorical_inverse_cdf(logits, u[:, :, i, j])
    return out


if __name__ == "__main__":
    main()
