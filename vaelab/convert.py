"""``vaelab convert``: re-voice a recording in another speaker's voice with a trained speech model.

The source WAV's content is decoded with the speaker vector of one or more reference WAVs of the
target speaker (few-shot: their mean) and inverted to a waveform by Griffin-Lim, all with the
front end the model was trained with. Recordings at a higher sample rate than the model's are
resampled with a note; a lower one is refused (the missing upper band cannot be invented, and
the voice would be judged on it). The output is written atomically, and only after every input
has been read and checked.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .errors import VaelabError


def speech_model(run: str | os.PathLike, what: str = "convert"):
    """The speech model in ``run``; an image model is refused in one line."""
    from .io import load

    model = load(run)
    fe = getattr(model, "front_end", None)
    if not isinstance(fe, dict) or fe.get("kind") != "log-mel" or not hasattr(model, "convert"):
        raise VaelabError(f"{what} needs a speech model (ae-speech, adain-vc, vq-vc trained on audio), but {run} "
                          f"holds a '{getattr(model, 'name', type(model).__name__)}' model of images")
    return model.eval()


def read_clip(path: str | os.PathLike, settings: dict) -> torch.Tensor:
    """x (1, M, T) of a WAV file as the model's front end analyses it."""
    from .data.audio import clip_features, read_wav, to_rate

    wave, rate = read_wav(path)
    if rate < settings["sample_rate"]:
        raise VaelabError(f"{path} is recorded at {rate} Hz, below this model's {settings['sample_rate']} Hz: the "
                          "band above its Nyquist frequency is missing; give a recording at the model's rate or above")
    wave = to_rate(wave, rate, settings, str(path))
    return torch.from_numpy(clip_features(wave, settings, str(path)))[None]


def convert_wav(run: str | os.PathLike, source: str | os.PathLike, targets: list, output: str | os.PathLike,
                griffin_lim_iters: int = 0, model=None) -> dict:
    """Write ``output``: ``source`` spoken in the voice of the ``targets`` WAVs; returns a summary."""
    from .data.audio import invert, write_wav

    output = Path(output)
    if output.suffix.lower() != ".wav":
        raise VaelabError(f"-o {output}: the converted audio is written as WAV; name a file ending in .wav")
    if not output.parent.is_dir():
        raise VaelabError(f"-o {output}: the directory {output.parent} does not exist; create it first")
    if not targets:
        raise VaelabError("give at least one reference recording of the target speaker: --target REF.wav")
    model = model or speech_model(run)
    settings = model.front_end
    x = read_clip(source, settings)
    references = [read_clip(t, settings) for t in targets]
    with torch.no_grad():
        converted = model.convert(x, references)[0]
    wave = invert(converted, settings, iters=griffin_lim_iters or None)
    write_wav(output, wave, settings["sample_rate"])
    return {"output": str(output), "seconds": len(wave) / settings["sample_rate"], "references": len(references),
            "sample_rate": settings["sample_rate"]}


def speech_reconstructions(model, batch, output: str | os.PathLike) -> Path:
    """``reconstruct`` for a speech model: spectrograms of clips above their reconstructions."""
    from .viz.spectrograms import save_spectrogram_pairs

    return save_spectrogram_pairs(model, batch, output)


def encode_speech(model, ds, batch_size: int = 256) -> dict[str, np.ndarray]:
    """``encode`` for a speech model: per clip the time-averaged content code (``content``),
    the speaker vector (``speaker_vector``, where the family has one) and the true ``lengths``;
    with ``vq-vc`` also the frame codes (``codes``, −1 on padding)."""
    out: dict[str, list] = {"content": [], "speaker_vector": [], "codes": []}
    for i in range(0, len(ds), batch_size):
        batch = ds.subset(slice(i, i + batch_size)).batch()
        c, mask = model.content_code(batch)
        out["content"].append((c * mask[:, None]).sum(-1) / mask.sum(1, keepdim=True))
        s = model.speaker_vector(batch)
        if s is not None:
            out["speaker_vector"].append(s)
        if hasattr(model, "frame_codes"):
            out["codes"].append(model.frame_codes(batch))
    arrays = {k: torch.cat(v).numpy() for k, v in out.items() if v}
    arrays["lengths"] = ds.extras["lengths"].numpy()
    if "speaker" in ds.extras:
        arrays["speaker"] = ds.extras["speaker"].numpy()
    return arrays
