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
import tempfile

import vaelab
from vaelab.threads import set_threads
from vaelab.training.trainer import TrainConfig, fit

from common import add_common

NETWORK = {"latent_dim": 20, "hidden": [400], "activation": "relu", "likelihood": "bernoulli"}


def epoch_seconds(name: str, batch: vaelab.Batch, batch_size: int, device: str, threads: int) -> float:
    """One epoch of the trainer (the epoch loop's seconds as recorded in metrics.jsonl)."""
    model = vaelab.build(name, **NETWORK)
    config = TrainConfig(epochs=1, batch_size=batch_size, binarize="dynamic", val_size=0, device=device,
                         threads=threads)
    with tempfile.TemporaryDirectory() as tmp:
        fit(model, batch, None, config, f"{tmp}/run", progress=False)
        with open(f"{tmp}/run/metrics.jsonl") as f:
            return json.loads(f.readline())["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common(parser)
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per model (default: 5)")
    parser.add_argument("--batch-size", type=int, default=128, help="minibatch size (default: 128)")
    args = parser.parse_args()
    set_threads(args.threads)
    train = vaelab.load_dataset("mnist", "train", data_dir=args.data_dir)
    plain, labelled = vaelab.Batch(train.x), vaelab.Batch(train.x, train.y)
    epoch_seconds("cvae", labelled[:2000], args.batch_size, args.device, args.threads)  # warm-up
    times = {"vae": [], "cvae": []}
    for _ in range(args.repeats):
        times["vae"].append(epoch_seconds("vae", plain, args.batch_size, args.device, args.threads))
        times["cvae"].append(epoch_seconds("cvae", labelled, args.batch_size, args.device, args.threads))
    vae, cvae = min(times["vae"]), min(times["cvae"])
    median = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    print(f"batch {args.batch_size}: best vae {vae:.2f} s/epoch, cvae {cvae:.2f} s/epoch, ratio {cvae / vae:.3f} "
          f"(goal <= 1.1); median ratio {median['cvae'] / median['vae']:.3f}")
    print(json.dumps({"threads": args.threads, "batch_size": args.batch_size, "vae_s": vae, "cvae_s": cvae,
                      "ratio": cvae / vae, "all": times}))


if __name__ == "__main__":
    main()
