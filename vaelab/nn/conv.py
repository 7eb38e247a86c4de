"""Convolutional backbones for any C×H×W.

Each encoder stage halves the spatial size (3×3, stride 2, padding 1, so odd sizes
round up); the decoder mirrors it with transposed convolutions whose output padding
is chosen per stage, so it returns exactly H×W (28×28, 28×20, 32×32, ...).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .mlp import activation


def stage_sizes(height: int, width: int, stages: int) -> list[tuple[int, int]]:
    sizes = [(height, width)]
    for _ in range(stages):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


class ConvEncoder(nn.Module):
    """``x (B,C,H,W) -> (B, out_features)``: strided convs, flatten, linear."""

    def __init__(self, in_shape: Sequence[int], channels: Sequence[int], out_features: int,
                 act: str, hidden: Sequence[int] = ()):
        super().__init__()
        c, h, w = in_shape
        layers: list[nn.Module] = []
        for ch in channels:
            layers += [nn.Conv2d(c, ch, 3, stride=2, padding=1), activation(act)]
            c = ch
        self.convs = nn.Sequential(*layers)
        fh, fw = stage_sizes(h, w, len(channels))[-1]
        head: list[nn.Module] = [nn.Flatten()]
        width = c * fh * fw
        for hd in hidden:
            head += [nn.Linear(width, hd), activation(act)]
            width = hd
        head.append(nn.Linear(width, out_features))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(x))


class ConvDecoder(nn.Module):
    """``z (B, in_features) -> (B, out_channels, H, W)``, the mirror of :class:`ConvEncoder`."""

    def __init__(self, in_features: int, channels: Sequence[int], out_shape: Sequence[int],
                 out_channels: int, act: str, hidden: Sequence[int] = ()):
        super().__init__()
        _, h, w = out_shape
        sizes = stage_sizes(h, w, len(channels))
        rev = list(reversed(channels))
        fh, fw = sizes[-1]
        self.start = (rev[0], fh, fw)
        head: list[nn.Module] = []
        width = in_features
        for hd in reversed(tuple(hidden)):
            head += [nn.Linear(width, hd), activation(act)]
            width = hd
        head += [nn.Linear(width, rev[0] * fh * fw), activation(act)]
        self.head = nn.Sequential(*head)
        layers: list[nn.Module] = []
        targets = list(reversed(sizes[:-1]))
        for i, (th, tw) in enumerate(targets):
            c_in = rev[i]
            c_out = rev[i + 1] if i + 1 < len(rev) else out_channels
            layers.append(nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1,
                                             output_padding=(1 - th % 2, 1 - tw % 2)))
            if i + 1 < len(rev):
                layers.append(activation(act))
        self.convs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.convs(self.head(z).view(-1, *self.start))
