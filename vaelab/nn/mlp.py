"""Fully connected backbones of any depth, width and activation."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from ..config import choice

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky-relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
}


INPLACE = ("relu", "elu", "leaky-relu", "silu")


def activation(name: str) -> nn.Module:
    """The activation module; in place where torch allows it (the input of an
    activation after a linear layer is not needed for the backward pass)."""
    choice("activation", name, tuple(ACTIVATIONS))
    return ACTIVATIONS[name](inplace=True) if name in INPLACE else ACTIVATIONS[name]()


def mlp(in_features: int, hidden: Sequence[int], out_features: int, act: str) -> nn.Sequential:
    """Linear layers ``in -> hidden... -> out`` with ``act`` between them (none after the last)."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), activation(act)]
        width = h
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)
