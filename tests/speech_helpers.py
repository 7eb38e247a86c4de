"""Synthetic speech for the speech tests: "speakers" are fundamental frequencies, "words" are
formant-like band shapes over time, so tests need no recordings."""
from __future__ import annotations

from pathlib import Path

import numpy as np

RATE = 8000


def tone(f0: float, word: int, seconds: float = 0.4, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """A harmonic tone at ``f0`` whose spectral peak glides as ``word`` says, with a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    peak = 500 + 300 * word + 400 * np.sin(2 * np.pi * (word + 1) * t / seconds)
    wave = sum(np.sin(2 * np.pi * k * f0 * t) * np.exp(-((k * f0 - peak) / 600) ** 2) for k in range(1, 20))
    wave = wave * np.hanning(len(t)) + 0.003 * rng.standard_normal(len(t))
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


def write(path: Path, wave: np.ndarray, rate: int = RATE, subtype: str = "PCM_16") -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave, rate, subtype=subtype)
    return path


def speaker_folder(root: Path, speakers=(110.0, 180.0), words: int = 3, takes: int = 4) -> Path:
    """``root/spk<i>/w<word>_<take>.wav`` for each speaker."""
    for i, f0 in enumerate(speakers):
        for w in range(words):
            for k in range(takes):
                write(root / f"spk{i}" / f"w{w}_{k}.wav", tone(f0, w, 0.3 + 0.05 * k, seed=k))
    return root
