"""What the speech families share: a front end copied from the data into the config (so a loaded
model turns WAV into x and back), and conversion built from three pieces each family defines:

    content(x)  -> c (B, C, T)      what is said, frame by frame
    speaker(x)  -> s (B, S)         who says it, one vector per clip (None: the family has none)
    decode(c, s) -> x̂ (B, M, T)

``convert(source, references)`` decodes the source's content with the mean speaker vector of
one or more reference clips (one-shot / few-shot). Evaluation asks for these methods, never
for a family's name.
"""
from __future__ import annotations

from dataclasses import field
from typing import Any

import torch

from ..errors import VaelabError
from ..nn.speech import speech_input
from .base import Batch, Model


def input_shape():
    return field(default=(64, 128), metadata={
        "help": "mel bands, frames of the padded clips; set from the data, not an option", "option": False})


def front_end():
    return field(default=None, metadata={
        "help": "the log-mel front end the data was made with; set from the data, not an option", "option": False})


class SpeechModel(Model):
    """Base of the speech families (see the module docstring): ``reads = "audio"``."""

    reads = "audio"

    @classmethod
    def data_settings(cls, ds, settings: dict) -> dict:
        """``settings`` with the data's front end: only log-mel audio data is accepted."""
        fe = getattr(ds, "front_end", None) or {}
        if fe.get("kind") != "log-mel":
            raise VaelabError(f"{cls.name} models speech: train it on audio (--data fsdd or wav:FOLDER), not on "
                              f"{getattr(ds, 'name', 'this data')}")
        return {**settings, "front_end": dict(fe)}

    @property
    def front_end(self) -> dict:
        return dict(self.config.front_end or {})

    def speaker(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        return None

    @torch.no_grad()
    def reconstruct(self, data: Batch | torch.Tensor) -> torch.Tensor:
        """x̂ of each clip from its own content and speaker."""
        x, mask = speech_input(self, data)
        return self.decode(self.content(x, mask), self.speaker(x, mask), mask)

    @torch.no_grad()
    def speaker_vector(self, data: Batch | torch.Tensor) -> torch.Tensor | None:
        """(B, S) speaker vectors, or None for a family whose code has no speaker part."""
        x, mask = speech_input(self, data)
        return self.speaker(x, mask)

    @torch.no_grad()
    def content_code(self, data: Batch | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(c (B, C, T), frame mask (B, T)): the frame-level content code."""
        x, mask = speech_input(self, data)
        return self.content(x, mask), mask

    @torch.no_grad()
    def convert(self, source: Batch | torch.Tensor, references: list) -> torch.Tensor:
        """The source clips (B, M, T) decoded with the mean speaker vector of ``references``
        (a list of Batches or (1, M, T') tensors of the target speaker). A family without a
        speaker part returns its reconstruction of the source: there is nothing to swap."""
        x, mask = speech_input(self, source)
        if not references:
            raise VaelabError("convert needs at least one reference clip of the target speaker")
        vectors = [self.speaker_vector(r) for r in references]
        s = None if vectors[0] is None else torch.cat(vectors).mean(0, keepdim=True).expand(x.shape[0], -1)
        return self.decode(self.content(x, mask), s if s is not None else self.speaker(x, mask), mask)

    def end_of_run(self, run_dir, data: Batch, seed: int = 0) -> list[str]:
        """Spectrograms of a few validation clips above their reconstructions."""
        from ..viz.spectrograms import save_spectrogram_pairs

        if not len(data):
            return []
        save_spectrogram_pairs(self, data[:6], run_dir / "reconstructions.png")
        return ["reconstructions.png"]


def check_front_end(config) -> None:
    """A config's front end, where given, must be a log-mel dict matching input_shape."""
    fe: Any = config.front_end
    if fe is None:
        return
    if not isinstance(fe, dict) or fe.get("kind") != "log-mel":
        raise VaelabError(f"front_end must be a log-mel settings object, got {fe!r:.80}")
    if int(fe.get("n_mels", -1)) != config.input_shape[0]:
        raise VaelabError(f"front_end has {fe.get('n_mels')} mel bands but input_shape {config.input_shape[0]}")
