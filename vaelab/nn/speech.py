"""Blocks over mel frames (B, C, T) with a frame mask (B, T) of 1s on a clip's true frames:
statistics and sums never see the padding.

- :func:`masked_mean`, :func:`instance_norm`: per-channel mean / normalisation over the true
  frames of each clip (instance normalisation removes a clip's global channel statistics,
  which is where AdaIN-VC's content encoder drops the speaker).
- :class:`ConvStack`: 1-D residual convolutions along time (same length out as in).
- :func:`hop_mask`, :func:`hop_pool`, :func:`hop_repeat`: one code per run of r frames (the mean
  of its true frames) and back, a bottleneck in time.
- :func:`envelope`: each frame's log-mel spectrum smoothed along frequency (its first K DCT
  coefficients, the mel-cepstrum, mapped back): the formants kept, the harmonics' fine structure
  (the pitch) dropped.
- :func:`warp_bands`, :func:`warp_factors`, :func:`random_warp`: each clip's frequency axis scaled by a factor
  (vocal-tract length perturbation): the voice's formants and pitch move, what is said stays.
- :class:`AdaIN`: instance normalisation followed by a scale and shift predicted from a
  speaker vector (Huang & Belongie 2017; the AdaIN-VC decoder).
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-5


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, C): the mean of h (B, C, T) over each clip's true frames."""
    m = mask[:, None, :]
    return (h * m).sum(-1) / m.sum(-1).clamp_min(1.0)


def clip_stats(h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ, σ), each (B, C): every channel's mean and spread over a clip's true frames."""
    mu = masked_mean(h, mask)
    return mu, masked_mean((h - mu[..., None]) ** 2, mask).add(EPS).sqrt()


def instance_norm(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(h − μ) / σ per clip and channel over the true frames; padded frames come out 0."""
    mu, sd = clip_stats(h, mask)
    return (h - mu[..., None]) / sd[..., None] * mask[:, None, :]


def masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,): Σ over channels and true frames of values (B, C, T): the per-clip sum."""
    return (values * mask[:, None, :]).sum((1, 2))


def hop_mask(mask: torch.Tensor, r: int) -> torch.Tensor:
    """(B, ⌈T / r⌉): 1 where a run of r frames holds a true frame."""
    return mask if r == 1 else F.max_pool1d(mask[:, None], r, r, ceil_mode=True)[:, 0]


def hop_pool(h: torch.Tensor, mask: torch.Tensor, r: int) -> torch.Tensor:
    """(B, C, ⌈T / r⌉): the mean of h (B, C, T) over each run of r frames' true frames, 0 on padding."""
    if r == 1:
        return h * mask[:, None]
    count = F.avg_pool1d(mask[:, None], r, r, ceil_mode=True)
    return F.avg_pool1d(h * mask[:, None], r, r, ceil_mode=True) / count.clamp_min(1e-6)


def hop_repeat(c: torch.Tensor, mask: torch.Tensor, r: int) -> torch.Tensor:
    """Codes (B, C, ⌈T / r⌉) repeated over their r frames: (B, C, T), 0 on padding."""
    return c if r == 1 else c.repeat_interleave(r, dim=2)[:, :, :mask.shape[1]] * mask[:, None]


def envelope(x: torch.Tensor, k: int) -> torch.Tensor:
    """x (B, M, T) log-mel frames projected on the first k orthonormal DCT-II basis vectors along the
    M bands and back (liftering, as MFCCs keep the first coefficients): the spectral envelope."""
    return torch.einsum("nm,bmt->bnt", _lifter(x.shape[1], k).to(x), x)


@functools.lru_cache(maxsize=8)
def _lifter(m: int, k: int) -> torch.Tensor:
    """(M, M) float64 projection on the first k DCT-II basis vectors: symmetric, it keeps the k
    smoothest shapes of a frame (built once per size, not every step)."""
    n = torch.arange(m, dtype=torch.float64)
    basis = torch.cos(math.pi / m * (n[None, :] + 0.5) * n[:k, None]) * math.sqrt(2.0 / m)
    basis[0] /= math.sqrt(2.0)
    return basis.t() @ basis


def band_centres(settings: dict) -> torch.Tensor:
    """(n_mels,) float64: the centre frequency in Hz of each mel band of the front end ``settings``
    (librosa's Slaney mel scale, as :func:`vaelab.data.audio.log_mel` analyses)."""
    return torch.from_numpy(_band_centres(int(settings["n_mels"]), float(settings["fmin"]), float(settings["fmax"])))


@functools.lru_cache(maxsize=8)
def _band_centres(n_mels: int, fmin: float, fmax: float):
    import librosa

    return librosa.mel_frequencies(n_mels=n_mels + 2, fmin=fmin, fmax=fmax)[1:-1].astype("float64")


def warp_bands(x: torch.Tensor, alpha: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """x (B, M, T) log-mel frames with each clip's frequency axis scaled by α (B,): band i reads the
    spectrum at centres[i] / α, linearly between the two nearest bands, clamped at the edges (vocal-tract
    length perturbation, Jaitly & Hinton 2013: formants and harmonics move together, as in a longer
    or shorter vocal tract). ``centres`` (M,): the bands' centre frequencies, increasing."""
    c = centres.to(device=x.device, dtype=torch.float64)
    f = (c[None, :] / alpha.to(c)[:, None]).clamp(c[0], c[-1])                  # (B, M) frequency each band reads
    hi = torch.searchsorted(c, f.contiguous()).clamp(1, len(c) - 1)
    lo = hi - 1
    w = ((f - c[lo]) / (c[hi] - c[lo])).to(x.dtype)[..., None]
    frames = x.shape[2]
    return (torch.gather(x, 1, lo[..., None].expand(-1, -1, frames)) * (1 - w)
            + torch.gather(x, 1, hi[..., None].expand(-1, -1, frames)) * w)


def warp_factors(groups: torch.Tensor, a: float) -> torch.Tensor:
    """(B,) random α with ln α uniform within ±ln(1 + a), one α shared by all clips of a group
    (``groups`` (B,) integer ids, e.g. the speaker labels: one new voice per speaker)."""
    _, which = torch.unique(groups, return_inverse=True)
    bound = math.log1p(a)
    return torch.empty(int(which.max()) + 1, device=groups.device).uniform_(-bound, bound).exp()[which]


def random_warp(x: torch.Tensor, a: float, front_end: dict | None, groups: torch.Tensor | None = None) -> torch.Tensor:
    """x (B, M, T) with each clip, or each group of clips (``groups`` (B,) ids: one α per group), scaled
    along frequency by a random α, ln α uniform within ±ln(1 + a); x itself when a = 0. ``front_end``:
    the data's log-mel settings (the default front end's band edges where none are recorded)."""
    if a <= 0:
        return x
    from ..data.audio import FRONT_END

    groups = torch.arange(len(x)) if groups is None else groups
    bands = {**FRONT_END, "n_mels": x.shape[1], **(front_end or {})}
    return warp_bands(x, warp_factors(groups.to(x.device), a), band_centres(bands))


class ConvStack(nn.Module):
    """``blocks`` residual blocks h + conv(ReLU(conv(h))) of kernel ``kernel``, zeroed on padding
    after each block (so padded frames never leak into a clip's true frames), optionally
    instance-normalised after each block (``norm``)."""

    def __init__(self, channels: int, blocks: int, kernel: int = 5, norm: bool = False):
        super().__init__()
        pad = kernel // 2
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv1d(channels, channels, kernel, padding=pad), nn.ReLU(),
                          nn.Conv1d(channels, channels, kernel, padding=pad), nn.ReLU())
            for _ in range(blocks))
        self.norm = norm

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            h = (h + block(h)) * mask[:, None, :]
            if self.norm:
                h = instance_norm(h, mask)
        return h


class AdaIN(nn.Module):
    """γ(s) · IN(h) + β(s): a clip's channel statistics set from the speaker vector s."""

    def __init__(self, channels: int, speaker_dim: int):
        super().__init__()
        self.affine = nn.Linear(speaker_dim, 2 * channels)

    def forward(self, h: torch.Tensor, s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.affine(s).chunk(2, dim=1)
        return (instance_norm(h, mask) * (1 + gamma[..., None]) + beta[..., None]) * mask[:, None, :]


class AdaINDecoder(nn.Module):
    """Content (B, C, T) and a speaker vector (B, S) -> mel frames (B, M, T): ``blocks`` residual
    convolutions with AdaIN on s: ``norm`` "stream" normalises the whole stream after each block,
    h ← ReLU(AdaIN(h + conv(h))); "branch" (as the official AdaIN-VC code) only each block's branch,
    h ← h + ReLU(AdaIN(conv(h))), so the stream keeps the clip's own scale from the content;
    "branch-last" as branch, then the stream once after the last block, h ← ReLU(AdaIN(h)): the
    output's movement within the clip set by the speaker, the blocks' detail by the content."""

    def __init__(self, content_dim: int, speaker_dim: int, channels: int, blocks: int, n_mels: int,
                 kernel: int = 5, norm: str = "stream"):
        super().__init__()
        self.norm = norm
        pad = kernel // 2
        self.inp = nn.Conv1d(content_dim, channels, 1)
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv1d(channels, channels, kernel, padding=pad), nn.ReLU(),
                          nn.Conv1d(channels, channels, kernel, padding=pad)) for _ in range(blocks))
        self.adain = nn.ModuleList(AdaIN(channels, speaker_dim) for _ in range(blocks))
        if norm == "branch-last":  # only then: the other norms keep their state dicts
            self.last = AdaIN(channels, speaker_dim)
        self.out = nn.Conv1d(channels, n_mels, 1)

    def forward(self, c: torch.Tensor, s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.inp(c) * mask[:, None, :]
        for conv, adain in zip(self.convs, self.adain):
            if self.norm == "stream":
                h = torch.relu(adain(h + conv(h), s, mask))
            else:  # only the block's branch is normalised; the stream keeps its scale
                h = (h + torch.relu(adain(conv(h), s, mask))) * mask[:, None, :]
        if self.norm == "branch-last":
            h = torch.relu(self.last(h, s, mask))
        return self.out(h)


def speech_input(model, data, trim: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(x (B, M, T) float, frame mask (B, T)) of a batch for an audio ``model``: lengths from
    ``extras["lengths"]`` (every frame true when absent, e.g. one unpadded clip). ``trim``
    drops the frames that are padding in every clip of the batch (training time)."""
    from ..data.audio import frame_mask, silence_value
    from ..data.batch import Batch
    from ..errors import VaelabError

    x = data.x if isinstance(data, Batch) else data
    n_mels = model.config.input_shape[0]
    if x.dim() != 3 or x.shape[1] != n_mels:
        raise VaelabError(f"{model.name} takes log-mel spectrograms of {n_mels} mel bands (B, {n_mels}, frames), "
                          f"got shape {list(x.shape)}; give audio analysed by this model's front end")
    lengths = data.extras.get("lengths") if isinstance(data, Batch) else None
    if lengths is None:
        lengths = torch.full((x.shape[0],), x.shape[2], dtype=torch.int64, device=x.device)
    lengths = lengths.to(x.device)
    if trim and len(lengths):
        x = x[:, :, :max(int(lengths.max()), 1)]
    mask = frame_mask(lengths, x.shape[2])
    fe = getattr(model, "front_end", None) or {}
    silence = silence_value(fe) if "log_offset" in fe else 0.0
    return torch.where(mask[:, None, :] > 0, x.float(), silence), mask  # padding reads as silence, whatever it held
