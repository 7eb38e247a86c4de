"""One view of any trained model's latent space for the pictures, the report and the explorer.

Pictures need three things from a model: the code of an image, an image from a code, and
which latent dimensions matter. Models differ in how they answer (a VAE's posterior mean,
an autoencoder's deterministic code, a conditional model that also needs the label), so
the answers are collected here once and every picture asks ``LatentView`` instead of the
model: nothing in ``viz/`` or ``serve/`` branches on a model's name.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..evaluation.likelihood import as_rows
from ..errors import VaelabError


@dataclass
class DimensionOrder:
    """Latent dimensions, most informative first, with the score that ranked them."""

    order: list[int]
    scores: list[float]  # score of dimension j (not of order[j])
    measure: str  # "mean KL(q(z_j|x) || N(0, 1)) in nats" or "variance of the code"


PICTURES = "pictures of a latent space (traverse, manifold, scatter, interpolate, analogies)"


def without_latent_space(model) -> str:
    """Why ``model`` has no latent space to draw, in the user's terms (what its code is, or that
    it has none) and what to use instead; told by what the model can do, not by its name."""
    name, cfg = _name(model), getattr(model, "config", None)
    if callable(getattr(model, "decode_codes", None)):
        k = getattr(cfg, "codebook_size", "K")
        return (f"a '{name}' model's code is a grid of codebook entries (one of {k} per position), not a vector "
                f"of continuous dimensions, so {PICTURES} do not apply; use vaelab reconstruct, and vaelab "
                "train-prior then vaelab sample to generate")
    if callable(getattr(model, "prior_codes", None)):
        if hasattr(cfg, "categories") and hasattr(cfg, "classes"):
            code = f"{cfg.categories} one-hot variables of {cfg.classes} classes"
        else:
            code = f"{getattr(cfg, 'bits', 'its')} bits"
        return (f"a '{name}' model's code is discrete ({code}), with no continuous dimensions to vary, map "
                f"or move along, so {PICTURES} do not apply; use vaelab reconstruct and vaelab sample, or "
                "train a vae for these pictures")
    if callable(getattr(model, "sample", None)) and not callable(getattr(model, "encode", None)):
        return (f"a '{name}' model has no latent code: it generates the pixels one by one, each given those "
                f"before, so {PICTURES} do not apply; use vaelab sample, and vaelab eval for its exact likelihood")
    missing = [part for need, part in (("encode", "encoder (images to codes)"), ("decode", "decoder (codes to images)"))
               if not callable(getattr(model, need, None))]
    return f"a '{name}' model has no {' and no '.join(missing)}, which {PICTURES} need; use an autoencoder or a VAE"


class LatentView:
    """Encode, decode and rank the latent dimensions of a trained ``model``.

    ``encode`` takes images, a Batch or a Dataset and returns the posterior mean E[z|x] (the code f(x) for an autoencoder);
    ``decode`` returns images in [0, 1] (the mean of p(x|z), or p(x|y, z) for a
    label-conditional model, which then needs ``y``).
    """

    def __init__(self, model):
        if not all(callable(getattr(model, need, None)) for need in ("encode", "decode")):
            raise VaelabError(without_latent_space(model))
        self.model = model.eval()
        self.conditional = bool(getattr(model, "conditional", False))
        self.latent_dim = int(model.config.latent_dim)
        self.num_classes = int(getattr(model.config, "num_classes", 0) or 0) if self.conditional else 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.model.input_shape)

    @torch.inference_mode()
    def encode(self, data, batch_size: int = 1000) -> torch.Tensor:
        """(N, L) float32 codes on the CPU: E[z|x] (or E[z|x, y]), in batches."""
        rows = as_rows(data)
        if self.conditional and rows.y is None:
            raise VaelabError(f"a '{_name(self.model)}' encodes an image together with its label; "
                              "give labelled images (a dataset with labels)")
        out = [self.model.encode(rows[i:i + batch_size].to(self.device)).mean.float().cpu()
               for i in range(0, len(rows), batch_size)]
        if not out:
            raise VaelabError("no images to encode")
        return torch.cat(out)

    @torch.inference_mode()
    def decode(self, z: torch.Tensor, y: torch.Tensor | int | None = None, batch_size: int = 1000) -> torch.Tensor:
        """Images (N, C, H, W) in [0, 1] for codes ``z`` (N, L); ``y`` a class (or N classes)
        for a conditional model, refused for any other."""
        z = torch.as_tensor(z, dtype=torch.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise VaelabError(f"codes must be N×{self.latent_dim} for this model (latent size {self.latent_dim}), "
                              f"got shape {tuple(z.shape)}")
        if not torch.isfinite(z).all():
            raise VaelabError("codes hold NaN or infinite values; give finite numbers")
        labels = self._labels(y, len(z))
        p = next(self.model.parameters())
        out = []
        for i in range(0, len(z), batch_size):
            zb = z[i:i + batch_size].to(self.device, p.dtype)
            args = (zb,) if labels is None else (zb, labels[i:i + batch_size].to(self.device))
            out.append(self.model.decode(*args).mean.float().clamp(0, 1).cpu())
        return torch.cat(out).reshape(len(z), *self.image_shape) if out else torch.empty(0, *self.image_shape)

    def _labels(self, y, n: int) -> torch.Tensor | None:
        if not self.conditional:
            if y is not None:
                raise VaelabError(f"a '{_name(self.model)}' decodes without labels; drop the label (it is for "
                                  "label-conditional models such as cvae)")
            return None
        if y is None:
            raise VaelabError(f"a '{_name(self.model)}' decodes given a class: choose one from 0 to "
                              f"{self.num_classes - 1}")
        y = torch.as_tensor(y, dtype=torch.int64)
        y = y.expand(n) if y.ndim == 0 else y
        if y.shape != (n,):
            raise VaelabError(f"give one class for all codes or one per code ({n}), got {tuple(y.shape)}")
        bad = (y < 0) | (y >= self.num_classes)
        if bool(bad.any()):
            raise VaelabError(f"class {int(y[bad][0])} is outside this model's classes 0..{self.num_classes - 1}")
        return y

    @torch.inference_mode()
    def dimension_order(self, data, batch_size: int = 1000) -> DimensionOrder:
        """Dimensions ranked by their mean KL(q(z_j|x) ‖ N(0, 1)) over ``data`` (active units
        first) where the model has a posterior, else by the variance of its codes."""
        rows = as_rows(data)
        if hasattr(self.model, "kl_per_dim"):
            total = torch.zeros(self.latent_dim, dtype=torch.float64)
            for i in range(0, len(rows), batch_size):
                total += self.model.kl_per_dim(rows[i:i + batch_size].to(self.device)).double().sum(0).cpu()
            scores, measure = total / max(1, len(rows)), "mean KL(q(z_j|x) || N(0, 1)) in nats"
        else:
            codes = self.encode(rows, batch_size).double()
            scores = codes.var(0) if len(codes) > 1 else torch.zeros(self.latent_dim, dtype=torch.float64)
            measure = "variance of the code"
        order = sorted(range(self.latent_dim), key=lambda j: (-float(scores[j]), j))
        return DimensionOrder(order, [float(s) for s in scores], measure)


def _name(model) -> str:
    return getattr(model, "name", type(model).__name__)
