"""MMD² between two samples (Gretton et al. 2012): how far apart two distributions are, seen
through a Gaussian kernel k(a, b) = exp(−‖a − b‖² / (2h²)).

    MMD²_u = 1/(m(m−1)) Σ_{i≠j} k(x_i, x_j) + 1/(n(n−1)) Σ_{i≠j} k(y_i, y_j) − 2/(mn) Σ_{i,j} k(x_i, y_j)

is the unbiased estimator: its mean over draws is the population MMD² (0 exactly when the
distributions agree), so a single value can be slightly below 0. The bandwidth h is the
median heuristic by default: the median distance between points of the pooled sample (on up
to ``MEDIAN_POINTS`` of each). The kernel sums run in blocks, so 10,000 × 10,000 fit memory.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import VaelabError

MEDIAN_POINTS = 1000
BLOCK = 2048


@dataclass(frozen=True)
class MMDResult:
    mmd2: float          # the unbiased estimate of MMD²
    bandwidth: float     # h of the Gaussian kernel
    bandwidth_rule: str  # "median heuristic" or "given"
    n_x: int
    n_y: int

    def to_dict(self) -> dict:
        return {"mmd2": self.mmd2, "kernel": "gaussian", "bandwidth": self.bandwidth,
                "bandwidth_rule": self.bandwidth_rule, "n_x": self.n_x, "n_y": self.n_y}


def median_bandwidth(x: torch.Tensor, y: torch.Tensor, points: int = MEDIAN_POINTS) -> float:
    """The median pairwise distance of the pooled sample (the first ``points`` rows of each)."""
    pooled = torch.cat([x[:points], y[:points]]).double()
    d = torch.cdist(pooled, pooled)
    i, j = torch.triu_indices(len(pooled), len(pooled), 1)
    return float(d[i, j].median())


def _kernel_sum(a: torch.Tensor, b: torch.Tensor, gamma: float, exclude_diagonal: bool) -> float:
    """Σ k(a_i, b_j) in blocks (a and b the same sample when ``exclude_diagonal``: i ≠ j only)."""
    total = 0.0
    for i in range(0, len(a), BLOCK):
        part = torch.cdist(a[i:i + BLOCK], b).square_().mul_(-gamma).exp_()
        total += float(part.sum())
    if exclude_diagonal:
        total -= len(a)  # k(a_i, a_i) = 1
    return total


def mmd2(x: torch.Tensor, y: torch.Tensor, bandwidth: float | None = None) -> MMDResult:
    """Unbiased MMD² between samples ``x`` (m × d) and ``y`` (n × d), Gaussian kernel of bandwidth
    h (``bandwidth``; None: the median heuristic)."""
    x, y = torch.as_tensor(x).double().flatten(1), torch.as_tensor(y).double().flatten(1)
    if len(x) < 2 or len(y) < 2:
        raise VaelabError(f"MMD² needs at least 2 points in each sample, got {len(x)} and {len(y)}")
    if x.shape[1] != y.shape[1]:
        raise VaelabError(f"MMD²: the samples have {x.shape[1]} and {y.shape[1]} dimensions; they must agree")
    rule = "given"
    if bandwidth is None:
        bandwidth, rule = median_bandwidth(x, y), "median heuristic"
    if not bandwidth > 0:
        raise VaelabError(f"MMD² needs a positive kernel bandwidth, got {bandwidth} (identical points give a "
                          "median distance of 0: pass a bandwidth)")
    gamma = 1.0 / (2.0 * bandwidth ** 2)
    m, n = len(x), len(y)
    value = (_kernel_sum(x, x, gamma, True) / (m * (m - 1)) + _kernel_sum(y, y, gamma, True) / (n * (n - 1))
             - 2.0 * _kernel_sum(x, y, gamma, False) / (m * n))
    return MMDResult(value, float(bandwidth), rule, m, n)
