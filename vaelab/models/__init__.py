"""Model families; importing this module registers every model name."""
from . import ae, cmma, cvae, linear_ae, pixelcnn, pixelrnn, sohn, stacked_ae, vae  # noqa: F401  (register the model names)
from .base import Loss, Model
from .registry import build, model_class, names, register

__all__ = ["Loss", "Model", "build", "model_class", "names", "register"]
