"""``ae-speech``: a plain convolutional autoencoder over mel frames, the baseline whose code
mixes who speaks with what is said.

    c = E(x)  (B, C, T)      x̂ = D(c)      recon = Σ_{mel bands, true frames} |x − x̂|

Encoder: a 1×1 convolution from the M mel bands to ``channels``, ``blocks`` residual 1-D
convolutions (kernel 5) and a 1×1 convolution to the ``code_dim``-wide code per frame; the
decoder mirrors it. The code is as wide as the other families' content plus speaker parts,
with no slot for the speaker: its "conversion" is its reconstruction of the source (there is
nothing to swap), which is what the comparison shows. The reconstruction term is the L1
distance the AdaIN-VC paper uses, summed over a clip's mel bands and true frames (padding
masked), averaged over the batch; ``recon_l1_per_frame`` divides by the frames.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..config import Config, require
from ..nn.speech import ConvStack, masked_sum, speech_input
from .base import Batch, Loss
from .registry import register
from .speech import SpeechModel, check_front_end, front_end, input_shape


@dataclass(frozen=True)
class AESpeechConfig(Config):
    input_shape: tuple[int, int] = input_shape()
    front_end: Any = front_end()
    code_dim: int = field(default=32, metadata={"help": "channels of the code per frame"})
    width: int = field(default=128, metadata={"help": "channels of the residual convolutions"})
    blocks: int = field(default=3, metadata={"help": "residual blocks in the encoder and in the decoder"})

    def validate(self) -> None:
        require(len(self.input_shape) == 2 and min(self.input_shape) >= 1,
                f"input_shape must be mel bands, frames; got {self.input_shape}")
        require(self.code_dim >= 1 and self.width >= 1 and self.blocks >= 0,
                "code_dim and width must be >= 1, blocks >= 0")
        check_front_end(self)


@register("ae-speech")
class AESpeech(SpeechModel):
    Config = AESpeechConfig

    def __init__(self, config: AESpeechConfig):
        super().__init__(config)
        m, ch = config.input_shape[0], config.width
        self.enc_in, self.enc = nn.Conv1d(m, ch, 1), ConvStack(ch, config.blocks)
        self.enc_out = nn.Conv1d(ch, config.code_dim, 1)
        self.dec_in, self.dec = nn.Conv1d(config.code_dim, ch, 1), ConvStack(ch, config.blocks)
        self.dec_out = nn.Conv1d(ch, m, 1)

    def content(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.enc_out(self.enc(self.enc_in(x) * mask[:, None], mask)) * mask[:, None]

    def decode(self, c: torch.Tensor, s, mask: torch.Tensor) -> torch.Tensor:
        return self.dec_out(self.dec(self.dec_in(c) * mask[:, None], mask))

    def loss(self, batch: Batch | torch.Tensor) -> Loss:
        x, mask = speech_input(self, batch, trim=True)
        x_hat = self.decode(self.content(x, mask), None, mask)
        recon = masked_sum((x - x_hat).abs(), mask)
        frames = mask.sum(1)
        return Loss(recon.mean(), {"recon_l1": recon.mean(), "recon_l1_per_frame": (recon / frames).mean()},
                    {"recon_l1": 1.0, "recon_l1_per_frame": 0.0})
