"""Training-epoch speed of the adversarial autoencoder against the VAE of the same size.

Both are vaelab's trainer on the MNIST training images, 784-400-20 (ReLU, Bernoulli, dynamic
binarization, batch 128, Adam 1e-3, no validation); the aae runs its three phases every step
(reconstruction, discriminator, generator: the encoder runs three times) with a 20-256-256-1
discriminator. The two alternate in one process, so machine load falls on both; best (and
median) of ``--repeats`` epochs each. Issue 12's goal: aae ≤ 2× the VAE's epoch.

    python benchmarks/aae_speed.py --threads 1
"""
from __future__ import annotations

import argparse
import json

import vaelab
from vaelab.threads import set_threads

from common import add_common, trainer_epoch_seconds

NETWORK = {"latent_dim": 20, "hidden": [400], "activation": "relu", "likelihood": "bernoulli"}
MODELS = {"vae": NETWORK, "aae": {**NETWORK, "disc_hidden": [256, 256]}}


def epoch_seconds(name: str, batch: vaelab.Batch, batch_size: int, device: str, threads: int) -> tuple[float, float]:
    return trainer_epoch_seconds(name, MODELS[name], batch, batch_size, device, threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common(parser)
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per model (default: 5)")
    parser.add_argument("--batch-size", type=int, default=128, help="minibatch size (default: 128)")
    parser.add_argument("--train-size", type=int, default=0, help="first N training images (default: 0 = all 60,000)")
    args = parser.parse_args()
    set_threads(args.threads)
    train = vaelab.load_dataset("mnist", "train", data_dir=args.data_dir)
    data = vaelab.Batch(train.x[:args.train_size] if args.train_size else train.x)
    epoch_seconds("aae", data[:2000], args.batch_size, args.device, args.threads)  # warm-up
    times = {"vae": [], "aae": []}
    for _ in range(args.repeats):
        for name in times:
            times[name].append(epoch_seconds(name, data, args.batch_size, args.device, args.threads))
    result = {"threads": args.threads, "batch_size": args.batch_size, "images": len(data), "all": times}
    for i, kind in enumerate(("wall", "cpu")):
        best = {k: min(t[i] for t in v) for k, v in times.items()}
        median = {k: sorted(t[i] for t in v)[len(v) // 2] for k, v in times.items()}
        result[kind] = {"vae_s": best["vae"], "aae_s": best["aae"], "ratio": best["aae"] / best["vae"],
                        "median_ratio": median["aae"] / median["vae"]}
        print(f"{len(data)} images, batch {args.batch_size}, {kind} seconds: best vae {best['vae']:.2f}, "
              f"aae {best['aae']:.2f}, ratio {result[kind]['ratio']:.3f} (goal <= 2); "
              f"median ratio {result[kind]['median_ratio']:.3f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
