"""Vector quantization (van den Oord, Vinyals & Kavukcuoglu 2017): each D-vector of an encoder's
output map is replaced by its nearest entry of a codebook of K vectors.

- **Search.** ‖z − e‖² = ‖z‖² − 2 z·eᵀ + ‖e‖² for all N vectors against all K codes as one
  GEMM (``torch.addmm``): N·K·D multiply-adds and an (N, K) result, where a broadcast
  ``(z[:, None] − e[None]).pow(2).sum(-1)`` would build an (N, K, D) tensor.
- **Gradient.** The straight-through estimator: the decoder's input is z_e + sg[z_q − z_e], so
  its gradient reaches the encoder unchanged.
- **Terms** (each summed over code-map positions and D, per image; the caller averages over the
  batch): the codebook term ‖sg[z_e] − e‖² (moves codes to the encoder's outputs) and the
  commitment term ‖z_e − sg[e]‖² (the caller weights it by β). With ``ema`` the codebook term
  gets no gradient: codes are exponential moving averages of the vectors assigned to them
  (the paper's appendix), N_i ← γN_i + (1−γ)n_i, m_i ← γm_i + (1−γ)Σ_j z_j, e_i = m_i / Ñ_i with
  Laplace-smoothed counts Ñ_i = (N_i + ε) / (n + Kε) · n, n = Σ_i N_i.
- **k-means initialisation** (``kmeans_init``): the first training batch's encoder outputs are
  clustered (Lloyd's algorithm, ``kmeans_iters`` rounds) and the codebook starts at the centres.
- **Dead-code revival** (``revive_after`` > 0): a code no training step has chosen for
  ``revive_after`` steps is moved onto a randomly chosen encoder output of the current batch,
  before the search, so it is chosen at once.
- **Usage.** Codes chosen during training are counted until :meth:`VectorQuantizer.epoch_figures`
  reads and resets the counts: the fraction of codes used and the perplexity exp(H) of the code
  frequencies (K when all are used equally, 1 when one code takes everything).

Every piece of state (EMA counts and sums, idle counters, usage counts, whether the codebook
was initialised) is a buffer, so checkpoints hold it and a resumed run continues exactly.
Under torch.distributed the EMA statistics are summed over ranks and what is drawn at random
(k-means start, revived codes) is taken from rank 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import VaelabError


@dataclass
class Quantized:
    """What :meth:`VectorQuantizer.forward` returns for z_e of shape (B, D, h, w)."""

    z_q: torch.Tensor        # (B, D, h, w): z_e + sg[e − z_e] while training (straight-through), e otherwise
    codes: torch.Tensor      # (B, h, w) int64 code indices
    codebook: torch.Tensor   # (B,) Σ ‖sg[z_e] − e‖² per image
    commitment: torch.Tensor  # (B,) Σ ‖z_e − sg[e]‖² per image (unweighted: β is the caller's)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _from_rank0(t: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.broadcast(t, src=0)
    return t


def _sum_ranks(t: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(t)
    return t


def squared_distances(z: torch.Tensor, codebook: torch.Tensor, code_sq: torch.Tensor | None = None) -> torch.Tensor:
    """‖z_n − e_k‖² for z (N, D) and codebook (K, D), shape (N, K): one GEMM,
    ‖e‖² − 2 z·eᵀ added to ‖z‖² (``code_sq`` = ‖e‖² if already known)."""
    if code_sq is None:
        code_sq = codebook.square().sum(1)
    d = torch.addmm(code_sq.unsqueeze(0), z, codebook.t(), beta=1.0, alpha=-2.0)
    return d.add_(z.square().sum(1, keepdim=True))


@torch.no_grad()
def nearest(z: torch.Tensor, codebook: torch.Tensor, block: int = 8192) -> torch.Tensor:
    """Index of the nearest code for each row of z (N, D): (N,) int64. ‖z‖² is the same for
    every code of a row, so the argmin needs only ‖e‖² − 2 z·eᵀ; rows go in blocks so the
    (rows, K) matrix stays small."""
    code_sq = codebook.square().sum(1).unsqueeze(0)
    out = torch.empty(z.shape[0], dtype=torch.long, device=z.device)
    for i in range(0, z.shape[0], block):
        zb = z[i:i + block]
        out[i:i + block] = torch.addmm(code_sq, zb, codebook.t(), beta=1.0, alpha=-2.0).argmin(1)
    return out


def kmeans(x: torch.Tensor, k: int, iters: int = 10, generator: torch.Generator | None = None) -> torch.Tensor:
    """Lloyd's k-means on the rows of x (N, D): k centres (k, D), started at k distinct rows
    (with repetition only if N < k); an empty cluster keeps its centre."""
    n = x.shape[0]
    start = torch.randperm(n, generator=generator, device="cpu")[:k] if n >= k else \
        torch.randint(n, (k,), generator=generator, device="cpu")
    centres = x[start.to(x.device)].clone()
    for _ in range(iters):
        assign = nearest(x, centres)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled].unsqueeze(1)
    return centres


class VectorQuantizer(nn.Module):
    """A codebook of ``K`` vectors of dimension ``D``; see the module docstring.

    ``revive_after`` 0 turns revival off; ``eps`` is the EMA's Laplace smoothing constant.
    """

    def __init__(self, K: int, D: int, beta: float = 0.25, ema: bool = False, decay: float = 0.99,
                 eps: float = 1e-5, kmeans_init: bool = False, kmeans_iters: int = 10, revive_after: int = 0):
        super().__init__()
        if K < 2:
            raise VaelabError(f"a codebook needs at least 2 codes, got K = {K}; use e.g. 512")
        if D < 1:
            raise VaelabError(f"the code dimension must be at least 1, got D = {D}")
        if not 0 < decay < 1:
            raise VaelabError(f"the EMA decay must lie in (0, 1), got {decay}; the paper uses 0.99")
        self.K, self.D, self.beta, self.ema, self.decay, self.eps = K, D, beta, ema, decay, eps
        self.kmeans_init, self.kmeans_iters, self.revive_after = kmeans_init, kmeans_iters, revive_after
        init = torch.empty(K, D).uniform_(-1.0 / K, 1.0 / K)
        if ema:
            self.register_buffer("codebook", init)
            self.register_buffer("ema_count", torch.ones(K))
            self.register_buffer("ema_sum", init.clone())
        else:
            self.codebook = nn.Parameter(init)
        self.register_buffer("initialised", torch.tensor(not kmeans_init))
        self.register_buffer("idle", torch.zeros(K, dtype=torch.long))       # training steps since last chosen
        self.register_buffer("counts", torch.zeros(K, dtype=torch.long))     # choices since the last epoch_figures
        self.register_buffer("revived", torch.zeros((), dtype=torch.long))   # codes revived since then

    # -- the search ---------------------------------------------------------------------------
    def _flat(self, z_e: torch.Tensor) -> torch.Tensor:
        if z_e.dim() != 4 or z_e.shape[1] != self.D:
            raise VaelabError(f"the quantizer takes encoder outputs of shape (B, {self.D}, h, w) (code dimension "
                              f"D = {self.D}), got {list(z_e.shape)}; the encoder's output channels must equal "
                              "the code dimension")
        return z_e.permute(0, 2, 3, 1).reshape(-1, self.D)

    @torch.no_grad()
    def codes(self, z_e: torch.Tensor) -> torch.Tensor:
        """Nearest-code indices (B, h, w) of z_e (B, D, h, w); nothing is updated."""
        b, _, h, w = z_e.shape
        return nearest(self._flat(z_e).detach(), self.codebook).view(b, h, w)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """The code vectors of an index map (B, h, w), as (B, D, h, w)."""
        return self.codebook[codes].permute(0, 3, 1, 2)

    def forward(self, z_e: torch.Tensor) -> Quantized:
        """Quantize z_e (B, D, h, w). In training mode this also initialises (k-means), revives
        dead codes, counts usage and applies the EMA update, in that order."""
        b, _, h, w = z_e.shape
        flat = self._flat(z_e)
        learning = self.training and torch.is_grad_enabled()
        if learning:
            with torch.no_grad():
                if not bool(self.initialised):
                    self._kmeans(flat.detach())
                if self.revive_after > 0:
                    self._revive(flat.detach())
        idx = nearest(flat.detach(), self.codebook)
        e = self.codebook[idx]                              # (N, D): gradient reaches the codebook only
        diff = (flat.detach() - e).square().view(b, -1).sum(1)
        codebook_term = diff if not self.ema else diff.detach()
        commitment = (flat - e.detach()).square().view(b, -1).sum(1)
        if learning:
            with torch.no_grad():
                self._count(idx)
                if self.ema:
                    self._ema_update(flat.detach(), idx)
        z_q = e.view(b, h, w, self.D).permute(0, 3, 1, 2)
        if learning or z_e.requires_grad:
            z_q = z_e + (z_q - z_e).detach()                 # straight-through: dz_q/dz_e = I
        return Quantized(z_q, idx.view(b, h, w), codebook_term, commitment)

    # -- the training-time updates ------------------------------------------------------------
    def _kmeans(self, flat: torch.Tensor) -> None:
        centres = _from_rank0(kmeans(flat.float(), self.K, self.kmeans_iters).to(self.codebook.dtype))
        self.codebook.data.copy_(centres)
        if self.ema:
            self.ema_sum.copy_(centres)
            self.ema_count.fill_(1.0)
        self.initialised.fill_(True)

    def _revive(self, flat: torch.Tensor) -> None:
        dead = _from_rank0((self.idle >= self.revive_after).to(torch.uint8)).bool().nonzero().squeeze(1)
        if dead.numel() == 0:
            return
        n = flat.shape[0]
        pick = torch.randperm(n, device=flat.device)[:dead.numel()] if n >= dead.numel() else \
            torch.randint(n, (dead.numel(),), device=flat.device)
        fresh = _from_rank0(flat[pick].to(self.codebook.dtype).contiguous())
        self.codebook.data[dead] = fresh
        if self.ema:
            self.ema_sum[dead] = fresh
            self.ema_count[dead] = 1.0
        self.idle[dead] = 0
        self.revived += dead.numel()

    def _count(self, idx: torch.Tensor) -> None:
        hits = torch.bincount(idx, minlength=self.K)
        self.counts += hits
        self.idle += 1
        self.idle[hits > 0] = 0

    def _ema_update(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        g = self.decay
        n_i = _sum_ranks(torch.bincount(idx, minlength=self.K).to(self.ema_count.dtype))
        sums = _sum_ranks(torch.zeros_like(self.ema_sum).index_add_(0, idx, flat.to(self.ema_sum.dtype)))
        self.ema_count.mul_(g).add_(n_i, alpha=1 - g)
        self.ema_sum.mul_(g).add_(sums, alpha=1 - g)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (n + self.K * self.eps) * n
        self.codebook.copy_(self.ema_sum / smoothed.unsqueeze(1))

    # -- usage ---------------------------------------------------------------------------------
    def usage(self) -> dict[str, float]:
        """Over the training steps since the last reset: the fraction of codes chosen at least
        once (``codebook_usage``), the perplexity exp(−Σ p log p) of the code frequencies
        (``code_perplexity``) and the number of codes revived (``codes_revived``)."""
        return usage_figures(self.counts, int(self.revived))

    def epoch_figures(self) -> dict[str, float]:
        """:meth:`usage`, then the counts start again (called once per epoch by the trainer)."""
        figures = self.usage()
        self.counts.zero_()
        self.revived.zero_()
        return figures


def usage_figures(counts: torch.Tensor, revived: int | None = None) -> dict[str, float]:
    """Codebook usage and perplexity of code counts (K,); ``codes_revived`` where given."""
    total = int(counts.sum())
    figures = {"codebook_usage": float((counts > 0).float().mean()) if total else 0.0}
    if total:
        p = counts[counts > 0].double() / total
        figures["code_perplexity"] = float(torch.exp(-(p * p.log()).sum()))
    else:
        figures["code_perplexity"] = 0.0
    if revived is not None:
        figures["codes_revived"] = float(revived)
    return figures
