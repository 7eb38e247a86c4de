"""``adain-vc``: one-shot voice conversion by separating speaker and content representations
with instance normalisation (Chou, Yeh & Lee 2019, "AdaIN-VC").

    content encoder   μ = E_c(x) (B, C, T), instance-normalised in every block (no affine), so a
                      clip's channel statistics, where the speaker lives, are removed
    speaker encoder   s = E_s(x) (B, S): convolutions, then the mean over the clip's true frames
    decoder           x̂ = D(z, s) with z = μ + ε, ε ~ N(0, I) while training (z = μ otherwise);
                      every block ends in adaptive instance normalisation γ(s)·IN(h) + β(s)
                      (``decoder_norm`` branch: only each block's residual branch, as the official code)

    L = λ_rec · Σ |x − x̂|  +  λ_kl · KL(N(μ, I) ‖ N(0, I)),   KL = ½ Σ μ²

both summed over a clip (mel bands or content channels × true frames), averaged over the
batch. ``noise_scale`` σ sets the fixed noise, z = μ + σε (the KL term stays ½ Σ μ², its constant
dropped); ``learned_sigma`` has the content encoder give each element's σ as the official code
does, z = μ + σε, KL = ½ Σ (σ² + μ² − 1 − ln σ²). No speaker label enters the loss. By default (``speaker_clip = other``) the labels pick,
for each clip, another clip of its speaker whose speaker vector decodes it while training: one
short clip's own vector also says what was said (the paper's ``own``). λ_kl rises linearly from 0
over the first ``kl_anneal_epochs`` (the paper: over its first 20,000 of 200,000 steps).

``content_warp`` a > 0 perturbs the content encoder's input while training: each clip's frequency
axis scaled by a random α (vocal-tract length perturbation), the information-perturbation idea of
NANSY (Choi et al. 2021) and ContentVec (Qian et al. 2022) in its simplest form. An extension beyond
the paper, off by default. ``voice_warp`` a > 0 warps whole clips instead, one α per speaker and
batch, the warped clip being also the target: data augmentation that turns the training speakers
into many voices (Jaitly & Hinton 2013), for speakers never heard in training.

``speaker_adversary`` W > 0 adds W · CE of a speaker classifier (:mod:`vaelab.nn.adversary`) that
reads each content channel's mean and spread over the clip through a gradient reversal: the
classifier learns the speaker, the content encoder is pushed to hide it (the labels then enter the
loss). The time mean alone would tell it nothing: μ is a 1×1 convolution of instance-normalised
units, so its mean over a clip is the same for every clip.

``adversarial`` W > 0 adds conversions to training (:mod:`vaelab.nn.critic`): each clip's content
decoded with the speaker vector of a clip by another speaker of the batch, x̃ = D(z, s_j), judged
frame by frame by a critic that tells real frames from converted ones and names their speaker
(least squares, with an auxiliary speaker classifier; the second stage of Chou et al. 2018 judges
conversions so). The model phase adds W · (Σ_t (D(x̃)_t − 1)² + Σ_t CE(speaker_t(x̃), k_j)), the
critic phase fits the critic on real clips against the conversions. Against the L1 term's
over-smoothed output and the source's voice left in it; needs speaker labels. W = 1 by default,
chosen on validation clips (docs/speech.md); 0 is the paper's reconstruction-only training.

Scaled down from the paper (official code: 80 mel bands at 22 kHz, c_h = 128, C = 128, S = 128,
six blocks with time subsampling 1,2,1,2,1,2 and a convolution bank; λ_rec = 10, λ_kl = 1 on
per-element means, Adam 5e-4, batch 128, 200,000 steps): here 64 bands at 8 kHz, no bank,
and no subsampling by default (the clips are short: 55 frames on average); ``hop`` r > 1 averages μ
over runs of r frames, one content code per run repeated for the decoder, a bottleneck in time in
place of the official strided encoder. Sizes settable. The paper's terms are
per-element means; on per-clip sums its 10:1 balance is λ_rec = 1, λ_kl = M / (5 C) (M mel bands,
C content channels; ½ in the KL): 64 / (5·32) = 0.4 at these sizes. The defaults (λ_kl = 0.02, the
speaker vector from another clip of the speaker, AdaIN on the decoder's branches, the critic at
W = 1) were chosen on validation clips (docs/speech.md);
``--profile paper`` keeps the paper's own-clip training and balance.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from ..config import Config, choice, require
from ..errors import VaelabError
from ..nn.adversary import SpeakerAdversary, data_speakers, speaker_labels
from ..nn.critic import FrameCritic, critic_terms, generator_terms
from ..nn.speech import (AdaINDecoder, ConvStack, clip_stats, envelope, hop_mask, hop_pool, hop_repeat, masked_mean,
                         masked_sum, random_warp, speech_input)
from .base import Batch, Loss, Phase
from .registry import register
from .speech import SpeechModel, check_front_end, front_end, input_shape


@dataclass(frozen=True)
class AdaINVCConfig(Config):
    input_shape: tuple[int, int] = input_shape()
    front_end: Any = front_end()
    content_dim: int = field(default=32, metadata={"help": "C, channels of the content code per frame"})
    speaker_dim: int = field(default=64, metadata={"help": "S, size of the utterance-level speaker vector"})
    width: int = field(default=128, metadata={"help": "channels of the convolutions (the paper: 128)"})
    blocks: int = field(default=3, metadata={"help": "residual blocks per network (the paper: 6)"})
    lambda_rec: float = field(default=1.0, metadata={"help": "λ_rec, weight of the L1 reconstruction term"})
    lambda_kl: float = field(default=0.02, metadata={
        "help": "λ_kl, weight of the KL on the content code (chosen on validation clips; the paper's 10:1 balance "
                "on sums is M / (5 C): 0.4 at C = 32, see docs)"})
    kl_anneal_epochs: float = field(default=2.0, metadata={
        "help": "epochs over which λ_kl rises linearly from 0 (0 = full weight from the start)"})
    noise_scale: float = field(default=1.0, metadata={
        "help": "σ of the fixed noise on the content code while training, z = μ + σ·ε (the paper: 1; 0: none)"})
    learned_sigma: bool = field(default=False, metadata={
        "help": "the content encoder also gives each element's σ, z = μ + σ·ε with the KL of N(μ, σ²) from "
                "N(0, I), as the official code does (replaces noise_scale)"})
    decoder_norm: str = field(default="branch", metadata={
        "help": "where the decoder's AdaIN acts: branch (each block's branch only, as the official code: the "
                "stream keeps the clip's own scale; chosen on validation clips), stream (the whole residual "
                "stream after each block) or branch-last (branch, then the stream once after the last block: the "
                "output's movement within the clip set by the speaker)"})
    speaker_clip: str = field(default="other", metadata={
        "help": "the clip the speaker vector is taken from while training: own (the paper) or other (another "
                "clip of the same speaker in the batch, so it cannot carry what this clip says)"})
    hop: int = field(default=1, metadata={
        "help": "frames per content code: μ is averaged over runs of this many frames and each code repeated "
                "over its frames for the decoder, a bottleneck in time (the paper subsamples 8×; 1 = a code "
                "per 8 ms frame)"})
    content_lifter: int = field(default=0, metadata={
        "help": "K > 0: the content encoder reads each frame's spectrum smoothed along frequency, its first K "
                "DCT coefficients (the mel-cepstrum, as MFCCs) mapped back: the envelope that says what is said, "
                "without the harmonics that carry the pitch (0 = the log-mel frames as they are)"})
    content_warp: float = field(default=0.0, metadata={
        "help": "a > 0: while training, the content encoder reads each clip with its frequency axis scaled by a "
                "random α, ln α uniform within ±ln(1 + a) (vocal-tract length perturbation): the voice's formants "
                "and pitch move, what is said does not, so the content code cannot tell the speaker by them; the "
                "speaker encoder and the reconstruction target see the clip as it is (0 = off)"})
    voice_warp: float = field(default=0.0, metadata={
        "help": "a > 0: while training, all of a speaker's clips in a batch are scaled along frequency by one "
                "random α for that speaker, ln α uniform within ±ln(1 + a) (vocal-tract length perturbation as data "
                "augmentation): new voices from the training speakers, for a speaker encoder that must serve "
                "voices it never heard; the reconstruction target is the warped clip (0 = off)"})
    speaker_adversary: float = field(default=0.0, metadata={
        "help": "W, weight of an adversarial speaker classifier on the content code's per-clip mean and spread, "
                "behind a gradient reversal: the encoder is pushed to hide the speaker (needs speaker labels; "
                "0 = off, no classifier)"})

    adversarial: float = field(default=1.0, metadata={
        "help": "W > 0: while training, each clip's content is also decoded in the voice of a clip by another speaker, "
                "and a critic of mel frames, trained beside the model, judges these conversions: the model is pushed "
                "by W times their real/fake and target-speaker terms, summed over their frames (an LSGAN with an "
                "auxiliary speaker classifier, as Chou et al. 2018 judge conversions; needs speaker labels; W = 1 "
                "chosen on validation clips; 0 = off, no critic, the paper's reconstruction alone)"})
    critic_lr_scale: float = field(default=1.0, metadata={
        "help": "the critic's learning rate as a multiple of --lr (with --adversarial)"})
    critic_norm: str = field(default="spectral", metadata={
        "help": "the critic's layers: spectral (each weight divided by its largest singular value, Miyato et al. "
                "2018; the default: without it a default run diverged after 21 epochs) or none (with --adversarial)"})

    # settings whose default changed: a saved record lacking one was trained with this value (others read as default)
    recorded_before: ClassVar[dict] = {"decoder_norm": "stream", "adversarial": 0.0, "critic_norm": "none"}

    def validate(self) -> None:
        require(len(self.input_shape) == 2 and min(self.input_shape) >= 1,
                f"input_shape must be mel bands, frames; got {self.input_shape}")
        require(min(self.content_dim, self.speaker_dim, self.width) >= 1 and self.blocks >= 1,
                "content_dim, speaker_dim, width and blocks must be >= 1")
        require(self.lambda_rec > 0 and self.lambda_kl >= 0 and self.kl_anneal_epochs >= 0,
                "lambda_rec must be > 0, lambda_kl and kl_anneal_epochs >= 0")
        require(self.noise_scale >= 0, f"noise_scale must be >= 0; got {self.noise_scale}")
        require(not (self.learned_sigma and self.noise_scale != 1.0),
                "learned_sigma replaces noise_scale: give one of them")
        choice("speaker clip", self.speaker_clip, ("own", "other"))
        require(0 <= self.content_warp < 1 and 0 <= self.voice_warp < 1,
                f"content_warp and voice_warp must lie in [0, 1), got {self.content_warp}, {self.voice_warp}")
        require(self.speaker_adversary >= 0, f"speaker_adversary must be >= 0; got {self.speaker_adversary}")
        require(self.adversarial >= 0 and self.critic_lr_scale > 0,
                f"adversarial must be >= 0 and critic_lr_scale > 0; got {self.adversarial}, {self.critic_lr_scale}")
        require(self.hop >= 1, f"hop must be >= 1, got {self.hop}")
        require(0 <= self.content_lifter <= self.input_shape[0],
                f"content_lifter must lie in 0..{self.input_shape[0]} (the mel bands), got {self.content_lifter}")
        choice("decoder norm", self.decoder_norm, ("stream", "branch", "branch-last"))
        choice("critic norm", self.critic_norm, ("spectral", "none"))
        check_front_end(self)


@register("adain-vc")
class AdaINVC(SpeechModel):
    Config = AdaINVCConfig

    def __init__(self, config: AdaINVCConfig):
        super().__init__(config)
        m, ch = config.input_shape[0], config.width
        self.content_in, self.content_net = nn.Conv1d(m, ch, 5, padding=2), ConvStack(ch, config.blocks, norm=True)
        self.content_out = nn.Conv1d(ch, config.content_dim, 1)
        if config.learned_sigma:  # ln σ² per element, starting at σ = 1 (the fixed noise's)
            self.content_log_var = nn.Conv1d(ch, config.content_dim, 1)
            nn.init.zeros_(self.content_log_var.weight)
            nn.init.zeros_(self.content_log_var.bias)
        self.speaker_in, self.speaker_net = nn.Conv1d(m, ch, 5, padding=2), ConvStack(ch, config.blocks)
        self.speaker_out = nn.Linear(ch, config.speaker_dim)
        self.decoder = AdaINDecoder(config.content_dim, config.speaker_dim, ch, config.blocks, m,
                                    norm=config.decoder_norm)
        self.kl_scale = 1.0
        if config.speaker_adversary > 0:  # only then: a run without it keeps its state dict
            self.adversary = SpeakerAdversary(2 * config.content_dim, data_speakers(config.front_end))
        if config.adversarial > 0:  # only then, as the adversary
            self.critic = FrameCritic(m, data_speakers(config.front_end, "adversarial"), ch,
                                      spectral=config.critic_norm == "spectral")

    def content(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """μ = E_c(x): instance-normalised convolutions, one per run of hop frames repeated over
        its frames, (B, C, T)."""
        r = self.config.hop
        return hop_repeat(hop_pool(self.content_out(self._content_hidden(x, mask)), mask, r), mask, r)

    def _content_hidden(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.config.content_lifter:
            x = envelope(x, self.config.content_lifter)
        h = torch.relu(self.content_in(x)) * mask[:, None]
        return self.content_net(h, mask)

    def _perturbed(self, x: torch.Tensor) -> torch.Tensor:
        """x with each clip's frequency axis scaled by its own random α (``content_warp``; x itself when 0)."""
        return random_warp(x, self.config.content_warp, self.front_end)

    def _new_voices(self, x: torch.Tensor, batch) -> torch.Tensor:
        """x with every speaker's clips scaled along frequency by one random α per speaker (``voice_warp``):
        the batch's speakers become new voices, the same for all of a speaker's clips (x itself when 0;
        unlabelled clips get a voice each)."""
        speakers = batch.extras.get("speaker") if isinstance(batch, Batch) else None
        return random_warp(x, self.config.voice_warp, self.front_end, speakers)

    def speaker(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """s = E_s(x): convolutions averaged over the clip's true frames, (B, S)."""
        h = torch.relu(self.speaker_in(x)) * mask[:, None]
        return self.speaker_out(masked_mean(self.speaker_net(h, mask), mask))

    def decode(self, c: torch.Tensor, s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.decoder(c, s, mask)

    def schedule(self, epoch: float) -> None:
        anneal = self.config.kl_anneal_epochs
        self.kl_scale = 1.0 if anneal <= 0 else min(1.0, epoch / anneal)

    def loss(self, batch: Batch | torch.Tensor) -> Loss:
        return self._loss(batch, self._codes(batch))

    def _codes(self, batch: Batch | torch.Tensor) -> Codes:
        x, mask = speech_input(self, batch, trim=True)
        if self.training:
            x = self._new_voices(x, batch)
        h, r = self._content_hidden(self._perturbed(x) if self.training else x, mask), self.config.hop
        low = hop_mask(mask, r)                                      # the content code's frames
        mu = hop_pool(self.content_out(h), mask, r)
        if self.config.learned_sigma:
            log_var = hop_pool(self.content_log_var(h), mask, r)
            sigma = torch.exp(0.5 * log_var)
            kl_elements = log_var.exp() + mu.square() - 1 - log_var
        else:
            sigma, kl_elements = self.config.noise_scale, mu.square()
        z = mu + sigma * torch.randn_like(mu) * low[:, None] if self.training else mu
        return Codes(x, mask, low, mu, hop_repeat(z, mask, r), kl_elements, self.speaker(x, mask))

    def _loss(self, batch, c: Codes) -> Loss:
        s = c.s
        if self.training and self.config.speaker_clip == "other":
            s = s[same_speaker_partner(batch)]
        x_hat = self.decode(c.z, s, c.mask)
        per_clip = masked_sum((c.x - x_hat).abs(), c.mask)
        recon, kl = per_clip.mean(), 0.5 * masked_sum(c.kl_elements, c.low).mean()
        w = {"recon_l1": self.config.lambda_rec, "kl": self.config.lambda_kl * self.kl_scale, "recon_l1_per_frame": 0.0}
        terms = {"recon_l1": recon, "kl": kl, "recon_l1_per_frame": (per_clip / c.mask.sum(1)).mean()}
        total = w["recon_l1"] * recon + w["kl"] * kl
        if self.config.speaker_adversary > 0:
            # μ's time mean is the same for every clip (instance-normalised hidden units under a 1×1 conv),
            # so the adversary reads each channel's mean and spread over the clip's true frames
            terms["speaker_adv"], terms["speaker_adv_accuracy"] = self.adversary.term(
                torch.cat(clip_stats(c.mu, c.low), 1), batch)
            w |= {"speaker_adv": self.config.speaker_adversary, "speaker_adv_accuracy": 0.0}
            total = total + w["speaker_adv"] * terms["speaker_adv"]
        return Loss(total, terms, w)

    # -- the adversarial conversions (``adversarial`` > 0) ------------------------------------------
    def phases(self) -> dict[str, Phase]:
        if self.config.adversarial <= 0:
            return super().phases()
        model = lambda: [p for n, p in self.named_parameters() if not n.startswith("critic.")]  # noqa: E731
        return {"model": Phase(model, self.generator_loss),
                "critic": Phase(self.critic.parameters, self.critic_loss, lr_scale=self.config.critic_lr_scale,
                                betas=(0.5, 0.999))}

    def _conversions(self, batch, c: Codes) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x̃, k̃, k): each clip's content in the voice of a clip by another speaker of the batch, that
        speaker, and the clip's own."""
        speakers = speaker_labels(batch, self.critic.speakers, "adversarial")
        partner = other_speaker_partner(speakers)
        return self.decode(c.z, c.s[partner], c.mask), speakers[partner], speakers

    def generator_loss(self, batch: Batch | torch.Tensor) -> Loss:
        """The model's loss plus W · the critic's real/fake and target-speaker terms on its conversions."""
        c = self._codes(batch)
        loss = self._loss(batch, c)
        fake, targets, _ = self._conversions(batch, c)
        adv, w = generator_terms(self.critic, fake, targets, c.mask), self.config.adversarial
        total = loss.total + w * (adv["adv_real_fake"] + adv["adv_speaker"])
        return Loss(total, loss.terms | adv,
                    loss.weights | {"adv_real_fake": w, "adv_speaker": w, "adv_speaker_accuracy": 0.0})

    def critic_loss(self, batch: Batch | torch.Tensor) -> Loss:
        """The critic's terms on the batch's real clips against the model's conversions (no gradient to the model)."""
        with torch.no_grad():
            c = self._codes(batch)
            fake, _, speakers = self._conversions(batch, c)
        terms = critic_terms(self.critic, c.x, fake, speakers, c.mask)
        return Loss(terms["critic_real_fake"] + terms["critic_speaker"], terms,
                    {"critic_real_fake": 1.0, "critic_speaker": 1.0, "critic_speaker_accuracy": 0.0})


class Codes(NamedTuple):
    """One pass of the encoders: the (possibly trimmed) input and its mask, the content code's
    frames, μ, the sampled code repeated to the frames, the KL's elements, each clip's speaker vector."""
    x: torch.Tensor
    mask: torch.Tensor
    low: torch.Tensor
    mu: torch.Tensor
    z: torch.Tensor
    kl_elements: torch.Tensor
    s: torch.Tensor


def other_speaker_partner(speakers: torch.Tensor) -> torch.Tensor:
    """For each clip, a random clip of the batch by another speaker (itself if the batch has one speaker)."""
    n = len(speakers)
    other = speakers[:, None] != speakers[None, :]
    score = torch.rand(n, n, device=speakers.device).masked_fill(~other, -1.0)
    score[torch.arange(n), torch.arange(n)] = torch.where(other.any(1), -2.0, 0.5)
    return score.argmax(1)


def same_speaker_partner(batch) -> torch.Tensor:
    """For each clip, a random other clip of the batch by the same speaker (itself if it has none).
    The speaker labels choose the pair only; they enter no loss."""
    speakers = batch.extras.get("speaker") if isinstance(batch, Batch) else None
    if speakers is None:
        raise VaelabError("speaker_clip other needs each clip's speaker (extras['speaker']): train on fsdd or wav:FOLDER")
    speakers = speakers.to(batch.x.device)
    n = len(speakers)
    same = (speakers[:, None] == speakers[None, :]) & ~torch.eye(n, dtype=torch.bool, device=speakers.device)
    score = torch.rand(n, n, device=speakers.device).masked_fill(~same, -1.0)
    score[torch.arange(n), torch.arange(n)] = torch.where(same.any(1), -2.0, 0.5)
    return score.argmax(1)
