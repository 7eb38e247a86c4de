"""Model families; importing this module registers every model name."""
from . import vae  # noqa: F401  (registers "vae")
from .base import Loss, Model
from .registry import build, model_class, names, register

__all__ = ["Loss", "Model", "build", "model_class", "names", "register"]
