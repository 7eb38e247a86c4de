"""``vaelab compare voice-conversion``: do speech models separate who speaks from what is said?

On FSDD's test takes (0–4) with ``split="test"`` (the table), or on the runs' validation
clips (carved from the training takes; the default, for choosing settings: the judges are then
fitted without them), judged by classifiers trained on real training takes only
(:mod:`vaelab.evaluation.judges`), every audio judged after inversion to a waveform:

- the judges' ceilings: real test takes, their Griffin-Lim resyntheses (the vocoder's ceiling),
  and each model's same-speaker reconstructions;
- each model's conversions over all 30 ordered speaker pairs: every test clip of the source
  speaker decoded with one reference take of the target (its first test clip, take 0 of "zero"):
  the fraction the speaker judge reads as the target, as the source, and whose digit is kept;
- for models with frame codes (``frame_codes``): how well a classifier on each clip's code
  histogram tells the digit and the speaker, against the same on the time-averaged continuous
  content code (trained on training takes, measured on test takes).

Figures: a speaker × speaker matrix per model (row: source, column: target; the fraction read
as the target; the diagonal: same-speaker reconstructions read as their speaker) and
spectrogram panels (source / reference / converted).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..data import load_dataset, resolve_data_dir
from ..data.audio import invert
from ..data.speech import FSDD_SPEAKERS
from ..errors import VaelabError
from .common import Comparison, prepare_out

COLUMNS = ["audio", "n", "speaker: read as target", "speaker: read as source", "digit kept"]
REFERENCE_ROW = 0  # each speaker's first measured clip (on the test takes: digit 0, take 0) is the one reference take


SPLIT_NAMES = {"val": "validation clips", "test": "test takes"}


def voice_conversion(out, runs=(), progress: bool = True, data_dir=None, seed: int = 0, threads: int = 0,
                     train_size: int = 0, griffin_lim_iters: int = 0, sources_per_pair: int = 0,
                     split: str = "val", **_) -> Comparison:
    """The table, the matrices and the panels for the speech runs ``runs`` (trained on fsdd),
    measured on ``split``: "val" (the runs' validation clips) or "test"."""
    from ..evaluation.judges import train_judges
    from ..io import load

    if not runs:
        raise VaelabError("compare voice-conversion needs trained speech runs: --run RUN (repeatable), e.g. "
                          "runs of `vaelab train adain-vc --data fsdd`")
    start, out = time.time(), prepare_out(out)
    torch.manual_seed(seed)
    models = [(Path(r).name, _speech_model(load(r), r)) for r in runs]
    settings = models[0][1].front_end
    iters = griffin_lim_iters or settings["griffin_lim_iters"]
    root = resolve_data_dir(data_dir) / "fsdd"
    fitted, test = measured_split(split, runs, data_dir)
    held = None if split == "test" else _clip_keys(test)
    judges, real = train_judges(root, settings["sample_rate"], held_out=held)
    what = SPLIT_NAMES[split]
    if tuple(test.shape) != tuple(models[0][1].input_shape):
        raise VaelabError(f"the runs take {list(models[0][1].input_shape)} but fsdd gives {list(test.shape)}")
    speakers, digits = test.extras["speaker"].numpy(), test.y.numpy()
    lengths = test.extras["lengths"].numpy()

    def judge_x(x: torch.Tensor, rows) -> tuple[np.ndarray, np.ndarray]:
        return judges.judge([invert(x[i], settings, int(lengths[r]), iters) for i, r in enumerate(rows)])

    rows = [_row(f"real {what}", *judges.judge(real["waves"]), real["speakers"], real["speakers"], real["digits"])]
    everything = np.arange(len(test))
    rows.append(_row(f"Griffin-Lim resynthesis of the {what}", *judge_x(test.x, everything),
                     speakers, speakers, digits))
    matrices, panels, figures, codes_rows = {}, [], [], []
    for name, model in models:
        recon = model.reconstruct(test.batch())
        s_hat, d_hat = judge_x(recon, everything)
        rows.append(_row(f"{name}: same-speaker reconstructions", s_hat, d_hat, speakers, speakers, digits))
        matrix, conv_rows = _conversions(model, test, judge_x, sources_per_pair, panels, name)
        for a in range(len(FSDD_SPEAKERS)):
            mine = speakers == a
            matrix[a, a] = float((s_hat[mine] == a).mean())
        matrices[name] = matrix
        rows.append(conv_rows)
        if hasattr(model, "frame_codes"):
            codes_rows += _code_histograms(model, name, fitted, test, out, figures)
    figures.append(_save_matrices(matrices, out / "speaker_matrix.png").name)
    from ..viz.spectrograms import save_conversion_panels
    figures.append(save_conversion_panels(panels, out / "conversion_panels.png").name)
    notes = [f"measured on the {what}" + (" (the runs' validation split, left out of the judges' fit)"
                                          if split == "val" else "") + "; judges trained on FSDD training takes only (C chosen on takes 5–9: speaker C = "
             f"{judges.chosen['speaker_C']:g}, digit C = {judges.chosen['digit_C']:g}); every model output "
             f"judged after Griffin-Lim ({iters} iterations) and re-analysis",
             f"conversions: each of the {what} of the source speaker with one reference take of the target "
             "(its first clip there: take 0 of 'zero' on the test takes), all 30 ordered pairs of the 6 speakers "
             "(all male)"]
    rows += codes_rows
    return Comparison("voice-conversion", "Voice conversion on FSDD: judges on real, resynthesised, reconstructed "
                      f"and converted {what}", COLUMNS, rows,
                      settings={"data": "fsdd", "split": split, "runs": [str(r) for r in runs], "griffin_lim_iters": iters,
                                "sources_per_pair": sources_per_pair, "seed": seed,
                                "matrices": {k: v.round(4).tolist() for k, v in matrices.items()}},
                      figures=figures, notes=notes, seconds=time.time() - start)


def _speech_model(model, run):
    fe = getattr(model, "front_end", None)
    if not isinstance(fe, dict) or fe.get("kind") != "log-mel" or not hasattr(model, "convert"):
        raise VaelabError(f"--run {run} is not a speech model (no log-mel front end to convert with); "
                          "give runs of ae-speech, adain-vc or vq-vc trained on fsdd")
    return model.eval()


def measured_split(split: str, runs, data_dir):
    """(clips the code classifiers fit on, clips measured): FSDD's training and test takes, or
    the runs' training and validation parts, which must be the same for every run."""
    from ..training.run import validation_parts

    if split not in SPLIT_NAMES:
        raise VaelabError(f"--split {split}: choose val (the runs' validation clips, for choosing settings) or test "
                          "(the test takes, for the final table)")
    if split == "test":
        return load_dataset("fsdd", "train", data_dir=data_dir), load_dataset("fsdd", "test", data_dir=data_dir)
    parts = [validation_parts(r, "fsdd", data_dir) for r in runs]
    first = _clip_keys(parts[0][1])
    for run, (_, val) in zip(runs[1:], parts[1:]):
        if _clip_keys(val) != first:
            raise VaelabError(f"--run {run} held out other validation clips than --run {runs[0]}; compare runs "
                              "trained with the same --seed and --val-size, or use --split test")
    return parts[0]


def _clip_keys(ds) -> list[tuple[int, int, int]]:
    """(digit, speaker, take) of each clip: what names an FSDD recording."""
    return list(zip(ds.y.tolist(), ds.extras["speaker"].tolist(), ds.extras["take"].tolist()))


def _row(audio: str, s_hat, d_hat, target, source, digits) -> dict:
    return {"audio": audio, "n": int(len(s_hat)), "speaker: read as target": float((s_hat == target).mean()),
            "speaker: read as source": float((s_hat == source).mean()), "digit kept": float((d_hat == digits).mean())}


def conversion_pairs(model, clips, per_pair: int):
    """Every ordered pair of speakers (a, b), a ≠ b, in turn: ``(a, b, rows, batch, reference,
    converted)``, the clips of a (``per_pair`` of them spread over the takes, all when 0) converted
    with b's reference take; one place, so the table and the diagnostics convert the same clips."""
    speakers = clips.extras["speaker"].numpy()
    for b in range(len(FSDD_SPEAKERS)):
        ref_row = int(np.flatnonzero(speakers == b)[REFERENCE_ROW])
        reference = clips.subset(slice(ref_row, ref_row + 1)).batch()
        for a in range(len(FSDD_SPEAKERS)):
            if a == b:
                continue
            rows = np.flatnonzero(speakers == a)
            if per_pair:
                rows = rows[np.linspace(0, len(rows) - 1, per_pair).round().astype(int)]
            batch = clips.subset(torch.from_numpy(rows)).batch()
            yield a, b, rows, batch, reference, model.convert(batch, [reference])


def _conversions(model, test, judge_x, per_pair: int, panels: list, name: str):
    """Every ordered pair (a, b), a ≠ b: the source clips of a with b's reference take."""
    digits, k = test.y.numpy(), len(FSDD_SPEAKERS)
    matrix = np.zeros((k, k))
    s_all, d_all, target, source, kept = [], [], [], [], []
    for a, b, rows, batch, reference, converted in conversion_pairs(model, test, per_pair):
        s_hat, d_hat = judge_x(converted, rows)
        matrix[a, b] = float((s_hat == b).mean())
        s_all.append(s_hat), d_all.append(d_hat), target.append(np.full(len(rows), b))
        source.append(np.full(len(rows), a)), kept.append(digits[rows])
        if len(panels) < 9 and a == (b + 1) % k and b < 3:
            t, tr = int(batch.extras["lengths"][0]), int(reference.extras["lengths"][0])
            panels.append((f"{name} {FSDD_SPEAKERS[a]}→{FSDD_SPEAKERS[b]}",
                           [batch.x[0, :, :t].numpy(), reference.x[0, :, :tr].numpy(), converted[0, :, :t].numpy()]))
    cat = np.concatenate
    return matrix, _row(f"{name}: conversions, 30 speaker pairs", cat(s_all), cat(d_all), cat(target), cat(source),
                        cat(kept))


def _code_histograms(model, name: str, fitted, measured, out: Path, figures: list) -> list[dict]:
    """Digit and speaker accuracy of classifiers on code histograms vs pooled continuous codes,
    fitted on ``fitted`` clips and measured on ``measured``; a figure of which codes fire for
    which digits (mean measured histogram per digit)."""
    from ..evaluation.judges import fit_classifier

    k = model.config.codebook_size
    parts = {}
    for split, ds in (("train", fitted), ("test", measured)):
        hist, pooled = [], []
        for i in range(0, len(ds), 256):
            batch = ds.subset(slice(i, i + 256)).batch()
            codes = model.frame_codes(batch)
            valid = codes >= 0
            hist.append(torch.stack([torch.bincount(c[v], minlength=k).float() / v.sum() for c, v in zip(codes, valid)]))
            x, mask = model.frames(*_input(model, batch)), None
            mask = valid.float()
            pooled.append((x * mask[:, None]).sum(-1) / mask.sum(1, keepdim=True))
        parts[split] = (torch.cat(hist).numpy(), torch.cat(pooled).detach().numpy(), ds.y.numpy(),
                        ds.extras["speaker"].numpy(), ds.extras["take"].numpy())
    hist, digits = parts["test"][0], parts["test"][2]
    by_digit = np.stack([hist[digits == d].mean(0) for d in range(10)])
    figures.append(_save_code_map(by_digit, out / f"codes_by_digit_{name}.png", name).name)
    rows = []
    for label, features in (("code histograms", 0), ("time-averaged continuous code", 1)):
        train, test = parts["train"], parts["test"]
        held = np.isin(train[4], list(range(5, 10)))
        digit = fit_classifier(train[features], train[2], held)[0]
        speaker = fit_classifier(train[features], train[3], held)[0]
        rows.append({"audio": f"{name}: {label} → classifier (no audio)", "n": int(len(test[2])),
                     "speaker: read as target": float((speaker.predict(test[features]) == test[3]).mean()),
                     "speaker: read as source": None,
                     "digit kept": float((digit.predict(test[features]) == test[2]).mean())})
    return rows


def _input(model, batch):
    from ..nn.speech import speech_input

    return speech_input(model, batch)


def _save_matrices(matrices: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..viz.spectrograms import save_figure

    fig, axes = plt.subplots(1, len(matrices), figsize=(4.2 * len(matrices), 4), squeeze=False)
    for ax, (name, m) in zip(axes[0], matrices.items()):
        ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < 0.6 else "k")
        ax.set_xticks(range(len(FSDD_SPEAKERS)), FSDD_SPEAKERS, rotation=60, fontsize=7)
        ax.set_yticks(range(len(FSDD_SPEAKERS)), FSDD_SPEAKERS, fontsize=7)
        ax.set_xlabel("target speaker"), ax.set_ylabel("source speaker"), ax.set_title(f"{name}: read as target", fontsize=9)
    return save_figure(fig, path)


def _save_code_map(by_digit: np.ndarray, path: Path, name: str) -> Path:
    """Digit × code: the mean fraction of a test clip's frames given each code."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..viz.spectrograms import save_figure

    order = np.argsort(by_digit.argmax(0) * 10 - by_digit.max(0))  # codes grouped by the digit they fire most for
    fig, ax = plt.subplots(figsize=(min(14, 2 + by_digit.shape[1] / 6), 3.2))
    ax.imshow(by_digit[:, order], aspect="auto", cmap="magma", interpolation="nearest")
    ax.set_yticks(range(10)), ax.set_ylabel("digit"), ax.set_xlabel("code (grouped by the digit it fires most for)")
    ax.set_xticks([])
    ax.set_title(f"{name}: which codes fire for which digits (mean share of a test clip's frames)", fontsize=9)
    return save_figure(fig, path)
