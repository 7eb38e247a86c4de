"""Do the cvae's defaults deliver? ``vaelab train cvae --data mnist`` with nothing else, then
label-conditioned samples judged by a digit classifier trained independently of the cvae.

Trains (or, run again, reuses) the run in ``--out`` with the family's defaults, draws
``--per-class`` samples z ~ N(0, I) per class, decodes each with its class and counts the
fraction the judge (vaelab's DigitClassifier, trained on the 60,000 real training images)
reads as that class: overall and per class. The goals of the defaults: >= 97 % overall and
>= 95 % in the worst class. Beside them, the analogy and style checks on ``--sources`` digits
of the run's own validation split (never the test split: this command helps choose settings).
Prints one JSON object; wall and CPU seconds of the training are kept in OUT/timing.json.

    python benchmarks/cvae_defaults.py --out runs/cvae-defaults --threads 1
    python benchmarks/cvae_defaults.py --run runs/other-cvae      # judge a run trained otherwise
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch

import vaelab
from vaelab.evaluation.conditional_checks import analogy_checks, digit_classifier, sample_accuracy
from vaelab.files import atomic_write_json
from vaelab.threads import set_threads
from vaelab.training import run_split

from common import add_common

GOALS = {"sample_accuracy": 0.97, "worst_class_sample_accuracy": 0.95}


def train_defaults(out: Path, data_dir, threads: int) -> dict:
    """Train (or finish) the default cvae in ``out``; its wall and CPU seconds, kept beside it."""
    timing = out / "timing.json"
    wall, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(sys.stderr):  # the epoch lines; stdout is the JSON
        result = vaelab.train("cvae", "mnist", out, config={"threads": threads}, data_dir=data_dir, resume=True)
    if not result.already_finished:
        atomic_write_json(timing, {"wall_s": round(time.perf_counter() - wall, 1),
                                   "cpu_s": round(time.process_time() - cpu, 1),
                                   "threads": threads, "epochs": result.epochs_run})
    return json.loads(timing.read_text()) if timing.exists() else {}


def judge(run: Path, data_dir, per_class: int, sources: int, seed: int) -> dict:
    model = vaelab.load(run)
    classifier = digit_classifier(vaelab.load_dataset("mnist", "train", data_dir=data_dir))
    result = sample_accuracy(model, classifier, per_class, seed)
    result["worst_class_sample_accuracy"] = min(result["sample_accuracy_per_class"])
    val = run_split(run, "mnist", "val", data_dir=data_dir)
    picked = torch.randperm(len(val), generator=torch.Generator().manual_seed(seed))[:sources]
    result.update(analogy_checks(model, classifier, val.x[picked], val.y[picked]))
    result.pop("slant_r_per_class"), result.pop("thickness_r_per_class")
    result["checks_split"] = "val"
    result["met"] = {k: result[k] >= goal for k, goal in GOALS.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common(parser)
    parser.add_argument("--out", default="runs/cvae-defaults", help="run directory of the default cvae")
    parser.add_argument("--run", default=None, help="judge this existing run instead of training the defaults")
    parser.add_argument("--per-class", type=int, default=1000, help="samples per class (default: 1000)")
    parser.add_argument("--sources", type=int, default=1000, help="validation digits as analogy sources")
    parser.add_argument("--seed", type=int, default=1, help="seed of the samples and sources (default: 1)")
    args = parser.parse_args()
    set_threads(args.threads)
    run = Path(args.run or args.out)
    timing = {} if args.run else train_defaults(run, args.data_dir, args.threads)
    result = {"run": str(run), "settings": "defaults" if not args.run else "as the run records",
              **judge(run, args.data_dir, args.per_class, args.sources, args.seed), "training": timing}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
