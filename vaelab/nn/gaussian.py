"""Diagonal Gaussians: the KL between any two, which a conditional prior (p(z|y), p(z|x))
needs (the VAE's KL to N(0, I) is the special case μ_p = 0, log σ²_p = 0), and their log-density."""
from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2 * math.pi)


def kl_per_dimension(mu_q: torch.Tensor, logvar_q: torch.Tensor,
                     mu_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """KL(N(μ_q, σ²_q) ‖ N(μ_p, σ²_p)) for each dimension, elementwise:
    ½ [log σ²_p − log σ²_q + (σ²_q + (μ_q − μ_p)²) / σ²_p − 1]."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).square()) * torch.exp(-logvar_p) - 1.0)


def kl_diagonal_gaussians(mu_q: torch.Tensor, logvar_q: torch.Tensor,
                          mu_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """KL(q ‖ p) between diagonal Gaussians, summed over the last dimension (one per row)."""
    return kl_per_dimension(mu_q, logvar_q, mu_p, logvar_p).sum(-1)


def log_normal_diag(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; μ, diag σ²) summed over the last dimension (μ, logvar broadcast against z)."""
    return -0.5 * ((z - mu).square() * (-logvar).exp() + logvar + LOG_2PI).sum(-1)
