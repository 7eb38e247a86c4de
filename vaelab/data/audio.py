"""The audio front end: WAV in, a log-mel spectrogram x out, and back (Griffin-Lim) for listening.

Reading and writing WAV is soundfile's; the mel analysis, its inversion and resampling are
librosa's. The settings are data (:data:`FRONT_END`, a JSON-able dict saved with a run as
``front_end``), so a loaded model turns any WAV into its x and its x back into a WAV:

    x = (ln(mel_power(wave) + log_offset) − shift) / scale          (n_mels × frames)

Clips are padded with the value of silence to ``max_frames`` (longer ones cut, with a note),
the true number of frames kept beside x as ``lengths``: every split has one shape and models
mask their sums over the padded frames.
"""
from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import VaelabError, VaelabWarning, brief

FRONT_END = {
    "kind": "log-mel",
    "sample_rate": 8000,
    "n_fft": 256,          # 32 ms windows
    "hop_length": 64,      # 8 ms between frames
    "n_mels": 64,
    "fmin": 0.0,
    "fmax": 4000.0,
    "power": 2.0,
    "log_offset": 1e-5,
    "shift": -4.0,
    "scale": 4.0,
    "max_frames": 128,     # 1.02 s at 8 kHz
    "griffin_lim_iters": 32,
}
MIN_FRAMES = 8          # shorter clips carry too little for the networks' receptive fields
SILENCE_RMS = 1e-4      # a clip quieter than this throughout is treated as silence


def front_end(**changes) -> dict:
    """The default settings with ``changes``; refuses names it does not know."""
    unknown = sorted(set(changes) - set(FRONT_END))
    if unknown:
        raise VaelabError(f"unknown front-end settings {unknown}; choose among {sorted(FRONT_END)}")
    return {**FRONT_END, **changes}


def is_audio(settings: dict | None) -> bool:
    """Whether a front_end dict describes audio (a log-mel analysis)."""
    return isinstance(settings, dict) and settings.get("kind") == "log-mel"


# --- WAV files --------------------------------------------------------------------------

def read_wav(source, where: str | None = None) -> tuple[np.ndarray, int]:
    """(mono float32 samples, sample rate) of a WAV file path or bytes; stereo is downmixed
    with a warning; damaged or non-WAV input, NaN and silence are refused in one line."""
    import soundfile as sf

    where = where or str(source)
    data = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    if not isinstance(source, (bytes, bytearray)) and not Path(source).is_file():
        raise VaelabError(f"WAV file {where} does not exist; check the path")
    try:
        info = sf.info(data)
        if isinstance(data, io.BytesIO):
            data.seek(0)
        if info.format != "WAV" and info.format != "WAVEX":
            raise VaelabError(f"{where} is a {info.format} file, not a WAV file; convert it to WAV")
        wave, rate = sf.read(data, dtype="float32", always_2d=True)
    except VaelabError:
        raise
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError for damaged files
        raise VaelabError(f"cannot read {where} as a WAV file ({brief(e)}); give a WAV file with an intact header") from None
    if wave.shape[1] > 1:
        warnings.warn(f"{where} has {wave.shape[1]} channels; mixed down to mono", VaelabWarning, stacklevel=2)
    wave = wave.mean(axis=1)
    check_wave(wave, where)
    return np.ascontiguousarray(wave, dtype=np.float32), int(rate)


def check_wave(wave: np.ndarray, where: str) -> None:
    """Refuse NaN/inf samples and silence, each in one line."""
    if not np.isfinite(wave).all():
        raise VaelabError(f"{where} holds {int((~np.isfinite(wave)).sum())} NaN or infinite samples; "
                          "re-export the recording")
    if wave.size == 0 or float(np.sqrt(np.mean(wave.astype(np.float64) ** 2))) < SILENCE_RMS:
        raise VaelabError(f"{where} is silent (no sound above {SILENCE_RMS:g} RMS); give a recording of speech")


def to_rate(wave: np.ndarray, rate: int, settings: dict, where: str, say: bool = True) -> np.ndarray:
    """``wave`` at the front end's sample rate: resampled (librosa/soxr) with a one-line note."""
    target = int(settings["sample_rate"])
    if rate == target:
        return wave
    if say:
        warnings.warn(f"{where}: resampled from {rate} Hz to {target} Hz", VaelabWarning, stacklevel=2)
    import librosa

    return librosa.resample(wave, orig_sr=rate, target_sr=target).astype(np.float32)


def write_wav(path: str | os.PathLike, wave: np.ndarray, rate: int) -> None:
    """A 16-bit PCM WAV, written atomically (a failed write leaves nothing half-written)."""
    from ..files import atomic_write_bytes

    atomic_write_bytes(path, wav_bytes(wave, rate))


def wav_bytes(wave: np.ndarray, rate: int) -> bytes:
    """16-bit PCM WAV bytes of ``wave`` (peaks above 1 are scaled down, not clipped)."""
    import soundfile as sf

    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    wave = wave / peak * 0.99 if peak > 0.99 else wave
    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(wave, dtype=np.float32), int(rate), subtype="PCM_16", format="WAV")
    return buffer.getvalue()


# --- analysis and inversion ----------------------------------------------------------------

def log_mel(wave: np.ndarray, settings: dict) -> np.ndarray:
    """x of one clip: float32 (n_mels, frames), scaled as the front end says."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=wave, sr=settings["sample_rate"], n_fft=settings["n_fft"], hop_length=settings["hop_length"],
        n_mels=settings["n_mels"], fmin=settings["fmin"], fmax=settings["fmax"], power=settings["power"])
    return ((np.log(mel + settings["log_offset"]) - settings["shift"]) / settings["scale"]).astype(np.float32)


def silence_value(settings: dict) -> float:
    """x of a silent frame: what padding holds."""
    return (math.log(settings["log_offset"]) - settings["shift"]) / settings["scale"]


def invert(x: torch.Tensor | np.ndarray, settings: dict, length: int | None = None,
           iters: int | None = None) -> np.ndarray:
    """A waveform whose log-mel is ``x`` (n_mels, frames), by Griffin-Lim (librosa);
    ``length`` frames are kept (the clip's true length, padding dropped)."""
    import librosa

    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if length is not None:
        x = x[:, :int(length)]
    mel = np.maximum(np.exp(x.astype(np.float64) * settings["scale"] + settings["shift"]) - settings["log_offset"], 0)
    stft = librosa.feature.inverse.mel_to_stft(
        mel.astype(np.float32), sr=settings["sample_rate"], n_fft=settings["n_fft"], power=settings["power"],
        fmin=settings["fmin"], fmax=settings["fmax"])
    wave = librosa.griffinlim(stft, n_iter=int(iters or settings["griffin_lim_iters"]),
                              hop_length=settings["hop_length"], n_fft=settings["n_fft"], random_state=0)
    return wave.astype(np.float32)


def clip_features(wave: np.ndarray, settings: dict, where: str) -> np.ndarray:
    """x of one clip at the front end's rate, refused when shorter than :data:`MIN_FRAMES`."""
    need = max((MIN_FRAMES - 1) * settings["hop_length"], settings["n_fft"])  # samples for MIN_FRAMES frames
    if len(wave) < need:  # checked before the analysis, which would warn about a window longer than the clip
        rate = settings["sample_rate"]
        raise VaelabError(f"{where} is {len(wave) / rate:.3f} s long, shorter than the networks' receptive field "
                          f"({MIN_FRAMES} frames, {need / rate:.3f} s); give a longer clip")
    return log_mel(wave, settings)


def pad_clips(clips: list[np.ndarray], settings: dict, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x of shape N × n_mels × max_frames, lengths int64): padded with silence; clips longer
    than ``max_frames`` are cut there (one note says how many)."""
    n_mels, limit = settings["n_mels"], settings["max_frames"]
    x = np.full((len(clips), n_mels, limit), silence_value(settings), dtype=np.float32)
    lengths = np.zeros(len(clips), dtype=np.int64)
    for i, clip in enumerate(clips):
        t = min(clip.shape[1], limit)
        x[i, :, :t] = clip[:, :t]
        lengths[i] = t
    cut = sum(c.shape[1] > limit for c in clips)
    if cut:
        warnings.warn(f"{where}: {cut} of {len(clips)} clips are longer than {limit} frames "
                      f"({limit * settings['hop_length'] / settings['sample_rate']:.2f} s) and were cut there",
                      VaelabWarning, stacklevel=2)
    return torch.from_numpy(x), torch.from_numpy(lengths)


def frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, frames) float mask: 1 on a clip's true frames, 0 on its padding."""
    return (torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]).float()


def wav_to_x(path: str | os.PathLike, settings: dict, say: bool = True) -> np.ndarray:
    """x (n_mels, frames) of a WAV file as the front end ``settings`` analyses it (any length)."""
    wave, rate = read_wav(path)
    return clip_features(to_rate(wave, rate, settings, str(path), say), settings, str(path))
