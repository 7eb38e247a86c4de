"""Diagonal Gaussians: the KL between two of them (a conditional prior p(z|x) is not N(0, I))."""
from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2 * math.pi)


def kl_diagonal_gaussians(mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor,
                          logvar_p: torch.Tensor) -> torch.Tensor:
    """KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²)) summed over the last dimension, one value per row:
    ½ Σ [log σ_p² − log σ_q² + (σ_q² + (μ_q − μ_p)²) / σ_p² − 1]."""
    ratio = (logvar_q - logvar_p).exp()
    return 0.5 * (ratio + (mu_q - mu_p).square() * (-logvar_p).exp() - 1.0 - (logvar_q - logvar_p)).sum(-1)


def log_normal_diag(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; μ, diag σ²) summed over the last dimension (μ, logvar broadcast against z)."""
    return -0.5 * ((z - mu).square() * (-logvar).exp() + logvar + LOG_2PI).sum(-1)
