"""A speaker adversary on a per-clip content summary (Ganin & Lempitsky 2015's gradient
reversal; Chou et al. 2018 put an adversarial speaker classifier on a voice-conversion
model's content code).

- :func:`reverse_gradient`: the identity going forward; going back, the gradient is
  multiplied by −scale. A classifier behind it learns to tell the speaker, while what lies
  before it (the encoder) is pushed to make that classifier wrong.
- :class:`SpeakerAdversary`: an MLP (one hidden ReLU layer) from a per-clip vector to speaker
  logits. ``term(summary, batch)`` gives the cross-entropy of the reversed summary's logits
  against the batch's speaker labels and the adversary's accuracy on the batch.

A model adds W · CE to its loss: the adversary's weights descend the CE, the encoder's (through
the reversal) ascend it, both with the one optimiser.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VaelabError

HIDDEN = 64


class GradientReversal(torch.autograd.Function):
    """y = x; ∂L/∂x = −scale · ∂L/∂y."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = float(scale)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """x unchanged, its gradient negated and scaled by ``scale`` on the way back."""
    return GradientReversal.apply(x, scale)


def speaker_labels(batch, speakers: int, option: str = "speaker_adversary") -> torch.Tensor:
    """The batch's speaker indices (``extras["speaker"]``), each in [0, speakers); the errors name
    ``option``, the setting that needs them."""
    from ..data.batch import Batch

    flag = "--" + option.replace("_", "-")
    labels = batch.extras.get("speaker") if isinstance(batch, Batch) else None
    if labels is None:
        raise VaelabError(f"{option} needs each clip's speaker (extras['speaker']): train on fsdd or "
                          f"wav:FOLDER (a sub-folder or file-name prefix per speaker), or give {flag} 0")
    labels = labels.to(batch.x.device).long()
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= speakers):
        raise VaelabError(f"{option} was built for the {speakers} speakers of its training data; this "
                          f"data has speaker index {int(labels.max())}: give clips of those speakers")
    return labels


def data_speakers(front_end, option: str = "speaker_adversary") -> int:
    """The number of speakers the data's front end records (``front_end["speakers"]``); the error
    names ``option``, the setting that needs them."""
    names = (front_end or {}).get("speakers") if isinstance(front_end, dict) else None
    if not names or len(names) < 2:
        raise VaelabError(f"{option} needs data with at least 2 named speakers (fsdd or wav:FOLDER with a "
                          f"sub-folder per speaker); give --{option.replace('_', '-')} 0 otherwise")
    return len(names)


class SpeakerAdversary(nn.Module):
    """Per-clip vector (B, D) -> speaker logits (B, speakers): Linear, ReLU, Linear."""

    def __init__(self, dim: int, speakers: int, hidden: int = HIDDEN):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, speakers))
        self.speakers = speakers

    def forward(self, summary: torch.Tensor) -> torch.Tensor:
        return self.net(summary)

    def term(self, summary: torch.Tensor, batch, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(cross-entropy averaged over the batch, the adversary's accuracy on it) of the logits of
        the gradient-reversed ``summary`` against the batch's speakers."""
        labels = speaker_labels(batch, self.speakers)
        logits = self(reverse_gradient(summary, scale))
        accuracy = (logits.detach().argmax(1) == labels).float().mean()
        return F.cross_entropy(logits, labels), accuracy
