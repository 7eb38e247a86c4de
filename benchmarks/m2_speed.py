"""Training-epoch speed of M2 (exact sum over the 10 labels) against the bare PyTorch VAE epoch.

M2 is the Pyro example's architecture (one hidden layer of 500 softplus units everywhere,
z = 50, Bernoulli on grey MNIST), trained by vaelab's trainer on the first 50,000 training
images with 100 of them labelled (10 per class, the rest unlabelled), batch 128 unlabelled
rows a step beside the labelled ones, no validation. The reference is the bare in-memory
loop of pytorch/examples (784-400-20, batch 128, all 60,000 images), the same one
``speed_epoch.py`` times. The two alternate in one process, best of ``--repeats`` each.
Issue 11's goal: M2 ≤ 4.6× the bare epoch (Pyro's ss_vae_M2.py measured ≈ 9.2× here).

Also printed: the multiply-adds per image counted from the layer sizes, and the fraction of
this machine's float32 GEMM peak that each epoch reaches.

    python benchmarks/m2_speed.py --threads 2
    python benchmarks/m2_speed.py --threads 1 --profile    # where one training step's time goes
"""
from __future__ import annotations

import argparse
import json
import tempfile

import torch

import vaelab
from vaelab.data import labelled_subset
from vaelab.threads import set_threads
from vaelab.training.trainer import TrainConfig, fit

from common import add_common, matmul_peak_gflops, mlp_vae_train_flops
from speed_epoch import bare_epoch

K, D, H, Z = 10, 784, 500, 50


def m2_train_flops_per_image() -> dict:
    """Multiply-adds of one unlabelled image (the labelled ones are 1 in 500) and the
    training FLOPs (forward, then weight gradients everywhere and input gradients for every
    layer that does not read the image)."""
    first_layers = D * H + D * H                      # q(y|x)'s and q(z|x,y)'s image share, once
    once = first_layers + H * K                       # + q(y|x)'s output layer
    per_label = H * 2 * Z + Z * H + H * D             # q(z|x,y) heads, p(x|y,z) both layers
    forward = once + K * per_label
    train = 2 * (3 * forward - first_layers)
    return {"forward_macs": forward, "train_flops": train}


def m2_epoch(ds, batch_size: int, device: str, threads: int) -> float:
    model = vaelab.build("m2", input_shape=list(ds.shape))
    config = TrainConfig(epochs=1, batch_size=batch_size, binarize="none", val_size=0, device=device,
                         threads=threads, monitor="loss")
    with tempfile.TemporaryDirectory() as tmp:
        fit(model, ds, None, config, f"{tmp}/run", progress=False)
        with open(f"{tmp}/run/metrics.jsonl") as f:
            return json.loads(f.readline())["seconds"]


def profile_step(ds, steps: int = 10) -> None:
    """torch.profiler's table of one M2 training step (batch of 1 labelled + 128 unlabelled
    rows, fused Adam as the trainer uses), averaged over ``steps`` after 3 warm-up steps."""
    from torch.profiler import profile

    model = vaelab.build("m2", input_shape=list(ds.shape))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    rows = torch.cat([ds.labelled.nonzero()[:1, 0], (~ds.labelled).nonzero()[:128, 0]])
    batch = ds.batch().select(rows)
    model.labelled_share.fill_(100 / len(ds))

    def step():
        optimiser.zero_grad()
        model.loss(batch).total.backward()
        optimiser.step()

    for _ in range(3):
        step()
    with profile() as prof:
        for _ in range(steps):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common(parser)
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs of each (default: 3)")
    parser.add_argument("--profile", action="store_true", help="print where one training step's time goes, "
                                                              "instead of timing epochs")
    args = parser.parse_args()
    set_threads(args.threads)
    full = vaelab.load_dataset("mnist", "train", data_dir=args.data_dir)
    ds = labelled_subset(full.subset(slice(0, 50000)), 10, seed=0)
    if args.profile:
        profile_step(ds)
        return
    x = full.x
    peak = matmul_peak_gflops(args.device)
    m2_flops = m2_train_flops_per_image()
    bare_flops = mlp_vae_train_flops([784, 400, 40], [20, 400, 784], len(x))
    bare_epoch(x[:5000], 128, args.device)  # warm-up
    bare, m2 = [], []
    for _ in range(args.repeats):
        bare.append(bare_epoch(x, 128, args.device))
        m2.append(m2_epoch(ds, 128, args.device, args.threads))
    b, m = min(bare), min(m2)
    epoch_flops = m2_flops["train_flops"] * len(ds)
    result = {"threads": torch.get_num_threads(), "peak_gflops": peak, "bare_s": b, "m2_s": m, "ratio": m / b,
              "bare_all_s": bare, "m2_all_s": m2, "m2_forward_macs_per_image": m2_flops["forward_macs"],
              "m2_train_flops_per_image": m2_flops["train_flops"],
              "m2_peak_fraction": epoch_flops / m / 1e9 / peak, "bare_peak_fraction": bare_flops / b / 1e9 / peak}
    print(f"{result['threads']} threads, float32 GEMM peak {peak:.0f} GFLOP/s")
    print(f"bare VAE epoch (60k, batch 128): {b:.2f} s   ({result['bare_peak_fraction']:.0%} of peak)")
    print(f"M2 epoch (50k, 100 labels, exact sum over 10 labels): {m:.2f} s   "
          f"({result['m2_peak_fraction']:.0%} of peak; {m2_flops['forward_macs'] / 1e6:.2f} M multiply-adds "
          f"forward, {m2_flops['train_flops'] / 1e6:.1f} MFLOP training per image)")
    print(f"ratio M2 / bare: {m / b:.2f}  (goal <= 4.6; Pyro's ss_vae_M2.py ~9.2)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
