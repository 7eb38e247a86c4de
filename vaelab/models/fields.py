"""Config fields several families share, each with its one help text (the CLI's options are
generated from these, see vaelab/options.py): a family declares ``latent_dim: int =
latent_dim(20)`` rather than repeating the words."""
from __future__ import annotations

from dataclasses import field

from ..nn.corruption import CORRUPTIONS

# ``applies``: the settings under which a field takes effect (vaelab.config.applicable_settings);
# the report shows only those.
CONV = {"backbone": ("conv",)}


def _field(default, help: str, **metadata):
    return field(default=default, metadata={"help": help, **metadata})


def input_shape():
    return _field((1, 28, 28), "C,H,W of the images; set from the data, not an option", option=False)


def latent_dim(default: int):
    return _field(default, "size of the latent code z")


def hidden(default: tuple[int, ...]):
    return _field(default, "hidden layer sizes, e.g. 400 or 200,200 (conv: dense layers after the convolutions)")


def activation(default: str = "relu"):
    return _field(default, "relu, tanh, elu, leaky-relu, softplus, gelu, silu or sigmoid")


def backbone(default: str = "mlp"):
    return _field(default, "mlp or conv")


def channels(default: tuple[int, ...] = (32, 64)):
    return _field(default, "conv backbone channels per stride-2 stage, e.g. 32,64", applies=CONV)


def recon_loss(default: str = "mse"):
    return _field(default, "reconstruction loss: mse (squared error summed over pixels) or bernoulli "
                           "(cross-entropy with logits)")


def corruption(default: str = "none"):
    return _field(default, "input corruption while training (denoising): none, gaussian, masking or salt-pepper")


def noise_level(default: float = 0.25):
    return _field(default, "corruption strength: σ for gaussian, the per-pixel probability for masking and "
                           "salt-pepper", applies={"corruption": tuple(c for c in CORRUPTIONS if c != "none")})


def init(default: str = "torch"):
    return _field(default, "weight initialisation: torch or glorot")


def output_bias_from_data(default: bool = True):
    return _field(default, "start the decoder's output bias at the logit of the mean training pixel (IWAE; "
                           "--no-output-bias-from-data: keep the initialisation)")


def likelihood(default: str = "bernoulli"):
    return _field(default, "bernoulli, gaussian (fixed --sigma), gaussian-learned or gaussian-real (unbounded mean, for codes)")


def sigma(default: float = 0.1):
    return _field(default, "σ of the fixed-σ gaussian likelihood", applies={"likelihood": ("gaussian",)})
