"""Training-epoch speed of the denoising VAE (M = K = 1) against the plain VAE of the same size.

Both are vaelab's trainer on all 60,000 MNIST training images, 784-400-20 (ReLU, Bernoulli,
dynamic binarization, batch 128, Adam 1e-3, no validation); the dvae also draws a
salt-and-pepper corruption (level 0.1 by default) of each batch for its encoder. The two
alternate in one process on the same data, so machine load falls on both; the median (and
best) of ``--repeats`` epochs each. Issue 12's goal: dvae ≤ 1.15×.

    python benchmarks/dvae_speed.py --threads 1
"""
from __future__ import annotations

import argparse
import json
import time

import vaelab
from vaelab.threads import set_threads

from common import add_common, trainer_epoch_seconds

NETWORK = {"latent_dim": 20, "hidden": [400], "activation": "relu", "likelihood": "bernoulli"}


def epoch_seconds(name: str, settings: dict, batch: vaelab.Batch, batch_size: int, device: str,
                  threads: int) -> tuple[float, float]:
    return trainer_epoch_seconds(name, {**NETWORK, **settings}, batch, batch_size, device, threads)


def corruption_milliseconds(batch_size: int, calls: int = 1000) -> dict:
    """Milliseconds of one ``corrupt`` call on a batch of binary MNIST-sized images, and of the
    uniform draw it makes: the dvae's whole extra work per step."""
    import torch

    from vaelab.nn.corruption import corrupt

    x = (torch.rand(batch_size, 1, 28, 28) < 0.3).float()
    result = {}
    for name, f in (("salt-pepper", lambda: corrupt(x, "salt-pepper", 0.1)),
                    ("masking", lambda: corrupt(x, "masking", 0.1)), ("torch.rand", lambda: torch.rand(x.shape))):
        for _ in range(20):
            f()
        t = time.perf_counter()
        for _ in range(calls):
            f()
        result[name] = (time.perf_counter() - t) / calls * 1e3
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common(parser)
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per model (default: 5)")
    parser.add_argument("--batch-size", type=int, default=128, help="minibatch size (default: 128)")
    parser.add_argument("--corruption", default="salt-pepper", help="dvae corruption (default: salt-pepper)")
    parser.add_argument("--noise-level", type=float, default=0.1, help="dvae noise level (default: 0.1)")
    args = parser.parse_args()
    set_threads(args.threads)
    data = vaelab.Batch(vaelab.load_dataset("mnist", "train", data_dir=args.data_dir).x)
    models = {"vae": ("vae", {}),
              "dvae": ("dvae", {"corruption": args.corruption, "noise_level": args.noise_level,
                                "corruptions_m": 1, "samples_k": 1})}
    epoch_seconds(*models["dvae"], data[:2000], args.batch_size, args.device, args.threads)  # warm-up
    times = {k: [] for k in models}
    for _ in range(args.repeats):
        for key, (name, settings) in models.items():
            times[key].append(epoch_seconds(name, settings, data, args.batch_size, args.device, args.threads))
    result = {"threads": args.threads, "batch_size": args.batch_size, "corruption": args.corruption,
              "noise_level": args.noise_level, "all": times}
    for i, kind in enumerate(("wall", "cpu")):
        best = {k: min(t[i] for t in v) for k, v in times.items()}
        median = {k: sorted(t[i] for t in v)[len(v) // 2] for k, v in times.items()}
        result[kind] = {"vae_median_s": median["vae"], "dvae_median_s": median["dvae"],
                        "median_ratio": median["dvae"] / median["vae"], "best_ratio": best["dvae"] / best["vae"]}
        print(f"batch {args.batch_size}, {kind} seconds: median vae {median['vae']:.2f}, dvae {median['dvae']:.2f}, "
              f"ratio {result[kind]['median_ratio']:.3f} (goal <= 1.15); best ratio {result[kind]['best_ratio']:.3f}")
    result["corrupt_ms"] = corruption_milliseconds(args.batch_size)
    print("one corruption of a batch, ms: " + ", ".join(f"{k} {v:.2f}" for k, v in result["corrupt_ms"].items()))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
