"""Training-epoch speed of the label-conditional VAE against the plain VAE of the same size.

Both are vaelab's trainer on all 60,000 MNIST training images, 784-400-20 (ReLU, Bernoulli,
dynamic binarization, batch 128, Adam 1e-3, no validation); the cvae also reads each image's
label (one-hot into the encoder and the decoder). The two alternate in one process, so
machine load falls on both; best (and median) of ``--repeats`` epochs each. Issue 10's goal:
cvae ≤ 1.1×.

    python benchmarks/cvae_speed.py --threads 1
"""
from __future__ import annotations

import argparse
import json
import time

import vaelab
from vaelab.threads import set_threads

from common import add_common, trainer_epoch_seconds

NETWORK = {"latent_dim": 20, "hidden": [400], "activation": "relu", "likelihood": "bernoulli"}


def epoch_seconds(name: str, batch: vaelab.Batch, batch_size: int, device: str, threads: int) -> tuple[float, float]:
    return trainer_epoch_seconds(name, NETWORK, batch, batch_size, device, threads)


def step_milliseconds(batch: vaelab.Batch, repeats: int, steps: int = 20) -> dict:
    """Best milliseconds of one training step (loss, backward, Adam) of each model on one fixed
    batch, the two alternating ``repeats`` times ``steps`` steps: the label's cost without the
    trainer's or the machine's epoch-to-epoch spread."""
    import torch

    models = {"vae": vaelab.build("vae", **NETWORK), "cvae": vaelab.build("cvae", **NETWORK)}
    batches = {"vae": vaelab.Batch(batch.x), "cvae": batch}
    optims = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in models.items()}
    best = {k: float("inf") for k in models}
    for _ in range(repeats):
        for k, model in models.items():
            t = time.perf_counter()
            for _ in range(steps):
                optims[k].zero_grad()
                model.loss(batches[k]).total.backward()
                optims[k].step()
            best[k] = min(best[k], (time.perf_counter() - t) / steps * 1e3)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common(parser)
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per model (default: 5)")
    parser.add_argument("--batch-size", type=int, default=128, help="minibatch size (default: 128)")
    parser.add_argument("--step-repeats", type=int, default=25,
                        help="alternations of 20 single training steps timed per model (default: 25; 0 = skip)")
    args = parser.parse_args()
    set_threads(args.threads)
    train = vaelab.load_dataset("mnist", "train", data_dir=args.data_dir)
    plain, labelled = vaelab.Batch(train.x), vaelab.Batch(train.x, train.y)
    epoch_seconds("cvae", labelled[:2000], args.batch_size, args.device, args.threads)  # warm-up
    times = {"vae": [], "cvae": []}
    for _ in range(args.repeats):
        times["vae"].append(epoch_seconds("vae", plain, args.batch_size, args.device, args.threads))
        times["cvae"].append(epoch_seconds("cvae", labelled, args.batch_size, args.device, args.threads))
    result = {"threads": args.threads, "batch_size": args.batch_size, "all": times}
    for i, kind in enumerate(("wall", "cpu")):
        best = {k: min(t[i] for t in v) for k, v in times.items()}
        median = {k: sorted(t[i] for t in v)[len(v) // 2] for k, v in times.items()}
        result[kind] = {"vae_s": best["vae"], "cvae_s": best["cvae"], "ratio": best["cvae"] / best["vae"],
                        "median_ratio": median["cvae"] / median["vae"]}
        print(f"batch {args.batch_size}, {kind} seconds: best vae {best['vae']:.2f}, cvae {best['cvae']:.2f}, "
              f"ratio {result[kind]['ratio']:.3f} (goal <= 1.1); median ratio {result[kind]['median_ratio']:.3f}")
    if args.step_repeats:
        steps = step_milliseconds(labelled[:args.batch_size], args.step_repeats)
        result["step_ms"] = steps
        print(f"one training step, best: vae {steps['vae']:.2f} ms, cvae {steps['cvae']:.2f} ms, "
              f"ratio {steps['cvae'] / steps['vae']:.3f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
