"""The lectures' comparisons, one function each; every one writes a table and figures.

    from vaelab.compare import pca_vs_autoencoders
    result = pca_vs_autoencoders("runs/compare-pca", latent_dims=(2, 10), epochs=5)
    print(result.markdown())
"""
from __future__ import annotations

from .aae_vs_vae import aae_vs_vae
from .codes_2d import codes_2d
from .common import Comparison
from .completion import completion
from .conditional import conditional
from .denoising import denoising
from .discrete import discrete
from .dvae import dvae_vs_vae
from .generation import generation
from .interpolation import interpolation
from .mixtures import mixtures_vs_vae
from .pca_vs_ae import pca_vs_autoencoders
from .secret_code import secret_code
from .ssl import ssl
from .text_collapse import text_collapse
from .voice_conversion import voice_conversion

COMPARISONS = {"pca": pca_vs_autoencoders, "codes-2d": codes_2d, "denoise": denoising,
               "generate": generation, "mixtures": mixtures_vs_vae,
               "interpolation": interpolation, "conditional": conditional, "completion": completion,
               "dvae": dvae_vs_vae, "ssl": ssl, "aae-vs-vae": aae_vs_vae,
               "discrete": discrete, "text-collapse": text_collapse, "secret-code": secret_code,
               "voice-conversion": voice_conversion}

__all__ = ["COMPARISONS", "Comparison", "aae_vs_vae", "codes_2d", "completion", "conditional", "denoising",
           "discrete", "dvae_vs_vae", "generation", "interpolation", "mixtures_vs_vae",
           "pca_vs_autoencoders", "secret_code", "ssl", "text_collapse", "voice_conversion"]
