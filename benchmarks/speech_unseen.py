"""Unseen-speaker conversion on FSDD: train a speech family on 5 of the 6 speakers' training takes
and convert every test clip of those 5 into the 6th from one reference take (its test take 0 of
"zero"), judged as in ``vaelab compare voice-conversion`` (judges trained on all six speakers' real
training takes; the model never heard the held-out speaker). One line per fold, with ``read_as``,
whom the speaker judge hears in the conversions; a fold stopped part-way carries on from its last
epoch when the same command is run again, and a trained one is only judged.

    python benchmarks/speech_unseen.py --folds 0,1,2,3,4,5 --model adain-vc --epochs 10 --out runs/unseen
    python benchmarks/speech_unseen.py --model adain-vc --set hop=4 --set speaker_adversary=30 --out runs/unseen-hop4

``--set NAME=VALUE`` gives the family an option (its config field name; the value read as JSON
where it parses, else as text).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import vaelab
from vaelab.data import load_dataset, resolve_data_dir
from vaelab.data.audio import invert
from vaelab.data.speech import FSDD_SPEAKERS
from vaelab.evaluation.judges import train_judges
from vaelab.viz.curves import metrics_lines


def fold(k: int, args, judges) -> dict:
    train = load_dataset("fsdd", "train")
    out = Path(args.out) / f"fold-{k}"
    if epochs_done(out) < args.epochs:  # the weights are written every epoch: a killed fold carries on
        vaelab.train(args.model, train.subset(train.extras["speaker"] != k), out, model_config=args.settings,
                     config={"epochs": args.epochs, "batch_size": 32, "threads": 1}, progress=False,
                     resume=(out / "run.json").is_file())
    lines = metrics(out)
    seconds = sum(line.get("seconds", 0.0) for line in lines)
    cpu_seconds = sum(line.get("cpu_seconds", line.get("seconds", 0.0)) for line in lines)
    model = vaelab.load(out).eval()
    test = load_dataset("fsdd", "test")
    speakers, lengths = test.extras["speaker"], test.extras["lengths"]
    ref = int(torch.nonzero(speakers == k)[0])
    rows = torch.nonzero(speakers != k).squeeze(1)
    if args.sources:
        rows = rows[torch.linspace(0, len(rows) - 1, args.sources).round().long()]
    converted = model.convert(test.subset(rows).batch(), [test.subset(slice(ref, ref + 1)).batch()])
    settings = model.front_end
    waves = [invert(converted[i], settings, int(lengths[r])) for i, r in enumerate(rows.tolist())]
    s_hat, d_hat = judges.judge(waves)
    return {"fold": k, "held_out": FSDD_SPEAKERS[k], "n": len(rows), "train_seconds": round(seconds, 1),
            "train_cpu_seconds": round(cpu_seconds, 1),
            "read_as_target": float((s_hat == k).mean()),
            "digit_kept": float((d_hat == test.y[rows].numpy()).mean()),
            "read_as": {name: float((s_hat == i).mean()) for i, name in enumerate(FSDD_SPEAKERS) if (s_hat == i).any()}}


def metrics(out: Path) -> list[dict]:
    """The run's epoch records (none before its first epoch)."""
    path = out / "metrics.jsonl"
    return metrics_lines(path) if path.is_file() else []


def epochs_done(out: Path) -> int:
    return max((int(line["epoch"]) for line in metrics(out)), default=0)


def setting(text: str) -> tuple[str, object]:
    """NAME=VALUE -> (name, value), the value parsed as JSON where it can be (3, 0.5, true)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--set takes NAME=VALUE, got {text!r}")
    try:
        return name.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return name.replace("-", "_"), value


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--folds", default="0,1,2,3,4,5")
    p.add_argument("--model", default="adain-vc")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--sources", type=int, default=0, help="source clips per fold (0 = all 250)")
    p.add_argument("--set", type=setting, action="append", default=[], dest="settings", metavar="NAME=VALUE",
                   help="a model option, e.g. --set hop=4 (repeatable)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    args.settings = dict(args.settings)
    torch.set_num_threads(1)
    judges, _ = train_judges(resolve_data_dir() / "fsdd")
    for k in (int(v) for v in args.folds.split(",")):
        print(json.dumps(fold(k, args, judges)), flush=True)


if __name__ == "__main__":
    main()
