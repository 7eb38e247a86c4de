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

Options (the paper's model: ``--no-input-norm``, the others at their defaults; input_norm is on by
default because it keeps the digit in the codes and takes part of the voice out of them, measured
on the validation clips: docs/speech.md):

- ``speaker none``: no speaker part, s = 0 and x̂ = D(c): a plain VQ-VAE over the mel frames,
  the reference for how much of the voice the codes hold when nothing else can carry it.
- ``input_norm``: the encoder reads x' = (x − mean_t x) / std_t x per mel band over the clip's
  true frames (a voice's steady spectrum removed before the codes are made); those statistics
  reach the decoder through the speaker vector, s = mean_t (z − sg[c]) + W [mean_t x; ln std_t x].
- ``hop`` r: one code per r frames: z averaged over each run of r true frames before quantization,
  each code repeated over its r frames for the decoder (VQ-VAE's speech codes are coarser in time
  than the frames, van den Oord et al. 2017).
- ``instance_norm``: each encoder block's channels instance-normalised over the clip (as VQVC+,
  Wu, Chen & Lee 2020).
- ``content_warp`` a > 0: while training, the codes are made from the clip warped along frequency by
  a random α (vocal-tract length perturbation, as in NANSY and ContentVec's information
  perturbation); the speaker vector from the clip as it is. An extension beyond the paper.
- ``speaker_adversary`` W > 0: adds W · CE of a speaker classifier (:mod:`vaelab.nn.adversary`)
  reading the clip's soft code histogram, mean_t softmax_k(−κ‖z_t − e_k‖²), through a gradient
  reversal: the classifier learns the speaker, the encoder is pushed to make the histogram hide it.

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
from ..nn.adversary import SpeakerAdversary, data_speakers
from ..nn.quantizer import VectorQuantizer, squared_distances
from ..nn.speech import (ConvStack, clip_stats, hop_mask, hop_pool, hop_repeat, instance_norm, masked_mean, masked_sum,
                         random_warp, speech_input)
from .base import Batch, Loss
from .registry import register
from .speech import SpeechModel, check_front_end, front_end, input_shape

# κ of the speaker adversary's soft code histogram, softmax_k(−κ‖z − e_k‖²) (see VQVC.soft_histogram)
HISTOGRAM_SHARPNESS = 30.0


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
    speaker: str = field(default="residual", metadata={
        "help": "the speaker part: residual (the utterance mean of z − sg[c], VQVC) or none (a plain VQ-VAE "
                "over the mel frames, x̂ = D(c): no speaker slot, its conversion is its reconstruction)"})
    input_norm: bool = field(default=True, metadata={
        "help": "normalise each mel band of the encoder's input to zero mean and unit variance over the clip's "
                "true frames, so the codes never see a voice's steady spectrum; the band means and spreads go "
                "to the speaker vector through a linear map (needs speaker residual)"})
    hop: int = field(default=1, metadata={
        "help": "frames per code: the encoder's output is averaged over runs of this many frames before "
                "quantization and each code is repeated over its frames for the decoder (1 = a code per 8 ms frame)"})
    instance_norm: bool = field(default=False, metadata={
        "help": "instance-normalise the encoder's channels after each block (as VQVC+), removing each clip's "
                "channel means and spreads before quantization"})
    content_warp: float = field(default=0.0, metadata={
        "help": "a > 0: while training, the codes are made from each clip with its frequency axis scaled by a "
                "random α, ln α uniform within ±ln(1 + a) (vocal-tract length perturbation): formants and pitch "
                "move, what is said does not, so the codes cannot tell the voice by them; the speaker vector and "
                "the reconstruction target come from the clip as it is (0 = off)"})
    speaker_adversary: float = field(default=0.0, metadata={
        "help": "W, weight of an adversarial speaker classifier on the clip's soft code histogram, behind a "
                "gradient reversal: the encoder is pushed to hide the speaker (needs speaker labels; 0 = off, "
                "no classifier)"})

    def validate(self) -> None:
        require(len(self.input_shape) == 2 and min(self.input_shape) >= 1,
                f"input_shape must be mel bands, frames; got {self.input_shape}")
        require(self.codebook_size >= 2 and self.code_dim >= 1 and self.width >= 1 and self.blocks >= 0,
                "codebook_size must be >= 2, code_dim and width >= 1, blocks >= 0")
        require(self.hop >= 1, f"hop must be >= 1, got {self.hop}")
        require(self.beta >= 0 and self.revive_after >= 0, "beta and revive_after must be >= 0")
        require(self.speaker_adversary >= 0, f"speaker_adversary must be >= 0; got {self.speaker_adversary}")
        require(0 <= self.content_warp < 1, f"content_warp must lie in [0, 1), got {self.content_warp}")
        require(not (self.content_warp and self.speaker == "none"),
                "content_warp needs speaker residual: with speaker none the codes must also carry the voice")
        require(self.speaker in ("residual", "none"), f"speaker must be one of: residual, none; got {self.speaker!r}")
        require(not (self.input_norm and self.speaker == "none"),
                "input_norm needs speaker residual: the clip's band statistics it removes come back only "
                "through the speaker vector: give --no-input-norm with --speaker none")
        require(not self.instance_norm or self.blocks >= 1, "instance_norm acts after the encoder's blocks: "
                "give blocks >= 1")
        check_front_end(self)


@register("vq-vc")
class VQVC(SpeechModel):
    Config = VQVCConfig

    def __init__(self, config: VQVCConfig):
        super().__init__(config)
        m, ch, d = config.input_shape[0], config.width, config.code_dim
        self.enc_in, self.enc, self.enc_out = nn.Conv1d(m, ch, 5, padding=2), \
            ConvStack(ch, config.blocks, norm=config.instance_norm), nn.Conv1d(ch, d, 1)
        # the band means and log-spreads input_norm removes, mapped into the speaker vector
        self.stats = nn.Linear(2 * m, d) if config.input_norm else None
        self.quantizer = VectorQuantizer(config.codebook_size, d, beta=config.beta, kmeans_init=True,
                                         revive_after=config.revive_after)
        self.dec_in, self.dec, self.dec_out = nn.Conv1d(d, ch, 5, padding=2), ConvStack(ch, config.blocks), \
            nn.Conv1d(ch, m, 1)
        if config.speaker_adversary > 0:  # only then: a run without it keeps its state dict
            self.adversary = SpeakerAdversary(config.codebook_size, data_speakers(config.front_end))

    def code_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """(B, ⌈T / hop⌉): 1 where a run of hop frames holds a true frame."""
        return hop_mask(mask, self.config.hop)

    def frames(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """z = E(x), one per run of hop frames (the mean over its true frames), each normalised to
        unit length: (B, D, ⌈T / hop⌉), 0 on padding."""
        if self.config.input_norm:
            x = instance_norm(x, mask)
        h = torch.relu(self.enc_in(x)) * mask[:, None]
        z = self.enc_out(self.enc(h, mask)) * mask[:, None]
        return F.normalize(hop_pool(z, mask, self.config.hop), dim=1) * self.code_mask(mask)[:, None]

    def _up(self, c: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Codes (B, D, T') repeated over their hop frames: (B, D, T), 0 on padding."""
        return hop_repeat(c, mask, self.config.hop)

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

    def soft_histogram(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, K): each clip's mean over its true code frames of softmax_k(−κ‖z − e_k‖²), the
        differentiable counterpart of its code histogram (the codebook held fixed: only z moves).
        The codes are unit vectors, so ‖z − e‖² lies in [0, 4]: at κ = 1 each frame's shares differ
        by at most a factor e⁴ and the histogram is far flatter than the hard one; κ =
        HISTOGRAM_SHARPNESS brings it near the hard assignment while keeping a gradient near the
        codes' boundaries."""
        b, d, t = z.shape
        dist = squared_distances(z.transpose(1, 2).reshape(-1, d), self.quantizer.codebook.detach())
        p = torch.softmax(-HISTOGRAM_SHARPNESS * dist, 1).view(b, t, -1).transpose(1, 2)
        return masked_mean(p, mask)

    def content(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self._up(self.quantize(self.frames(x, mask), self.code_mask(mask))[0], mask)

    def speaker(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """s = the utterance mean of z − sg[c] over the true frames, (B, D) (None with speaker none)."""
        z, low = self.frames(x, mask), self.code_mask(mask)
        return self._speaker(x, z, self.quantize(z, low)[0], mask, low)

    def _speaker(self, x, z, c, mask, low):
        """s from the clip x, its codes z and their quantization c (code mask ``low``); with
        input_norm plus W [mean_t x; ln std_t x], the statistics the encoder's input lost."""
        if self.config.speaker == "none":
            return None
        s = masked_mean(z - c.detach(), low)
        if self.stats is not None:
            mu, sd = clip_stats(x, mask)
            s = s + self.stats(torch.cat([mu, sd.log()], 1))
        return s

    def decode(self, c: torch.Tensor, s: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
        h = c if s is None else c + s[..., None]
        h = torch.relu(self.dec_in(h * mask[:, None])) * mask[:, None]
        return self.dec_out(self.dec(h, mask))

    @torch.no_grad()
    def frame_codes(self, data) -> torch.Tensor:
        """(B, ⌈T / hop⌉) code indices of each clip (one per hop frames), −1 on padding."""
        x, mask = speech_input(self, data)
        return self.quantize(self.frames(x, mask), self.code_mask(mask))[1]

    def loss(self, batch: Batch | torch.Tensor) -> Loss:
        x, mask = speech_input(self, batch, trim=True)
        warp = self.training and self.config.content_warp > 0
        z, low = self.frames(random_warp(x, self.config.content_warp, self.front_end) if warp else x, mask), \
            self.code_mask(mask)
        c, _, codebook, commitment = self.quantize(z, low)
        if warp:  # the speaker vector from the clip as it is: its own codes, looked up without training the book
            z0 = self.frames(x, mask)
            with torch.no_grad():
                c0 = self.quantize(z0, low)[0]
            s = self._speaker(x, z0, c0, mask, low)
        else:
            s = self._speaker(x, z, c, mask, low)
        per_clip = masked_sum((x - self.decode(self._up(c, mask), s, mask)).abs(), mask)
        recon, codebook, commitment = per_clip.mean(), codebook.mean(), commitment.mean()
        w = {"recon_l1": 1.0, "codebook": 1.0, "commitment": self.config.beta, "recon_l1_per_frame": 0.0}
        terms = {"recon_l1": recon, "codebook": codebook, "commitment": commitment,
                 "recon_l1_per_frame": (per_clip / mask.sum(1)).mean()}
        total = recon + codebook + self.config.beta * commitment
        if self.config.speaker_adversary > 0:
            terms["speaker_adv"], terms["speaker_adv_accuracy"] = self.adversary.term(self.soft_histogram(z, low), batch)
            w |= {"speaker_adv": self.config.speaker_adversary, "speaker_adv_accuracy": 0.0}
            total = total + w["speaker_adv"] * terms["speaker_adv"]
        return Loss(total, terms, w)

    def epoch_figures(self) -> dict[str, float]:
        return self.quantizer.epoch_figures()
