"""Which of the speaker judge's features read a run's conversions as the target: the judge of
``vaelab compare voice-conversion`` refitted on each group of its 220 features alone, on the same
real training takes (the run's validation clips left out), and applied to the same conversions
(each ordered pair of speakers, ``--sources-per-pair`` validation clips of the source with the
target's reference clip, inverted by Griffin-Lim and re-analysed).

    python benchmarks/speech_judge_parts.py runs/vc/adain-branch [--sources-per-pair 10] [--scale 1.25]

Groups: the MFCCs' mean over the clip (the steady envelope), their mean with their spread and the
spread of their deltas (the voice features, order-free), and their means over 8 equal stretches
of the clip (time-ordered: what is said and how). ``--scale K`` multiplies each converted clip's
deviations from its bands' means by K before inversion (a crude global-variance postfilter, to
ask whether conversions read as another voice because they are smoother than speech).
Validation clips only: the test takes are for the table.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

GROUPS = {"all 220 (the judge)": slice(0, 220), "voice: mean, spread, delta spread (60)": slice(0, 60),
          "steady envelope: mean (20)": slice(0, 20), "time-ordered: 8 stretches (160)": slice(60, 220)}


def main() -> None:
    import vaelab
    from vaelab.compare.voice_conversion import _clip_keys, conversion_pairs, measured_split
    from vaelab.data import resolve_data_dir
    from vaelab.data.audio import invert
    from vaelab.data.speech import fsdd_waves
    from vaelab.evaluation.judges import VALIDATION_TAKES, feature_matrix, fit_classifier

    p = argparse.ArgumentParser()
    p.add_argument("run")
    p.add_argument("--sources-per-pair", type=int, default=10)
    p.add_argument("--scale", type=float, default=1.0)
    args = p.parse_args()
    torch.set_num_threads(1)
    model = vaelab.load(args.run).eval()
    fe = model.front_end
    rate = fe["sample_rate"]
    _, val = measured_split("val", [args.run], None)
    left_out = set(_clip_keys(val))
    waves, digits, speakers, takes = fsdd_waves(resolve_data_dir(None) / "fsdd", "train")
    keep = np.array([k not in left_out for k in zip(digits.tolist(), speakers.tolist(), takes.tolist())])
    x = feature_matrix([w for w, k in zip(waves, keep) if k], rate)
    held = np.isin(takes[keep], list(VALIDATION_TAKES))
    judges = {name: fit_classifier(x[:, cols], speakers[keep], held)[0] for name, cols in GROUPS.items()}
    digit_judge = fit_classifier(x, digits[keep], held)[0]

    lengths, said = val.extras["lengths"].numpy(), val.y.numpy()
    feats, source, target, digit = [], [], [], []
    with torch.no_grad():
        for a, b, rows, _, _, converted in conversion_pairs(model, val, args.sources_per_pair):
            clips = []
            for i, q in enumerate(rows):
                c = converted[i, :, :int(lengths[q])]
                mean = c.mean(1, keepdim=True)
                clips.append(invert(mean + (c - mean) * args.scale, fe))
            feats.append(feature_matrix(clips, rate))
            source += [a] * len(rows)
            target += [b] * len(rows)
            digit += said[rows].tolist()
    f, source, target = np.concatenate(feats), np.array(source), np.array(target)
    print(f"{args.run}: {len(f)} conversions of validation clips, scale {args.scale:g}; "
          f"digit kept {np.mean(digit_judge.predict(f) == np.array(digit)):.3f}")
    print("| speaker judge on | read as target | read as source |\n|---|---|---|")
    for name, cols in GROUPS.items():
        pred = judges[name].predict(f[:, cols])
        print(f"| {name} | {np.mean(pred == target):.3f} | {np.mean(pred == source):.3f} |")


if __name__ == "__main__":
    main()
