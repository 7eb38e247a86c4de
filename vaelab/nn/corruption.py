"""Input corruptions of the denoising autoencoder (Vincent et al. 2008, 2010).

Every corruption keeps images in [0, 1] and never modifies its input. Without a
``generator`` the draws come from torch's global RNG, which the trainer seeds and
stores in every checkpoint, so a resumed run corrupts exactly as an uninterrupted one.
"""
from __future__ import annotations

import torch

from ..config import choice
from ..errors import VaelabError

CORRUPTIONS = ("none", "gaussian", "masking", "salt-pepper")


def _uniform(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    if generator is None or generator.device.type == x.device.type:
        return torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)


def _normal(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    if generator is None or generator.device.type == x.device.type:
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


def corrupt(x: torch.Tensor, kind: str, level: float,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """A corrupted copy of images ``x`` in [0, 1].

    - ``gaussian``: x + N(0, level²) per pixel, clamped to [0, 1];
    - ``masking``: each pixel set to 0 with probability ``level``;
    - ``salt-pepper``: each pixel set to 0 or 1 (half each) with probability ``level``;
    - ``none``: ``x`` itself.
    """
    choice("corruption", kind, CORRUPTIONS)
    if kind == "none":
        return x
    if not level >= 0 or (kind != "gaussian" and level > 1):
        raise VaelabError(f"{kind} noise level must lie in [0, 1] (gaussian: σ >= 0), got {level}")
    if kind == "gaussian":
        return (x + level * _normal(x, generator)).clamp_(0.0, 1.0)
    u = _uniform(x, generator)
    if kind == "masking":
        return x.masked_fill(u < level, 0.0)
    # one uniform per pixel: u < level/2 -> pepper (0), level/2 <= u < level -> salt (1)
    return torch.where(u < level, (u >= 0.5 * level).to(x.dtype), x)
