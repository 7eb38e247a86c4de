"""Training-step speed of the sentence models on PTB: tokens (words + <eos>) per second.

Times ``--steps`` optimiser steps (forward, backward, Adam) of each model at the paper
profile's sizes (embedding 256, LSTM 256, z 32, batch 32, dropout 0.5, word keep 0.5) on
batches drawn as training draws them (length buckets), after a few warm-up steps, and
projects one epoch of PTB's 42,068 training sentences (929,589 tokens).

    python benchmarks/text_speed.py --threads 1
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import vaelab
from vaelab.data.samplers import LengthBucketSampler
from vaelab.models.registry import build
from vaelab.profiles import read_profile
from vaelab.threads import set_threads

PTB_TRAIN_TOKENS = 929_589


def model_settings(family: str, ds) -> dict:
    cls = vaelab.models.model_class(family)
    keys = {f for f in cls.Config.__dataclass_fields__}
    settings = {k: v for k, v in read_profile(family, "paper").items() if k in keys}
    return cls.data_settings(ds, settings)


def tokens_per_second(family: str, ds, steps: int, batch_size: int) -> dict:
    torch.manual_seed(0)
    model = build(family, **model_settings(family, ds)).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = LengthBucketSampler(ds.batch(), batch_size, seed=0)
    batches = sampler.epoch()
    for _ in range(3):  # warm-up
        b = next(batches)
        opt.zero_grad()
        model.loss(b).total.backward()
        opt.step()
    tokens, t0 = 0, time.perf_counter()
    for _ in range(steps):
        b = next(batches)
        opt.zero_grad()
        model.loss(b).total.backward()
        opt.step()
        tokens += int(b.extras["lengths"].sum())
    seconds = time.perf_counter() - t0
    rate = tokens / seconds
    return {"model": family, "tokens_per_s": round(rate), "steps_per_s": round(steps / seconds, 2),
            "projected_epoch_min": round(PTB_TRAIN_TOKENS / rate / 60, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--models", default="text-vae,lstm-lm")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    set_threads(args.threads)
    ds = vaelab.load_dataset("ptb", "train", data_dir=args.data_dir)
    for family in args.models.split(","):
        print(json.dumps(tokens_per_second(family, ds, args.steps, args.batch_size)))


if __name__ == "__main__":
    main()
