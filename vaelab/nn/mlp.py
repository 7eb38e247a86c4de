"""Fully connected backbones of any depth, width and activation."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from ..config import choice, require

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


def validate_network(cfg, conv: bool) -> None:
    """The checks of an encoder/decoder's settings (input shape, code size, layers, activation,
    conv channels, initialisation) that every family shares, so each setting has one message."""
    require(all(s > 0 for s in cfg.input_shape),
            f"input_shape must be positive C,H,W, got {list(cfg.input_shape)}")
    require(cfg.latent_dim > 0, f"latent_dim must be positive, got {cfg.latent_dim}")
    require(all(h > 0 for h in cfg.hidden), f"hidden layer sizes must be positive, got {list(cfg.hidden)}")
    choice("activation", cfg.activation, tuple(ACTIVATIONS))
    if conv:
        require(len(cfg.channels) > 0 and all(c > 0 for c in cfg.channels),
                f"conv channels must be a non-empty list of positive sizes, got {list(cfg.channels)}")
    choice("init", cfg.init, ("torch", "glorot"))


def mlp(in_features: int, hidden: Sequence[int], out_features: int, act: str) -> nn.Sequential:
    """Linear layers ``in -> hidden... -> out`` with ``act`` between them (none after the last)."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), activation(act)]
        width = h
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)
