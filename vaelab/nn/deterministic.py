"""Distributions for deterministic autoencoders, so they keep the model contract.

``encode(x)`` of an autoencoder returns a :class:`PointMass` at the code: ``.mean``,
``.sample()`` and ``.rsample()`` all give the code, so code written for a VAE's
posterior works unchanged. The squared-error loss is the negative log-density of a
Gaussian with σ² = 1/2 up to a constant; :func:`squared_error_likelihood` returns that
Gaussian as ``decode(z)`` for models trained with it.
"""
from __future__ import annotations

import math

import torch
from torch import distributions as td
from torch.distributions import constraints

# −log N(x; μ, σ²) = (x − μ)²/(2σ²) + log(σ√(2π)); with σ² = 1/2 this is (x − μ)² + ½·log π.
SQUARED_ERROR_SIGMA = 1.0 / math.sqrt(2.0)


class PointMass(td.Distribution):
    """The Dirac distribution δ(z − loc) over the last ``event_dims`` dimensions of ``loc``.

    An autoencoder has no posterior spread: its code is a point. Samples are ``loc``
    (``rsample`` passes gradients through), the variance is zero, and ``log_prob`` is 0
    at ``loc`` and −∞ elsewhere.
    """

    arg_constraints: dict = {}
    support = constraints.real
    has_rsample = True

    def __init__(self, loc: torch.Tensor, event_dims: int = 1):
        self.loc = loc
        split = loc.dim() - event_dims
        super().__init__(loc.shape[:split], loc.shape[split:], validate_args=False)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def mode(self) -> torch.Tensor:
        return self.loc

    @property
    def variance(self) -> torch.Tensor:
        return torch.zeros_like(self.loc)

    def rsample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        return self.loc.expand(self._extended_shape(torch.Size(sample_shape)))

    def sample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(-len(self.event_shape), 0))
        equal = (value == self.loc).all(dim=dims) if dims else value == self.loc
        return torch.where(equal, 0.0, -math.inf).to(self.loc.dtype)


def squared_error_likelihood(mean: torch.Tensor) -> td.Distribution:
    """N(x; mean, ½·I) over (C, H, W): −log p(x|z) = ‖x − mean‖² + (D/2)·log π."""
    return td.Independent(td.Normal(mean, torch.full_like(mean, SQUARED_ERROR_SIGMA)), 3)
