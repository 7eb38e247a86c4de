"""A critic of mel frames for adversarial voice conversion: for every frame, whether it is real
speech or a conversion, and whose voice it is (a least-squares GAN, Mao et al. 2017, with an
auxiliary speaker classifier, Odena et al. 2017; Chou et al. 2018 judge their conversions by
such a critic).

:class:`FrameCritic` maps log-mel frames (B, M, T) to per-frame real/fake scores (B, T) and
speaker logits (B, K, T), from convolutions over time with a receptive field of a few dozen
frames, zeroed on padding. The terms below are summed over a clip's true frames and averaged
over the batch, as every term of the speech families:

    critic:     Σ_t (D(x)_t − 1)² + D(x̃)_t²  +  Σ_t CE(speaker_t(x), k)
    generator:  Σ_t (D(x̃)_t − 1)²           +  Σ_t CE(speaker_t(x̃), k̃)

with x real clips of speakers k and x̃ conversions meant to be in the voices k̃.

With ``spectral`` every layer's weight is divided by its largest singular value (spectral
normalisation, Miyato et al. 2018, one power iteration a step), which bounds how fast the
scores can move with the frames. Without it the least-squares scores are unbounded, and a
default adain-vc run diverged after 21 epochs (both players' terms jumping by 10⁵, the
reconstruction with them; docs/speech.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn



class FrameCritic(nn.Module):
    """(B, M, T) log-mel frames -> ((B, T) real/fake scores, (B, K, T) speaker logits)."""

    def __init__(self, n_mels: int, speakers: int, channels: int = 128, layers: int = 4, kernel: int = 5,
                 spectral: bool = False):
        super().__init__()
        norm = nn.utils.parametrizations.spectral_norm if spectral else (lambda layer: layer)
        dims = [n_mels] + [channels] * layers
        self.convs = nn.ModuleList(norm(nn.Conv1d(a, b, kernel, padding=kernel // 2)) for a, b in zip(dims, dims[1:]))
        self.out = norm(nn.Conv1d(channels, 1 + speakers, 1))
        self.speakers = speakers

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x * mask[:, None]
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2) * mask[:, None]
        out = self.out(h)
        return out[:, 0], out[:, 1:]


def frame_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,): Σ over each clip's true frames of per-frame values (B, T)."""
    return (values * mask).sum(1)


def speaker_ce(logits: torch.Tensor, speakers: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_t CE(logits_t, speaker) over each clip's true frames, averaged over the batch."""
    per_frame = F.cross_entropy(logits, speakers[:, None].expand(-1, logits.shape[-1]), reduction="none")
    return frame_sum(per_frame, mask).mean()


def frame_accuracy(logits: torch.Tensor, speakers: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The fraction of true frames whose most probable speaker is the clip's."""
    right = (logits.detach().argmax(1) == speakers[:, None]).float()
    return frame_sum(right, mask).sum() / mask.sum()


def critic_terms(critic: FrameCritic, real: torch.Tensor, fake: torch.Tensor, speakers: torch.Tensor,
                 mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The critic's terms: real frames scored 1 and fake 0, real frames' speakers named."""
    score_real, logits = critic(real, mask)
    score_fake, _ = critic(fake.detach(), mask)
    return {"critic_real_fake": frame_sum((score_real - 1).square() + score_fake.square(), mask).mean(),
            "critic_speaker": speaker_ce(logits, speakers, mask),
            "critic_speaker_accuracy": frame_accuracy(logits, speakers, mask)}


def generator_terms(critic: FrameCritic, fake: torch.Tensor, targets: torch.Tensor,
                    mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The generator's terms: its frames scored real and named as the target speakers."""
    score, logits = critic(fake, mask)
    return {"adv_real_fake": frame_sum((score - 1).square(), mask).mean(),
            "adv_speaker": speaker_ce(logits, targets, mask),
            "adv_speaker_accuracy": frame_accuracy(logits, targets, mask)}
