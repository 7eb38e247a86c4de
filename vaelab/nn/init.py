"""Initialisations shared by the model families."""
from __future__ import annotations

import torch
from torch import nn


def glorot_(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases for every linear and conv layer (IWAE's choice)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


def clipped_logit(mean: torch.Tensor) -> torch.Tensor:
    """The decoder output whose sigmoid is ``mean``, clipped to [1e-3, 1 − 1e-3] as in IWAE."""
    return torch.logit(mean.clamp(1e-3, 1 - 1e-3))


def output_bias_from_data_(decoder: nn.Module, x_train: torch.Tensor, input_shape, link=clipped_logit) -> None:
    """Set the decoder's last bias to link(mean training value) (for pixels the clipped logit,
    as in IWAE), so training starts at the mean image. Only the means are set: extra output
    channels (a learned log σ) keep their bias."""
    last = [m for m in decoder.modules() if isinstance(m, (nn.Linear, nn.ConvTranspose2d))][-1]
    c, h, w = input_shape
    mean = x_train.float().mean(0)
    with torch.no_grad():
        if isinstance(last, nn.Linear):
            last.bias[: c * h * w] = link(mean.flatten()).to(last.bias)
        else:
            last.bias[:c] = link(mean.mean((1, 2))).to(last.bias)
