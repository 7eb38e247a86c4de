"""CMMA, the conditional multimodal autoencoder of Pandey & Dukkipati (2017), "Variational
methods for conditional multimodal deep learning": a conditional **prior** p(z|y).

    p(x, z | y) = p_ψ(z | y) p_θ(x | z)         (x and y independent given z)
    p_ψ(z | y)  = N(μ_ψ(y), diag σ²_ψ(y))        the prior network (``prior_net``)
    q_φ(z | x, y) = N(μ_φ(x, y), diag σ²_φ(x, y))  the encoder (``--encoder xy``), or q_φ(z | x) (``x``)
    −ELBO(x, y) = E_q[−log p_θ(x | z)] + KL(q_φ(z | x, y) ‖ p_ψ(z | y))  ≥  −log p(x | y)

y is a vector of **attributes**: the one-hot class and/or morphometrics of the image
(:mod:`vaelab.morphometrics`: thickness, slant, ...), each standardized by the training
images' mean and standard deviation, which the config records (``attribute_mean``,
``attribute_std``, in the measure's units: pixels, radians) together with the training
range (``attribute_low``, ``attribute_high``), so that generation is asked in pixels and
degrees and refuses what the training data never showed. The decoder sees z alone: whatever
y says must pass through z, which is what lets the prior generate from attributes.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import choice, require
from ..errors import VaelabError
from ..morphometrics import MEASURES, dataset_morphometrics, measure
from ..nn.gaussian import kl_diagonal_gaussians, kl_per_dimension
from ..nn.init import glorot_
from ..nn.mlp import mlp
from .base import Batch, Loss, inputs
from .registry import register
from .vae import VAE, VAEConfig, gaussian_params, vae_networks

ATTRIBUTES = ("class",) + MEASURES
DEFAULT_ATTRIBUTES = ("class", "thickness", "slant")
# What a user types for each measure; the model keeps the measure's own units (slant in radians).
UNITS = {"class": "class index", "area": "pixels²", "length": "pixels", "thickness": "pixels",
         "slant": "degrees", "width": "pixels", "height": "pixels"}
SAMPLES_PER_CLASS = 10
MEASURE_UNCACHED = 64  # a few images (an edit) are measured without writing a cache file


def to_measured(name: str, value: float) -> float:
    """A user's value (pixels, degrees) in the units morphometrics measure (pixels, radians)."""
    return math.radians(value) if name == "slant" else float(value)


def to_user(name: str, value: float) -> float:
    return math.degrees(value) if name == "slant" else float(value)


def _stat(help_text: str):
    return field(default=(), metadata={"option": False, "help": help_text})


@dataclass(frozen=True)
class CMMAConfig(VAEConfig):
    """:class:`VAEConfig` plus what y holds, the encoder's inputs, the prior network's layers and
    the training images' attribute statistics (set from the data by :meth:`CMMA.data_settings`)."""

    attributes: tuple[str, ...] = field(default=DEFAULT_ATTRIBUTES, metadata={
        "help": "what y holds, comma-separated: class and/or the morphometrics thickness, slant, area, "
                "length, width, height (measured on the training images)"})
    num_classes: int = field(default=10, metadata={"help": "K, the classes 0..K-1 when y holds the class"})
    encoder: str = field(default="xy", metadata={"help": "xy: q(z|x, y); x: q(z|x) (y reaches z only through the prior)"})
    prior_hidden: tuple[int, ...] = field(default=(200,), metadata={
        "help": "hidden layer sizes of the prior network p(z|y) (none = linear)"})
    attribute_mean: tuple[float, ...] = _stat("training mean of each measured attribute (pixels, radians)")
    attribute_std: tuple[float, ...] = _stat("training standard deviation of each measured attribute")
    attribute_low: tuple[float, ...] = _stat("smallest training value of each measured attribute")
    attribute_high: tuple[float, ...] = _stat("largest training value of each measured attribute")

    @property
    def measured(self) -> tuple[str, ...]:
        return tuple(a for a in self.attributes if a != "class")

    def validate(self) -> None:
        super().validate()
        require(len(self.attributes) > 0, "attributes must name at least one of: " + ", ".join(ATTRIBUTES))
        for name in self.attributes:
            require(name in ATTRIBUTES, f"unknown attribute '{name}'; choose from: {', '.join(ATTRIBUTES)}")
        require(len(set(self.attributes)) == len(self.attributes), f"attributes named twice: {list(self.attributes)}")
        require(self.num_classes >= 2, f"num_classes must be at least 2, got {self.num_classes}")
        choice("encoder", self.encoder, ("xy", "x"))
        require(all(h > 0 for h in self.prior_hidden), f"prior_hidden sizes must be positive, got {list(self.prior_hidden)}")
        stats = (self.attribute_mean, self.attribute_std, self.attribute_low, self.attribute_high)
        require(all(len(s) in (0, len(self.measured)) for s in stats),
                f"the attribute statistics must hold one value per measured attribute ({', '.join(self.measured)}); "
                "train with vaelab.train or `vaelab train cmma`, which fit them on the training images, "
                "or fill them with CMMA.data_settings(dataset, settings)")
        require(all(s > 0 and math.isfinite(s) for s in self.attribute_std), "attribute_std must be positive")

    def statistics(self) -> tuple[tuple[float, ...], ...]:
        """(mean, std, low, high) per measured attribute; a config built without data (never
        fitted) reads as mean 0, std 1 and no range: y then holds the raw measures."""
        n = len(self.measured)
        if len(self.attribute_mean) == n and len(self.attribute_std) == n and len(self.attribute_low) == n:
            return self.attribute_mean, self.attribute_std, self.attribute_low, self.attribute_high
        return (0.0,) * n, (1.0,) * n, (-math.inf,) * n, (math.inf,) * n


@register("cmma")
class CMMA(VAE):
    Config = CMMAConfig
    conditional = True  # its density is p(x|y): evaluation reports cnll

    def __init__(self, config: CMMAConfig):
        super().__init__(config)  # decoder p(x|z) and an x-only encoder
        if config.encoder == "xy":
            self.encoder, _ = vae_networks(config, self.out_shape[0], self.y_width)
        self.prior_net = mlp(self.y_width, config.prior_hidden, 2 * config.latent_dim, config.activation)
        if config.init == "glorot":
            glorot_(self)

    # -- attributes -----------------------------------------------------------------
    @property
    def attribute_names(self) -> tuple[str, ...]:
        return tuple(self.config.attributes)

    @property
    def y_width(self) -> int:
        """Width of y: K one-hot columns for the class, then one per measured attribute."""
        return self.config.num_classes * ("class" in self.config.attributes) + len(self.config.measured)

    @classmethod
    def data_settings(cls, ds, settings: dict) -> dict:
        """``settings`` with the attribute statistics of the training images ``ds`` filled in
        (mean, std, range of each measured attribute; morphometrics measured once, cached)."""
        config = dict(settings)
        attributes = tuple(config.get("attributes", DEFAULT_ATTRIBUTES))
        unknown = [a for a in attributes if a not in ATTRIBUTES]
        if unknown:
            raise VaelabError(f"unknown attribute '{unknown[0]}'; choose from: {', '.join(ATTRIBUTES)}")
        measured = [a for a in attributes if a != "class"]
        if not measured or config.get("attribute_mean"):
            return config
        figures = dataset_morphometrics(ds)
        if not figures.valid.any():
            raise VaelabError("no training image has a stroke to measure attributes on")
        values = [getattr(figures, m)[figures.valid] for m in measured]
        return {**config, "attribute_mean": [float(v.mean()) for v in values],
                "attribute_std": [float(max(v.std(), 1e-6)) for v in values],
                "attribute_low": [float(v.min()) for v in values], "attribute_high": [float(v.max()) for v in values]}

    def condition_data(self, ds):
        """``ds`` with y = this model's attribute vectors [onehot(class), standardized measures]
        (the images measured once, cached); a dataset that already holds them is returned as is."""
        y = ds.y
        if y is not None and y.is_floating_point() and y.ndim == 2 and y.shape[1] == self.y_width:
            return ds
        parts = []
        if "class" in self.config.attributes:
            if y is None or y.dtype != torch.int64 or y.ndim != 1 or ds.labelled is not None and not bool(ds.labelled.all()):
                raise VaelabError("this cmma conditions on the class: give images with a class label each")
            parts.append(self.one_hot(y))
        if self.config.measured:  # a few images are measured at once; a dataset once, then cached
            figures = measure(ds.x) if len(ds) <= MEASURE_UNCACHED else dataset_morphometrics(ds)
            measured = np.stack([getattr(figures, m) for m in self.config.measured], 1)
            parts.append(torch.from_numpy(self._standardize(measured)).float())
        return dataclasses.replace(ds, y=torch.cat(parts, 1), classes=None, labelled=None)

    def _standardize(self, measured: np.ndarray) -> np.ndarray:
        mean, std, _, _ = self.config.statistics()
        return (measured - np.asarray(mean)) / np.asarray(std)

    def one_hot(self, y: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        k = self.config.num_classes
        bad = (y < 0) | (y >= k)
        if bool(bad.any()):
            raise VaelabError(f"class {int(y[bad][0])} is outside this cmma's classes 0..{k - 1}")
        return F.one_hot(y, k).to(dtype)

    def attribute_vectors(self, request: dict, n: int = 1, extrapolate: bool = False) -> torch.Tensor:
        """(n, width of y) standardized attribute vectors for ``request`` {name: value in the
        user's units, see ``UNITS``}. Measures left out stay at their training mean; a class
        left out cycles 0, 1, ..., K−1 over the n rows. A name the model does not know, a value
        that is not a finite number, or one outside the training range (unless ``extrapolate``)
        is refused in one line."""
        self._check_request(request, extrapolate)
        p = next(self.parameters())
        parts = []
        if "class" in self.config.attributes:
            label = request.get("class")
            y = torch.arange(n) % self.config.num_classes if label is None else torch.full((n,), int(label))
            parts.append(self.one_hot(y))
        mean, std, _, _ = self.config.statistics()
        values = [(to_measured(m, request[m]) - mean[i]) / std[i] if m in request else 0.0
                  for i, m in enumerate(self.config.measured)]
        parts.append(torch.tensor(values, dtype=torch.float32).expand(n, -1))
        return torch.cat(parts, 1).to(p.device, p.dtype)

    def _check_request(self, request: dict, extrapolate: bool) -> None:
        c = self.config
        for name, value in request.items():
            if name not in c.attributes:
                raise VaelabError(f"unknown attribute '{name}': this cmma was trained with {', '.join(c.attributes)}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise VaelabError(f"{name}={value} is not a finite number; give a value in {UNITS[name]}")
            if name == "class":
                if value != int(value) or not 0 <= value < c.num_classes:
                    raise VaelabError(f"class={value:g} is not one of this model's classes 0..{c.num_classes - 1}")
                continue
            i = c.measured.index(name)
            _, _, lows, highs = c.statistics()
            low, high = to_user(name, lows[i]), to_user(name, highs[i])
            if not extrapolate and not low <= value <= high:
                raise VaelabError(f"{name}={value:g} is outside the training range {low:.3g}..{high:.3g} {UNITS[name]}; "
                                  "choose a value inside it, or pass --extrapolate (extrapolate=True) to decode it anyway")

    def with_attributes(self, y: torch.Tensor, changes: dict, extrapolate: bool = False) -> torch.Tensor:
        """Attribute vectors ``y`` (B, width) with the attributes ``changes`` names set to its
        values (user units, checked as in :meth:`attribute_vectors`)."""
        new = self.attribute_vectors(changes, len(y), extrapolate).to(y)
        out = y.clone()
        k = self.config.num_classes if "class" in self.config.attributes else 0
        if "class" in changes:
            out[:, :k] = new[:, :k]
        for i, m in enumerate(self.config.measured):
            if m in changes:
                out[:, k + i] = new[:, k + i]
        return out

    def describe(self, y: torch.Tensor) -> list[dict]:
        """Attribute vectors (B, width) back in the user's units, one dict per row."""
        c = self.config
        k = c.num_classes if "class" in c.attributes else 0
        mean, std, _, _ = c.statistics()
        rows = []
        for v in y.detach().cpu().double():
            row = {"class": int(v[:k].argmax())} if k else {}
            row.update({m: to_user(m, float(v[k + i]) * std[i] + mean[i])
                        for i, m in enumerate(c.measured)})
            rows.append(row)
        return rows

    def condition(self, y: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """y as the networks take it: attribute vectors (B, width) as they are, or class indices
        when the class is the only attribute; anything else refused in one line."""
        w = self.y_width
        if y.is_floating_point() and y.ndim == 2 and y.shape[1] == w:
            if not bool(torch.isfinite(y).all()):
                raise VaelabError("attribute vectors hold NaN or infinite values; give finite attributes")
            return y.to(dtype)
        if y.dtype == torch.int64 and y.ndim == 1 and self.attribute_names == ("class",):
            return self.one_hot(y, dtype)
        raise VaelabError(f"cmma conditions on attribute vectors of width {w} ({', '.join(self.attribute_names)}), "
                          f"got {y.dtype} {tuple(y.shape)}; turn a dataset's labels into them with "
                          "model.condition_data(dataset)")

    def observed(self, data: Batch | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of a batch whose every row carries its attributes."""
        x = inputs(data)
        if not isinstance(data, Batch) or data.y is None:
            raise VaelabError("cmma models p(x|y) and needs each image's attributes y: pass a Dataset (its labels "
                              "become attribute vectors through model.condition_data) or a Batch(x, y)")
        if not bool(data.labelled_rows().all()):
            raise VaelabError("cmma needs the attributes of every image, but some rows are unlabelled")
        return x, self.condition(data.y.to(x.device), x.dtype)

    # -- the model's pieces ------------------------------------------------------------
    def prior_params(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and (clamped) log-variance of the prior network's p_ψ(z | y)."""
        return gaussian_params(self.prior_net(y))

    def _posterior(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.encoder == "x":
            return gaussian_params(self.encoder(x))
        if self.config.backbone == "mlp":
            return gaussian_params(self.encoder(torch.cat([x.flatten(1), y], 1)))
        return gaussian_params(self.encoder(torch.cat([x, y[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)))

    def posterior_params(self, data: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and (clamped) log-variance of q_φ(z | x, y) (or q_φ(z | x))."""
        return self._posterior(*self.observed(data))

    def decode(self, z: torch.Tensor, y=None):
        """p_θ(x | z): y is not an input of the decoder (x ⫫ y | z); accepted and ignored."""
        return self.likelihood.distribution(self.decoder(z))

    @torch.no_grad()
    def reconstruct(self, data: Batch) -> torch.Tensor:
        """Mean of p(x | z = E[q(z | x, y)])."""
        x, y = self.observed(data)
        return self.likelihood.mean(self.decoder(self._posterior(x, y)[0]))

    @torch.no_grad()
    def sample(self, n: int, y=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Means of p(x | z) for z ~ p_ψ(z | y). ``y``: attribute vectors (n, width) or one
        (width,); a class index or n of them (the measures at their training mean); None
        for the classes cycled, the measures at their mean."""
        return self.likelihood.mean(self.decoder(self.prior_sample(self._conditions(n, y), generator)))

    def prior_sample(self, y: torch.Tensor, generator=None) -> torch.Tensor:
        mu, logvar = self.prior_params(y)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return torch.addcmul(mu, torch.exp(0.5 * logvar), eps)

    def _conditions(self, n: int, y) -> torch.Tensor:
        p = next(self.parameters())
        if y is None:
            return self.attribute_vectors({}, n)
        y = torch.as_tensor(y, device=p.device)
        if y.is_floating_point():
            return self.condition(y.expand(n, -1) if y.ndim == 1 else y, p.dtype)
        if "class" not in self.config.attributes:
            raise VaelabError("this cmma was trained without the class; request attributes instead of a label")
        labels = y.long().expand(n) if y.ndim == 0 else y.long()
        if labels.shape != (n,):
            raise VaelabError(f"sample: give one class or {n} classes, got shape {tuple(labels.shape)}")
        return torch.cat([self.one_hot(labels, p.dtype), self.attribute_vectors({}, n)[:, self.config.num_classes:]], 1)

    @torch.no_grad()
    def edit(self, data: Batch, changes: dict, extrapolate: bool = False, via: str = "prior") -> torch.Tensor:
        """Decode each image of ``data`` with the attributes ``changes`` names set anew (user
        units). ``via="prior"``: the image's place in its prior is kept, ε = (E[q(z|x, y)] −
        μ_ψ(y)) / σ_ψ(y), decoded at z' = μ_ψ(y') + σ_ψ(y')·ε, the z the same ε gives under y'.
        ``via="posterior"``: z' = E[q(z|x, y')] (the encoder still sees the old x; weaker edits)."""
        choice("via", via, ("prior", "posterior"))
        x, y = self.observed(data)
        edited = self.with_attributes(y, changes, extrapolate)
        if via == "posterior":
            return self.likelihood.mean(self.decoder(self._posterior(x, edited)[0]))
        z = self._posterior(x, y)[0]
        mu, logvar = self.prior_params(y)
        mu_new, logvar_new = self.prior_params(edited)
        eps = (z - mu) * torch.exp(-0.5 * logvar)
        return self.likelihood.mean(self.decoder(torch.addcmul(mu_new, torch.exp(0.5 * logvar_new), eps)))

    # -- objectives ----------------------------------------------------------------------
    def loss(self, batch: Batch) -> Loss:
        """−ELBO(x, y) = E_q(z|x,y)[−log p_θ(x | z)] + β·KL(q_φ(z | x, y) ‖ p_ψ(z | y)), per example."""
        x, y = self.observed(batch)
        mu_q, logvar_q = self._posterior(x, y)  # q_φ(z | x, y)
        mu_p, logvar_p = self.prior_params(y)  # p_ψ(z | y)
        z = torch.addcmul(mu_q, torch.exp(0.5 * logvar_q), torch.randn_like(mu_q))  # z ~ q, reparameterised
        recon = self.likelihood.nll_sum(self.decoder(z), x) / x.shape[0]  # E_q[−log p_θ(x | z)]
        kl = kl_diagonal_gaussians(mu_q, logvar_q, mu_p, logvar_p).sum() / x.shape[0]
        return Loss(recon + self.kl_weight * kl, {"recon": recon, "kl": kl}, {"recon": 1.0, "kl": self.kl_weight})

    def kl_per_dim(self, data: Batch) -> torch.Tensor:
        """KL(q(z_j | x, y) ‖ p_ψ(z_j | y)) per example and latent dimension, shape (B, L)."""
        x, y = self.observed(data)
        return kl_per_dimension(*self._posterior(x, y), *self.prior_params(y))

    def importance_log_weights(self, data: Batch, k: int, generator=None) -> torch.Tensor:
        """log p(x | z_i) + log p_ψ(z_i | y) − log q(z_i | x, y), z_i ~ q: shape (B, k); their
        logsumexp − log k estimates log p(x | y). ``generator``: one, or one per image."""
        x, y = self.observed(data)
        mu, logvar = self._posterior(x, y)
        mu_p, logvar_p = self.prior_params(y)
        b, dim = mu.shape
        if isinstance(generator, (list, tuple)):
            eps = torch.stack([torch.randn(k, dim, generator=g, device=mu.device, dtype=mu.dtype) for g in generator])
        else:
            eps = torch.randn(b, k, dim, generator=generator, device=mu.device, dtype=mu.dtype)
        z = torch.addcmul(mu.unsqueeze(1), torch.exp(0.5 * logvar).unsqueeze(1), eps)
        log_px = self.likelihood.log_prob_samples(self.decoder(z.view(b * k, dim)).view(b, k, *self.out_shape), x)
        # both densities without their common −(L/2) log 2π
        log_pz = -0.5 * ((z - mu_p.unsqueeze(1)).square() * torch.exp(-logvar_p).unsqueeze(1)).sum(-1) \
            - 0.5 * logvar_p.sum(-1, keepdim=True)
        log_qz = -0.5 * eps.square().sum(-1) - 0.5 * logvar.sum(-1, keepdim=True)
        return log_px + log_pz - log_qz

    def prepare(self, data: Batch | torch.Tensor) -> None:
        """Check the attributes (when given), then the VAE's output bias."""
        if isinstance(data, Batch) and data.y is not None:
            self.observed(data)
        super().prepare(data)

    def end_of_run(self, run_dir, data: Batch, seed: int = 0) -> list[str]:
        """``samples.png`` (one row per class where y holds it, the measures at their mean) and
        ``reconstructions.png``."""
        from ..viz.grids import grid, save_png, save_reconstructions

        run_dir = Path(run_dir)
        g = torch.Generator(device=next(self.parameters()).device).manual_seed(seed)
        k = self.config.num_classes if "class" in self.config.attributes else SAMPLES_PER_CLASS
        save_png(grid(self.sample(k * SAMPLES_PER_CLASS, generator=g).cpu()[self._row_order(k)], nrow=SAMPLES_PER_CLASS),
                 run_dir / "samples.png")
        written = ["samples.png"]
        if len(data):
            save_reconstructions(self, data[:32], run_dir / "reconstructions.png")
            written.append("reconstructions.png")
        return written

    @staticmethod
    def _row_order(k: int) -> torch.Tensor:
        """Samples drawn with the classes cycled, reordered to one row per class."""
        return torch.arange(k * SAMPLES_PER_CLASS).view(SAMPLES_PER_CLASS, k).t().reshape(-1)
