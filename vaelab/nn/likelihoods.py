"""Decoder likelihoods p(x|z) over images in [0, 1].

A likelihood turns the decoder's raw output into a distribution. ``log_prob`` is the
fast path used by losses and the NLL estimator (sum over data dimensions, one value
per example); ``distribution`` gives the ``torch.distributions`` object users inspect.
All densities are normalised, so Gaussian NLLs are comparable across σ.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import distributions as td

from ..config import choice
from ..errors import VaelabError
from .init import clipped_logit

LIKELIHOODS = ("bernoulli", "gaussian", "gaussian-learned", "gaussian-real")
# Discrete likelihoods for 8-bit images, for the families that offer them (vqvae): a separate
# tuple so the families validating against LIKELIHOODS keep their choices.
DISCRETE_8BIT = ("discretized-logistic",)
BINS = 256
LOG_SIGMA_RANGE = (-7.0, 2.0)
ROW_BLOCK = 1024


def _sum_data(t: torch.Tensor) -> torch.Tensor:
    """Sum over the image dimensions (C, H, W); leading batch/sample dims stay."""
    return t.sum((-3, -2, -1))


def _softplus_row_sums(v: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """Σ_j softplus(v_ij) per row, overwriting v: Σ max(v, 0) − log Π σ(|v|).

    softplus(v) = max(v, 0) + log(1 + e^−|v|) and log(1 + e^−|v|) = −log σ(|v|). Each σ(|v|)
    lies in [½, 1], so products over groups of ≤ 64 columns cannot underflow float32: one
    sigmoid per element and one log per group replace softplus's exp + log1p, with the
    same accuracy. ``scratch`` (same shape) avoids allocating in the hot loop.
    """
    rows, cols = v.shape
    group = max(g for g in range(1, 65) if cols % g == 0)
    positive = torch.clamp_min(v, 0, out=scratch).sum(-1)
    factors = v.abs_().sigmoid_().view(rows, cols // group, group).prod(-1)
    return positive - factors.log_().sum(-1)


class _Likelihood:
    #: the decoder output whose mean is a given value (pixels: the clipped logit)
    output_for_mean = staticmethod(clipped_logit)

    def log_prob_samples(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z_i) for out (B, k, C', H, W) and x (B, C, H, W): shape (B, k)."""
        return self.log_prob(out, x.unsqueeze(1))

    def nll_sum(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """−Σ log p(x|out) over the whole batch."""
        return -self.log_prob(out, x).sum()


class _BernoulliNLLSum(torch.autograd.Function):
    """Σ softplus(l) − x·l over a whole batch, with the gradient σ(l) − x written directly:
    fewer passes over memory than the generic BCE graph (this is the training hot path)."""

    @staticmethod
    def forward(ctx, logits, x):
        ctx.save_for_backward(logits, x)
        return F.softplus(logits).sum() - torch.dot(logits.reshape(-1), x.reshape(-1))

    @staticmethod
    def backward(ctx, grad):
        logits, x = ctx.saved_tensors
        return torch.sigmoid(logits).sub_(x).mul_(grad), None


class Bernoulli(_Likelihood):
    """Bernoulli with logits: the binarized-MNIST likelihood of the VAE/IWAE papers."""

    params_per_channel = 1

    def nll_sum(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """−Σ log p(x|out) over the whole batch (same shapes)."""
        if out.shape != x.shape or x.requires_grad:
            return -self.log_prob(out, x).sum()
        return _BernoulliNLLSum.apply(out, x)

    def log_prob(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(out, x.expand_as(out), reduction="none")
        return -_sum_data(bce)

    def log_prob_samples(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z_i) for out (B, k, C, H, W) and x (B, C, H, W): x·l − Σ softplus(l), with
        x·l as one batched matrix-vector product (the importance-sampling hot path)."""
        b, k = out.shape[:2]
        logits = out.reshape(b, k, -1)
        xl = torch.bmm(logits, x.reshape(b, -1, 1).to(logits.dtype)).squeeze(-1)
        return xl - F.softplus(logits).sum(-1)

    def log_prob_linear(self, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                        x: torch.Tensor) -> torch.Tensor:
        """log p(x|z_i) when the logits are ``h_i Wᵀ + b``: h (B, k, F), x (B, C, H, W); (B, k).

        For binary x, log p = −Σ softplus(v) with v = (1 − 2x)·l, and the sign is folded
        into W and b per image, so one GEMM yields v directly; the softplus sum is then
        computed in place (see ``_softplus_row_sums``). Hidden units that are exactly zero
        for all of an image's samples (common after ReLU) are dropped from the GEMM, which
        changes nothing but the work. This is the hot path of the 5000-sample NLL;
        non-binary x falls back to the plain formula.
        """
        b, k = h.shape[:2]
        flat = x.reshape(b, -1).to(h.dtype)
        if not torch.equal(flat, flat.round()):
            out = F.linear(h, weight, bias).view(b, k, *x.shape[1:])
            return self.log_prob_samples(out, x)
        sign = 1.0 - 2.0 * flat
        result = torch.empty(b, k, dtype=h.dtype, device=h.device)
        rows = min(k, ROW_BLOCK)
        v_buf = torch.empty(rows, weight.shape[0], dtype=h.dtype, device=h.device)
        scratch = torch.empty_like(v_buf)
        weight_t = weight.t().contiguous()  # (F, D): hidden units as rows
        ones = torch.ones(k, dtype=h.dtype, device=h.device)
        for i in range(b):
            h_t = h[i].t()  # (F, k); rows are contiguous when h is a transposed layout
            w_t = weight_t
            if bool(h_t.min() >= 0):  # ReLU-like: a unit is off for all samples iff its row sums to 0
                idx = torch.mv(h_t, ones).nonzero().squeeze(1)
                if idx.numel() < h_t.shape[0]:
                    h_t, w_t = h_t.index_select(0, idx), weight_t.index_select(0, idx)
            w_t, c = w_t * sign[i], bias * sign[i]
            for j in range(0, k, ROW_BLOCK):  # blocks keep v in cache for the elementwise passes
                hb = h_t[:, j:j + ROW_BLOCK].t()
                v = torch.addmm(c, hb, w_t, out=v_buf[:hb.shape[0]])
                result[i, j:j + ROW_BLOCK] = -_softplus_row_sums(v, scratch[:hb.shape[0]])
        return result

    def distribution(self, out: torch.Tensor) -> td.Distribution:
        return td.Independent(td.Bernoulli(logits=out), 3)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out)


class FixedGaussian(_Likelihood):
    """N(x; sigmoid(out), σ²I) with σ fixed: −log p = ‖x − μ‖²/(2σ²) + D·log(σ√(2π)),
    the MSE form of the lectures with its constant kept."""

    params_per_channel = 1

    def __init__(self, sigma: float):
        self.sigma = sigma

    def log_prob(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        d = x.shape[-3:].numel()
        sq = _sum_data((x - torch.sigmoid(out)).square())
        return -0.5 * sq / self.sigma**2 - d * (math.log(self.sigma) + 0.5 * math.log(2 * math.pi))

    def distribution(self, out: torch.Tensor) -> td.Distribution:
        mu = torch.sigmoid(out)
        return td.Independent(td.Normal(mu, torch.full_like(mu, self.sigma)), 3)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out)


class LearnedGaussian(_Likelihood):
    """N(x; sigmoid(m), exp(s)²) with a per-pixel log σ predicted by the decoder
    (channels doubled: means first, then log σ, clamped to a safe range)."""

    params_per_channel = 2

    def _split(self, out: torch.Tensor):
        m, s = out.chunk(2, dim=-3)
        return torch.sigmoid(m), s.clamp(*LOG_SIGMA_RANGE)

    def log_prob(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        mu, log_sigma = self._split(out)
        z = (x - mu) * torch.exp(-log_sigma)
        return -_sum_data(0.5 * z.square() + log_sigma + 0.5 * math.log(2 * math.pi))

    def distribution(self, out: torch.Tensor) -> td.Distribution:
        mu, log_sigma = self._split(out)
        return td.Independent(td.Normal(mu, log_sigma.exp()), 3)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return self._split(out)[0]


class RealGaussian(LearnedGaussian):
    """N(x; m, exp(s)²) with an unbounded mean and a per-element log σ from the decoder: for
    real-valued data, such as an earlier stage's codes (M1 + M2's p(z1|y, z2)), which a
    sigmoid mean, made for pixels in [0, 1], could not reach."""

    output_for_mean = staticmethod(lambda mean: mean)

    def _split(self, out: torch.Tensor):
        m, s = out.chunk(2, dim=-3)
        return m, s.clamp(*LOG_SIGMA_RANGE)


class DiscretizedLogistic(_Likelihood):
    """A normalised distribution over the 256 grey levels k/255 of an 8-bit sub-pixel: a logistic
    with location μ and scale s, integrated over each level's bin [k/255 − ½/255, k/255 + ½/255],
    the first and last bins open to −∞ and +∞ (so the probabilities sum to 1). The decoder
    predicts μ and log s per sub-pixel (channels doubled: locations first, then log s, clamped
    to a safe range); log p(x|z) is a log-probability in nats, so bits/dim are honest. Pixels
    must be 8-bit levels k/255 (a check refuses others)."""

    params_per_channel = 2
    discrete = True

    def _split(self, out: torch.Tensor):
        mu, log_s = out.chunk(2, dim=-3)
        return mu, log_s.clamp(*LOG_SIGMA_RANGE)

    def log_prob(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        mu, log_s = self._split(out)
        inv_s = torch.exp(-log_s)
        half = 0.5 / (BINS - 1)
        upper = (x + half - mu) * inv_s              # the bin's upper edge, standardised
        lower = (x - half - mu) * inv_s
        # log(σ(a) − σ(b)) = log σ(a) + log σ(−b) + log(1 − e^−(a−b)), stable for any a > b
        middle = F.logsigmoid(upper) + F.logsigmoid(-lower) + torch.log(-torch.expm1(-(2 * half) * inv_s))
        first = F.logsigmoid(upper)                  # P(x ≤ ½/255): the open bin of level 0
        last = F.logsigmoid(-lower)                  # P(x > 1 − ½/255): the open bin of level 255
        logp = torch.where(x < half, first, torch.where(x > 1 - half, last, middle))
        return _sum_data(logp)

    def distribution(self, out: torch.Tensor) -> td.Distribution:
        """The logistic before discretization (its mean is the location μ): for inspection;
        log-probabilities of 8-bit data come from ``log_prob``."""
        mu, log_s = self._split(out)
        base = td.TransformedDistribution(td.Uniform(torch.zeros_like(mu), torch.ones_like(mu)),
                                          [td.SigmoidTransform().inv, td.AffineTransform(mu, log_s.exp())])
        return td.Independent(base, 3)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """The location μ, clamped to [0, 1] (the image a decoder shows)."""
        return self._split(out)[0].clamp(0, 1)


def check_8bit(x: torch.Tensor, what: str = "images") -> None:
    """Refuse pixels that are not 8-bit grey levels k/255 (what a discrete likelihood over 256
    levels scores), naming the fix."""
    scaled = x.detach().float() * (BINS - 1)
    if x.numel() and (bool((scaled - scaled.round()).abs().max() > 1e-3) or bool(x.min() < 0) or bool(x.max() > 1)):
        raise VaelabError(f"the discretized-logistic likelihood scores 8-bit {what} (pixels k/255 in [0, 1]), got "
                          "other values; pass 8-bit images scaled by 1/255, or use --likelihood gaussian")


def make_likelihood(name: str, sigma: float = 1.0):
    choice("likelihood", name, LIKELIHOODS + DISCRETE_8BIT)
    if name == "bernoulli":
        return Bernoulli()
    if name == "gaussian":
        return FixedGaussian(sigma)
    if name == "discretized-logistic":
        return DiscretizedLogistic()
    if name == "gaussian-real":
        return RealGaussian()
    return LearnedGaussian()
