"""The Row LSTM's training step before and after its channels-last rewrite (commit 1b3e52e).

    python benchmarks/rowlstm_speed.py [--threads 1] [--repeats 3]

The earlier implementation is read from this repository's history (``git show``), so both run
in one process on the same weights: it checks that they give the same log-likelihoods and
gradients, then times a training step (forward, backward) of each, alternating, best of
``--repeats``. The network is the ``pixelrnn`` defaults (2 layers of 32, head 64) with 10
classes, batch 128 of random binary 28 x 28 images.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from vaelab.nn.rowlstm import RowLSTM
from vaelab.threads import set_threads

REPO = Path(__file__).resolve().parents[1]
BEFORE = "1b3e52e~1"


def earlier_row_lstm(tmp: Path):
    """The RowLSTM class of the commit before the rewrite, imported from a temporary file."""
    source = subprocess.run(["git", "show", f"{BEFORE}:vaelab/nn/rowlstm.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    path = tmp / "rowlstm_before.py"
    path.write_text(source.replace("from .pixelcnn import", "from vaelab.nn.pixelcnn import"))
    spec = importlib.util.spec_from_file_location("rowlstm_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RowLSTM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps of each (default: 3)")
    args = parser.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    new = RowLSTM(1, 2, layers=2, hidden=32, head=64, classes=10)
    for layer in new.layers:
        torch.nn.init.normal_(layer.cond.weight)
    with tempfile.TemporaryDirectory() as tmp:
        old = earlier_row_lstm(Path(tmp))(1, 2, layers=2, hidden=32, head=64, classes=10)
    old.load_state_dict(new.state_dict())
    x, y = torch.bernoulli(torch.rand(128, 1, 28, 28)), torch.randint(0, 10, (128,))

    def step(model):
        model.zero_grad()
        (-model.log_prob(x, y).mean()).backward()
        return [p.grad.clone() for p in model.parameters()]

    print(f"max |log p(x) difference|: {(new.log_prob(x, y) - old.log_prob(x, y)).abs().max().item():.2e} nats")
    print(f"max |gradient difference|: {max((a - b).abs().max().item() for a, b in zip(step(new), step(old))):.2e}")
    times = {"before": [], "after": []}
    for _ in range(args.repeats):
        for name, model in (("before", old), ("after", new)):
            t = time.perf_counter()
            step(model)
            times[name].append(time.perf_counter() - t)
    before, after = min(times["before"]), min(times["after"])
    print(f"training step, batch 128: before {before:.2f} s, after {after:.2f} s, ratio {after / before:.2f}")


if __name__ == "__main__":
    sys.exit(main())
