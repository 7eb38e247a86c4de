"""``vq-vc``: one-shot voice conversion by vector quantization (Wu & Lee 2020, "VQVC").

    z = E(x) (B, D, T)                     continuous frame codes
    c = q(z)                               content: each frame's nearest codebook vector
                                           (:class:`vaelab.nn.quantizer.VectorQuantizer`)
    s = mean_t (z − sg[c])                 speaker: the utterance mean of the residual
    x̂ = D(c + s)

    L = Σ |x − x̂|  +  codebook ‖sg[z] − c‖²  +  β · commitment ‖z − sg[c]‖²

each summed over a clip (mel bands or D × true frames), averaged over the batch; only the
clip's true frames reach the quantizer (padding is never a code, never counted in the
codebook's usage). The codebook is discrete and small, so it cannot hold the fine, steady
detail of a voice: that is left in the residual, whose time average is the speaker.

Scaled down from the paper (mel input, conv encoder/decoder of 512 channels, codebook of 256 at
24 kHz): 64 mel bands at 8 kHz, sizes settable. As the paper, the frame codes are normalised
(each z frame to unit length) before quantization, so the codebook holds directions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config, require
from ..nn.quantizer import VectorQuantizer
from ..nn.speech import ConvStack, masked_mean, masked_sum, speech_input
from .base import Batch, Loss
from .registry import register
from .speech import SpeechModel, check_front_end, front_end, input_shape


@dataclass(frozen=True)
class VQVCConfig(Config):
    input_shape: tuple[int, int] = input_shape()
    front_end: Any = front_end()
    code_dim: int = field(default=32, metadata={"help": "D, the dimension of each frame code and codebook vector"})
    codebook_size: int = field(default=64, metadata={"help": "K, the number of codes (the paper: 256)"})
    width: int = field(default=128, metadata={"help": "channels of the convolutions (the paper: 512)"})
    blocks: int = field(default=3, metadata={"help": "residual blocks in the encoder and in the decoder"})
    beta: float = field(default=0.25, metadata={"help": "β, weight of the commitment term"})
    revive_after: int = field(default=50, metadata={
        "help": "move a code unused for this many training steps onto a random frame code (0 = never)"})

    def validate(self) -> None:
        require(len(self.input_shape) == 2 and min(self.input_shape) >= 1,
                f"input_shape must be mel bands, frames; got {self.input_shape}")
        require(self.codebook_size >= 2 and self.code_dim >= 1 and self.width >= 1 and self.blocks >= 0,
                "codebook_size must be >= 2, code_dim and width >= 1, blocks >= 0")
        require(self.beta >= 0 and self.revive_after >= 0, "beta and revive_after must be >= 0")
        check_front_end(self)


@register("vq-vc")
class VQVC(SpeechModel):
    Config = VQVCConfig

    def __init__(self, config: VQVCConfig):
        super().__init__(config)
        m, ch, d = config.input_shape[0], config.width, config.code_dim
        self.enc_in, self.enc, self.enc_out = nn.Conv1d(m, ch, 5, padding=2), ConvStack(ch, config.blocks), \
            nn.Conv1d(ch, d, 1)
        self.quantizer = VectorQuantizer(config.codebook_size, d, beta=config.beta, kmeans_init=True,
                                         revive_after=config.revive_after)
        self.dec_in, self.dec, self.dec_out = nn.Conv1d(d, ch, 5, padding=2), ConvStack(ch, config.blocks), \
            nn.Conv1d(ch, m, 1)

    def frames(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """z = E(x), each frame normalised to unit length: (B, D, T), 0 on padding."""
        h = torch.relu(self.enc_in(x)) * mask[:, None]
        return F.normalize(self.enc_out(self.enc(h, mask)), dim=1) * mask[:, None]

    def quantize(self, z: torch.Tensor, mask: torch.Tensor):
        """(c (B, D, T), codes (B, T) with −1 on padding, codebook and commitment sums (B,)):
        only the true frames go through the quantizer."""
        keep = mask.bool()
        flat = z.transpose(1, 2)[keep]                           # (N, D) true frames
        q = self.quantizer(flat.t()[None, :, :, None])            # one (1, D, N, 1) map
        c = torch.zeros_like(z.transpose(1, 2))
        c[keep] = q.z_q[0, :, :, 0].t()
        codes = torch.full(mask.shape, -1, dtype=torch.long, device=z.device)
        codes[keep] = q.codes[0, :, 0]
        e = self.quantizer.codebook[codes.clamp_min(0)].transpose(1, 2) * mask[:, None]  # (B, D, T)
        codebook = masked_sum((z.detach() - e).square(), mask)
        commitment = masked_sum((z - e.detach()).square(), mask)
        return c.transpose(1, 2), codes, codebook, commitment

    def content(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.quantize(self.frames(x, mask), mask)[0]

    def speaker(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """s = the utterance mean of z − sg[c] over the true frames, (B, D)."""
        z = self.frames(x, mask)
        return masked_mean(z - self.quantize(z, mask)[0].detach(), mask)

    def decode(self, c: torch.Tensor, s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.dec_in((c + s[..., None]) * mask[:, None])) * mask[:, None]
        return self.dec_out(self.dec(h, mask))

    @torch.no_grad()
    def frame_codes(self, data) -> torch.Tensor:
        """(B, T) code indices of each clip's frames, −1 on padding."""
        x, mask = speech_input(self, data)
        return self.quantize(self.frames(x, mask), mask)[1]

    def loss(self, batch: Batch | torch.Tensor) -> Loss:
        x, mask = speech_input(self, batch, trim=True)
        z = self.frames(x, mask)
        c, _, codebook, commitment = self.quantize(z, mask)
        s = masked_mean(z - c.detach(), mask)
        per_clip = masked_sum((x - self.decode(c, s, mask)).abs(), mask)
        recon, codebook, commitment = per_clip.mean(), codebook.mean(), commitment.mean()
        w = {"recon_l1": 1.0, "codebook": 1.0, "commitment": self.config.beta, "recon_l1_per_frame": 0.0}
        return Loss(recon + codebook + self.config.beta * commitment,
                    {"recon_l1": recon, "codebook": codebook, "commitment": commitment,
                     "recon_l1_per_frame": (per_clip / mask.sum(1)).mean()}, w)

    def epoch_figures(self) -> dict[str, float]:
        return self.quantizer.epoch_figures()
