"""Priors over codes that an adversarial autoencoder can be matched to (Makhzani et al. 2015):
N(0, I) in any size, a mixture of 10 Gaussians in 2-D with means on a circle, and a 2-D
swiss roll. ``sample_prior`` draws from one (from a given generator, so draws repeat);
``prior_log_prob`` is the log-density where it has a closed form (normal, mixture), which
a VAE needs for a Monte-Carlo KL to the same prior.

The mixture's layout is the paper's figure: component k has its mean at radius
``MIXTURE_RADIUS`` and angle 2πk/K, and is elongated along the radius (σ ``MIXTURE_RADIAL_STD``
along it, ``MIXTURE_TANGENTIAL_STD`` across it), all components equally likely.
"""
from __future__ import annotations

import math

import torch

PRIORS = ("normal", "mixture", "swiss-roll")
TWO_D_PRIORS = ("mixture", "swiss-roll")
MIXTURE_COMPONENTS = 10
MIXTURE_RADIUS = 4.0
MIXTURE_RADIAL_STD = 0.5
MIXTURE_TANGENTIAL_STD = 0.15
SWISS_ROLL_TURNS = 1.5  # θ runs over [1.5π, 4.5π] as in scikit-learn's make_swiss_roll
SWISS_ROLL_SCALE = 1.0 / math.pi  # radius θ/π: codes within about 4.5 of the origin
SWISS_ROLL_NOISE = 0.05


def _angles(k: int, device, dtype) -> torch.Tensor:
    return torch.arange(k, device=device, dtype=dtype) * (2 * math.pi / k)


def sample_prior(name: str, n: int, dim: int, generator: torch.Generator | None = None,
                 device=None, dtype=torch.float32, component: torch.Tensor | None = None) -> torch.Tensor:
    """n draws (n × dim) from the prior ``name``. ``component`` picks the mixture component of
    each draw (else uniform)."""
    kw = dict(generator=generator, device=device, dtype=dtype)
    if name == "normal":
        return torch.randn(n, dim, **kw)
    if name == "mixture":
        k = torch.randint(MIXTURE_COMPONENTS, (n,), generator=generator, device=device) \
            if component is None else component.to(device)
        angle = _angles(MIXTURE_COMPONENTS, device, dtype)[k]
        eps = torch.randn(n, 2, **kw)
        radial = MIXTURE_RADIUS + MIXTURE_RADIAL_STD * eps[:, 0]
        tangential = MIXTURE_TANGENTIAL_STD * eps[:, 1]
        c, s = angle.cos(), angle.sin()
        return torch.stack([radial * c - tangential * s, radial * s + tangential * c], 1)
    if name == "swiss-roll":
        u = torch.rand(n, **kw)
        theta = SWISS_ROLL_TURNS * math.pi * (1 + 2 * u)
        z = torch.stack([theta * theta.cos(), theta * theta.sin()], 1) * SWISS_ROLL_SCALE
        return z + SWISS_ROLL_NOISE * torch.randn(n, 2, **kw)
    raise ValueError(f"unknown prior {name!r}")


def prior_log_prob(name: str, z: torch.Tensor) -> torch.Tensor:
    """log p(z) per row of z (B × dim) for the normal and mixture priors."""
    if name == "normal":
        return -0.5 * (z.square().sum(-1) + z.shape[-1] * math.log(2 * math.pi))
    if name == "mixture":
        angle = _angles(MIXTURE_COMPONENTS, z.device, z.dtype)
        c, s = angle.cos(), angle.sin()  # (K,)
        x, y = z[:, :1], z[:, 1:2]  # (B, 1)
        radial = x * c + y * s - MIXTURE_RADIUS  # coordinates in each component's own frame (B, K)
        tangential = -x * s + y * c
        log_n = (-0.5 * (radial / MIXTURE_RADIAL_STD).square() - 0.5 * (tangential / MIXTURE_TANGENTIAL_STD).square()
                 - math.log(2 * math.pi * MIXTURE_RADIAL_STD * MIXTURE_TANGENTIAL_STD))
        return torch.logsumexp(log_n, -1) - math.log(MIXTURE_COMPONENTS)
    raise ValueError(f"prior {name!r} has no closed-form density here")
