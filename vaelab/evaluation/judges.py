"""Judges of speech: a speaker classifier and a spoken-digit classifier over features of the
waveform itself, trained only on real recordings (FSDD's training takes 5–49), never on model
output. Converted audio is judged as a listener hears it: inverted to a waveform first.

Features (librosa): 20 MFCCs over 32 ms windows every 8 ms; per clip their mean and standard
deviation over the frames, the deviation of their deltas (the voice), and their means over 8
equal stretches of the clip (what is said, in order): 220 numbers. Each judge is a standardised
multinomial logistic regression whose inverse regularisation C is chosen on takes 5–9 held out
of the training takes, then refitted on all training takes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEGMENTS = 8
C_GRID = (0.1, 1.0, 10.0)
VALIDATION_TAKES = range(5, 10)


def features(wave: np.ndarray, rate: int) -> np.ndarray:
    """The 220 judge features of one waveform."""
    import librosa

    m = librosa.feature.mfcc(y=wave, sr=rate, n_mfcc=20, n_fft=256, hop_length=64, n_mels=40, fmax=rate / 2)
    d = librosa.feature.delta(m, width=3) if m.shape[1] >= 3 else np.zeros_like(m)
    parts = np.array_split(np.arange(m.shape[1]), SEGMENTS)
    stretches = np.concatenate([m[:, p].mean(1) if len(p) else m.mean(1) for p in parts])
    return np.concatenate([m.mean(1), m.std(1), d.std(1), stretches]).astype(np.float64)


def feature_matrix(waves, rate: int) -> np.ndarray:
    return np.stack([features(w, rate) for w in waves])


def _classifier(c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))


def fit_classifier(x: np.ndarray, y: np.ndarray, held_out: np.ndarray):
    """(classifier refitted on all rows, chosen C, validation accuracy of each C)."""
    scores = {}
    for c in C_GRID:
        clf = _classifier(c).fit(x[~held_out], y[~held_out])
        scores[c] = float((clf.predict(x[held_out]) == y[held_out]).mean())
    best = max(C_GRID, key=lambda c: (scores[c], -abs(np.log10(c))))
    return _classifier(best).fit(x, y), best, scores


@dataclass
class Judges:
    """The two judges and how they were chosen."""

    speaker: object
    digit: object
    rate: int
    chosen: dict

    def judge(self, waves) -> tuple[np.ndarray, np.ndarray]:
        """(predicted speakers, predicted digits) of waveforms at ``rate``."""
        x = feature_matrix(waves, self.rate)
        return self.speaker.predict(x), self.digit.predict(x)


def train_judges(root, rate: int = 8000, held_out=None) -> tuple[Judges, dict]:
    """Judges fitted on FSDD's training takes under ``root`` (the fsdd folder), and the clips
    to measure: the test takes, or with ``held_out`` (a list of (digit, speaker, take)) those
    training clips, in that order, left out of the judges' fit (a run's validation split).
    Returns (judges, {"waves", "digits", "speakers", "takes"} of the clips to measure)."""
    from ..data.speech import fsdd_waves

    waves, digits, speakers, takes = fsdd_waves(root, "train")
    keys = list(zip(digits.tolist(), speakers.tolist(), takes.tolist()))
    measured = None
    if held_out is not None:
        where = {k: i for i, k in enumerate(keys)}
        missing = [k for k in map(tuple, held_out) if k not in where]
        if missing:
            raise ValueError(f"clips {missing[:3]} are not FSDD training takes")
        rows = np.array([where[tuple(k)] for k in held_out], dtype=np.int64)
        measured = ([waves[i] for i in rows], digits[rows], speakers[rows], takes[rows])
        keep = np.ones(len(keys), dtype=bool)
        keep[rows] = False
        waves, digits, speakers, takes = [w for w, k in zip(waves, keep) if k], digits[keep], speakers[keep], takes[keep]
    x = feature_matrix(waves, rate)
    held = np.isin(takes, list(VALIDATION_TAKES))
    speaker, c_s, s_scores = fit_classifier(x, speakers, held)
    digit, c_d, d_scores = fit_classifier(x, digits, held)
    chosen = {"speaker_C": c_s, "digit_C": c_d, "speaker_val": s_scores, "digit_val": d_scores}
    measured = measured or fsdd_waves(root, "test")
    return Judges(speaker, digit, rate, chosen), dict(zip(("waves", "digits", "speakers", "takes"), measured))
