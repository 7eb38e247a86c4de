"""Time ``vaelab report`` for one MLP VAE run (784-400-20, ReLU, Bernoulli, MNIST).

The run is ``--run`` or one trained here briefly (``--epochs`` on ``--train-size`` MNIST
images, 20 epochs' worth of metrics are not needed for the timing). The report is made
with its defaults (1000 test images evaluated, no NLL) ``--repeats`` times; the first
(which includes importing matplotlib), best and median seconds are printed, with the CPU time.

    python benchmarks/report_speed.py --threads 1
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import vaelab
from vaelab.threads import set_threads
from vaelab.viz.report import make_report

from common import add_common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common(parser)
    parser.add_argument("--run", default=None, help="an existing run directory (default: train one here)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the run trained here (default: 2)")
    parser.add_argument("--train-size", type=int, default=10000, help="its training images (default: 10000)")
    parser.add_argument("--repeats", type=int, default=3, help="reports made (default: 3)")
    args = parser.parse_args()
    set_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else _train(Path(tmp) / "run", args)
        seconds, cpu = [], []
        for i in range(args.repeats):
            t, c = time.perf_counter(), time.process_time()
            make_report([run], Path(tmp) / f"report{i}.html", data_dir=args.data_dir)
            seconds.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        size = (Path(tmp) / "report0.html").stat().st_size
    print(json.dumps({"run": str(args.run or "trained here"), "threads": args.threads,
                      "first_s": round(seconds[0], 2), "best_s": round(min(seconds), 2), "median_s": round(statistics.median(seconds), 2),
                      "median_cpu_s": round(statistics.median(cpu), 2), "html_kib": round(size / 1024)}))


def _train(out: Path, args) -> Path:
    data = vaelab.load_dataset("mnist", "train", data_dir=args.data_dir).subset(slice(0, args.train_size))
    vaelab.train("vae", data, out, model_config={"hidden": [400], "latent_dim": 20},
                 config={"epochs": args.epochs, "threads": args.threads, "val_size": 0.1}, progress=False)
    return out


if __name__ == "__main__":
    main()
