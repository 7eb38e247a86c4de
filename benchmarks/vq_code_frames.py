"""Which frames tell the speaker in a VQ speech model's code histograms: all of a clip's frames,
only its speech (frames whose mean log-mel level is within DB decibels of the clip's loudest), or
only the rest (pauses, breath, the recording's noise floor). Each histogram goes to the classifier
of ``vaelab compare voice-conversion`` (standardised logistic regression, C chosen on takes 15–19),
fitted on training takes 10–49 and scored on training takes 5–9: the test takes are not read.

    python benchmarks/vq_code_frames.py runs/vq/vq-vc --db 10,20,30
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import torch

import vaelab
from vaelab.data import load_dataset
from vaelab.errors import VaelabError
from vaelab.evaluation.judges import fit_classifier
from vaelab.nn.speech import speech_input
from vaelab.threads import set_threads

DB_PER_NAT = 10 / math.log(10)


def histograms(model, ds, db: list[float]) -> dict[str, tuple[np.ndarray, float]]:
    """{frames: ((N, K) each clip's share of those frames per code, mean share of a clip's frames
    that are those frames)}, for all frames, the speech within each threshold and the rest."""
    k, per_unit = model.config.codebook_size, model.front_end["scale"] * DB_PER_NAT
    sets: dict[str, list] = {"all frames": []}
    with torch.no_grad():
        for i in range(0, len(ds), 256):
            batch = ds.subset(slice(i, i + 256)).batch()
            codes = model.frame_codes(batch)
            x, _ = speech_input(model, batch)
            for c, level in zip(codes, x.mean(1)):
                valid = c >= 0
                c, level = c[valid], level[:len(valid)][valid] * per_unit  # dB, up to a constant
                sets["all frames"].append(_share(c, torch.ones_like(valid[valid]), k))
                for d in db:
                    speech = level >= level.max() - d
                    sets.setdefault(f"speech: within {d:g} dB of the loudest", []).append(_share(c, speech, k))
                    sets.setdefault(f"the rest: over {d:g} dB below", []).append(_share(c, ~speech, k))
    return {name: (np.stack([h for h, _ in rows]), float(np.mean([f for _, f in rows]))) for name, rows in sets.items()}


def _share(codes: torch.Tensor, keep: torch.Tensor, k: int) -> tuple[np.ndarray, float]:
    counts = torch.bincount(codes[keep], minlength=k).float()
    return (counts / counts.sum().clamp_min(1)).numpy(), float(keep.float().mean())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run", help="a vq-vc run (or any speech model with frame codes)")
    p.add_argument("--db", default="10,20,30", help="speech thresholds below each clip's loudest frame (dB)")
    args = p.parse_args()
    set_threads(1)  # torch and numpy's BLAS alike
    try:
        model = vaelab.load(args.run).eval()
    except VaelabError as exc:
        raise SystemExit(f"error: {exc}") from None
    if not hasattr(model, "frame_codes"):
        raise SystemExit(f"{args.run} has no frame codes: give a vq-vc run")
    ds = load_dataset("fsdd", "train")
    take, speaker, digit = ds.extras["take"].numpy(), ds.extras["speaker"].numpy(), ds.y.numpy()
    fit, scored = take >= 10, (take >= 5) & (take < 10)
    held = np.isin(take[fit], list(range(15, 20)))
    print(f"{args.run}: code histograms, fitted on takes 10–49, scored on takes 5–9 ({int(scored.sum())} clips)")
    print("| frames | share of frames | speaker | digit |\n|---|---|---|---|")
    for name, (h, share) in histograms(model, ds, [float(v) for v in args.db.split(",")]).items():
        accuracy = [float((fit_classifier(h[fit], y[fit], held)[0].predict(h[scored]) == y[scored]).mean())
                    for y in (speaker, digit)]
        print(f"| {name} | {share:.2f} | {accuracy[0]:.3f} | {accuracy[1]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
