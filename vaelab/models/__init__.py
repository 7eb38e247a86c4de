"""Model families; importing this module registers every model name."""
from . import adain_vc, ae_speech, vq_vc  # noqa: F401  (the speech families)
from . import aae, aae_categorical, ae, cmma, cvae, discrete_vae, dvae, linear_ae, lstm_lm, pixelcnn, pixelrnn, seq3, sohn, ssvae, stacked_ae, text_vae, vae, vae_prior, vq_prior, vqvae  # noqa: F401  (register the model names)
from .base import Loss, Model
from .registry import build, model_class, names, register

__all__ = ["Loss", "Model", "build", "model_class", "names", "register"]
