"""Adversarial autoencoders with a categorical code (Makhzani et al. 2015, §5 and §6): the
semi-supervised AAE (``aae-semi``) and the unsupervised clustering AAE (``aae-cluster``).

One encoder gives two codes of an image: a categorical q(y|x) (a softmax over K classes or
clusters) and a style q(z|x) (deterministic, or Gaussian with ``--encoder gaussian``). The
decoder reads both, p(x | y, z) with y the softmax vector. Two discriminators regularise the
codes: D_y tells one-hot draws of Cat(K) (uniform) from q(y|x)'s softmax vectors, D_z tells
draws of N(0, I) from the style codes. Each step runs these phases, each with its own Adam
optimiser:

    reconstruction  (encoder, decoder):  recon = −log p(x | y, z),  (y, z) ~ q(y, z|x)
    discriminator   (D_y, D_z):          disc_y = −log D_y(y') − log(1 − D_y(y)),  y' ~ Cat(K) one-hot
                                         disc_z = −log D_z(z') − log(1 − D_z(z)),  z' ~ N(0, I)
    generator       (encoder):           gen_y = −log D_y(y),  gen_z = −log D_z(z)
    classification  (encoder; aae-semi): xent = −log q(y = label | x)   on the labelled rows only

In ``aae-semi`` a step of partly labelled data holds labelled rows beside unlabelled ones (the
semi-supervised sampler, ``--labels N``); the reconstruction and adversarial phases use the
unlabelled rows (the paper's unlabelled mini-batch; every row when all are labelled) and the
classification phase the labelled rows. ``classify`` is q(y|x), so ``vaelab eval`` and
``--monitor error`` report its test error. ``aae-cluster`` has no classification phase and
takes no labels; ``cluster_probs`` is q(y|x) over its C clusters, which
:mod:`vaelab.evaluation.clustering` names by labelled reference images.

As in :mod:`.aae`, ``loss`` reports every term and weighs only ``recon``, so a run's validation
``loss`` is the reconstruction term (``aae-semi`` monitors the classification error instead),
and ``training_health`` names a diverged game or codes that collapsed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config, choice, require
from ..errors import VaelabError
from ..nn.init import glorot_, output_bias_from_data_
from ..nn.likelihoods import LIKELIHOODS, make_likelihood
from ..nn.mlp import mlp, validate_network
from . import fields
from .aae import CODE_COLLAPSE, DISC_COLLAPSE, ENCODERS, GEN_DIVERGED, HEALTH_ROWS, _decoder, _encoder
from .base import Batch, Loss, Model, Phase, inputs
from .cvae import sample_labels
from .registry import register
from .vae import gaussian_params

STYLES = 10  # columns of the category/style figure


@dataclass(frozen=True)
class CategoricalAAEConfig(Config):
    """The settings both categorical AAEs share (network sizes default to a CPU-sized version
    of the paper's 1000-1000 MLPs)."""

    input_shape: tuple[int, int, int] = fields.input_shape()
    latent_dim: int = field(default=10, metadata={"help": "size of the style code z (matched to N(0, I))"})
    hidden: tuple[int, ...] = fields.hidden((1000, 1000))
    activation: str = fields.activation("relu")
    backbone: str = fields.backbone("mlp")
    channels: tuple[int, ...] = fields.channels((32, 64))
    likelihood: str = fields.likelihood()
    sigma: float = fields.sigma()
    encoder: str = field(default="deterministic", metadata={
        "help": "q(z|x) of the style: deterministic (a point mass) or gaussian (mean and variance, reparameterised)"})
    disc_hidden: tuple[int, ...] = field(default=(500, 500), metadata={
        "help": "hidden layer sizes of each discriminator, D_y(y) and D_z(z)"})
    disc_lr_scale: float = field(default=0.5, metadata={
        "help": "the discriminator phase's learning rate as a multiple of --lr"})
    gen_lr_scale: float = field(default=0.5, metadata={
        "help": "the generator phase's (encoder fools D_y and D_z) learning rate as a multiple of --lr"})
    adversarial_betas: tuple[float, float] = field(default=(0.5, 0.999), metadata={
        "help": "Adam's β1,β2 of the discriminator and generator phases (the others use --adam-betas)"})
    logit_batchnorm: bool = field(default=False, metadata={
        "help": "batch-normalise the logits of q(y|x) before the softmax (not in the paper; without it the clustering "
                "code collapsed onto 1-3 clusters in our runs, docs/aae.md)"})
    init: str = fields.init("torch")
    output_bias_from_data: bool = fields.output_bias_from_data(True)

    @property
    def categories(self) -> int:
        raise NotImplementedError

    def validate(self) -> None:
        choice("backbone", self.backbone, ("mlp", "conv"))
        validate_network(self, self.backbone == "conv")
        choice("likelihood", self.likelihood, LIKELIHOODS)
        choice("encoder", self.encoder, ENCODERS)
        require(self.sigma > 0, f"sigma must be > 0, got {self.sigma}")
        require(all(h > 0 for h in self.disc_hidden), f"disc_hidden sizes must be positive, got {list(self.disc_hidden)}")
        require(self.disc_lr_scale > 0 and self.gen_lr_scale > 0,
                f"disc_lr_scale and gen_lr_scale must be > 0, got {self.disc_lr_scale}, {self.gen_lr_scale}")
        require(all(0 <= b < 1 for b in self.adversarial_betas),
                f"adversarial_betas must lie in [0, 1), got {list(self.adversarial_betas)}")


@dataclass(frozen=True)
class SemiAAEConfig(CategoricalAAEConfig):
    """:class:`CategoricalAAEConfig` plus the K classes and the classification phase's rate."""

    num_classes: int = field(default=10, metadata={"help": "K, the classes y = 0..K-1 of q(y|x) and of the labels"})
    classify_lr_scale: float = field(default=1.0, metadata={
        "help": "the classification phase's learning rate as a multiple of --lr"})

    @property
    def categories(self) -> int:
        return self.num_classes

    def validate(self) -> None:
        super().validate()
        require(self.num_classes >= 2, f"num_classes must be at least 2, got {self.num_classes}")
        require(self.classify_lr_scale > 0, f"classify_lr_scale must be > 0, got {self.classify_lr_scale}")


@dataclass(frozen=True)
class ClusterAAEConfig(CategoricalAAEConfig):
    """:class:`CategoricalAAEConfig` plus the number of clusters C."""

    clusters: int = field(default=16, metadata={
        "help": "C, the clusters of q(y|x) (the paper: 16 or 30 for MNIST's 10 digits)"})
    # the variant that won benchmarks/aae_cluster_variants.py on validation images (docs/aae.md)
    logit_batchnorm: bool = True
    latent_dim: int = 5
    gen_lr_scale: float = 1.0

    @property
    def categories(self) -> int:
        return self.clusters

    def validate(self) -> None:
        super().validate()
        require(self.clusters >= 2, f"clusters must be at least 2 (one cluster holds every image), got "
                                    f"{self.clusters}; pass e.g. --clusters 16")


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


class CategoricalAAE(Model):
    """What both families share: the two-headed encoder, the decoder of [y, z], the two
    discriminators and the three adversarial-autoencoder phases."""

    def __init__(self, config: CategoricalAAEConfig):
        super().__init__(config)
        self.k = config.categories
        self.likelihood = make_likelihood(config.likelihood, config.sigma)
        out_c = config.input_shape[0] * self.likelihood.params_per_channel
        self.style_width = config.latent_dim * (2 if config.encoder == "gaussian" else 1)
        self.encoder = _encoder(config, self.k + self.style_width)  # [logits of q(y|x), style]
        self.decoder = _decoder(config, self.k + config.latent_dim, out_c)
        self.disc_y = mlp(self.k, config.disc_hidden, 1, "leaky-relu")
        self.disc_z = mlp(config.latent_dim, config.disc_hidden, 1, "leaky-relu")
        # logits normalised over the batch: no shift of every image's logits towards one category
        self.logit_norm = nn.BatchNorm1d(self.k) if config.logit_batchnorm else nn.Identity()
        if config.init == "glorot":
            glorot_(self)

    # -- the codes ---------------------------------------------------------------------
    def codes(self, x: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits of q(y|x), style z): z ~ q(z|x), or its mean when ``sample`` is False."""
        h = self.encoder(x)
        logits, style = self.logit_norm(h[:, :self.k]), h[:, self.k:]
        if self.config.encoder == "deterministic":
            return logits, style
        mu, logvar = gaussian_params(style)
        return logits, (torch.addcmul(mu, (0.5 * logvar).exp(), torch.randn_like(mu)) if sample else mu)

    def category_probs(self, data: Batch | torch.Tensor) -> torch.Tensor:
        """q(y|x), (B, K): each row sums to 1."""
        return F.softmax(self.codes(inputs(data), sample=False)[0], -1)

    def prior_y(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n one-hot draws of the uniform Cat(K), (n, K)."""
        p = next(self.parameters())
        index = torch.randint(self.k, (n,), generator=generator, device=p.device)
        return torch.eye(self.k, dtype=p.dtype, device=p.device).index_select(0, index)

    def prior_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        p = next(self.parameters())
        return torch.randn(n, self.config.latent_dim, generator=generator, device=p.device, dtype=p.dtype)

    def one_hot(self, y, dtype=torch.float32, device=None) -> torch.Tensor:
        """Rows of the K×K identity for indices ``y`` (one line naming a bad index)."""
        y = torch.as_tensor(y, device=device)
        if y.dtype != torch.int64 or y.ndim != 1:
            raise VaelabError(f"{self.name} takes class indices (int64, one per image), got {y.dtype} {tuple(y.shape)}")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.k):
            bad = y[(y < 0) | (y >= self.k)]
            raise VaelabError(f"label {int(bad[0])} is outside this {self.name}'s categories 0..{self.k - 1}; "
                              f"choose labels from 0 to {self.k - 1}, or build it with more categories")
        return torch.eye(self.k, dtype=dtype, device=y.device).index_select(0, y)

    def _decoder_out(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([y, z], 1))

    @torch.no_grad()
    def reconstruct(self, data: Batch | torch.Tensor) -> torch.Tensor:
        """Mean of p(x | q(y|x), z = the style code's mean)."""
        logits, z = self.codes(inputs(data), sample=False)
        return self.likelihood.mean(self._decoder_out(F.softmax(logits, -1), z))

    @torch.no_grad()
    def sample(self, n: int, y: torch.Tensor | int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Means of p(x | y, z), z ~ N(0, I); ``y`` one category for all, n categories, or None
        for the categories cycled 0, 1, ..., K−1, 0, ..."""
        z = self.prior_z(n, generator)
        onehot = self.one_hot(sample_labels(n, y, self.k, z.device), z.dtype)
        return self.likelihood.mean(self._decoder_out(onehot, z))

    # -- objectives ----------------------------------------------------------------------
    def unsupervised_rows(self, batch: Batch | torch.Tensor) -> torch.Tensor:
        """The images the reconstruction and adversarial phases see (all of them here)."""
        return inputs(batch)

    def recon_loss(self, batch: Batch | torch.Tensor) -> Loss:
        """recon = −log p(x | y, z) summed over pixels, averaged over the batch."""
        x = self.unsupervised_rows(batch)
        logits, z = self.codes(x)
        recon = self.likelihood.nll_sum(self._decoder_out(F.softmax(logits, -1), z), x) / x.shape[0]
        return Loss(recon, {"recon": recon}, {"recon": 1.0})

    def _disc_terms(self, y: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """BCE of each discriminator telling prior draws (1) from codes (0), each half averaged."""
        n = y.shape[0]
        return {"disc_y": _bce(self.disc_y(self.prior_y(n)), 1.0) + _bce(self.disc_y(y), 0.0),
                "disc_z": _bce(self.disc_z(self.prior_z(n)), 1.0) + _bce(self.disc_z(z), 0.0)}

    def disc_loss(self, batch: Batch | torch.Tensor) -> Loss:
        """disc_y + disc_z; the codes are constants here."""
        with torch.no_grad():
            logits, z = self.codes(self.unsupervised_rows(batch))
        terms = self._disc_terms(F.softmax(logits, -1), z)
        return Loss(terms["disc_y"] + terms["disc_z"], terms, {"disc_y": 1.0, "disc_z": 1.0})

    def _gen_terms(self, y: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"gen_y": _bce(self.disc_y(y), 1.0), "gen_z": _bce(self.disc_z(z), 1.0)}

    def gen_loss(self, batch: Batch | torch.Tensor) -> Loss:
        """gen_y + gen_z: the encoder moves q(y|x) towards one-hot vectors used equally often
        and its styles to where D_z sees N(0, I)."""
        logits, z = self.codes(self.unsupervised_rows(batch))
        terms = self._gen_terms(F.softmax(logits, -1), z)
        return Loss(terms["gen_y"] + terms["gen_z"], terms, {"gen_y": 1.0, "gen_z": 1.0})

    def encoder_parameters(self) -> list[nn.Parameter]:
        """q(y, z|x)'s weights: the encoder's and the logits' batch-norm scale and shift."""
        return [*self.encoder.parameters(), *self.logit_norm.parameters()]

    def phases(self) -> dict[str, Phase]:
        cfg = self.config
        ae = lambda: [*self.encoder_parameters(), *self.decoder.parameters()]  # noqa: E731
        discs = lambda: [*self.disc_y.parameters(), *self.disc_z.parameters()]  # noqa: E731
        return {
            "reconstruction": Phase(ae, self.recon_loss),
            "discriminator": Phase(discs, self.disc_loss, lr_scale=cfg.disc_lr_scale, betas=cfg.adversarial_betas),
            "generator": Phase(self.encoder_parameters, self.gen_loss,
                               lr_scale=cfg.gen_lr_scale, betas=cfg.adversarial_betas),
        }

    def loss(self, batch: Batch | torch.Tensor) -> Loss:
        """Every term on one batch (all its rows), for validation; ``total`` is ``recon``
        alone (an adversary's loss marks no best epoch)."""
        x = inputs(batch)
        logits, z = self.codes(x)
        y = F.softmax(logits, -1)
        recon = self.likelihood.nll_sum(self._decoder_out(y, z), x) / x.shape[0]
        terms = {"recon": recon, **self._disc_terms(y, z), **self._gen_terms(y, z)}
        return Loss(recon, terms, {k: float(k == "recon") for k in terms})

    # -- divergence ------------------------------------------------------------------------
    @torch.no_grad()
    def training_health(self, train_terms: dict[str, float], data: Batch) -> list[str]:
        """What went wrong in an epoch, one phrase each (empty: nothing): either discriminator's
        loss near 0 over the epoch or its generator loss far above log 2 (that game diverged),
        style codes collapsed to a point, or q(y|x) putting every image in one category."""
        problems = []
        for part, prior in (("y", f"Cat({self.k}) draws"), ("z", "N(0, I) draws")):
            disc, gen = train_terms.get(f"discriminator/disc_{part}"), train_terms.get(f"generator/gen_{part}")
            if disc is not None and disc < DISC_COLLAPSE:
                problems.append(f"D_{part}'s loss averaged {disc:.2g} over the epoch (below {DISC_COLLAPSE}): it "
                                f"separates the codes from {prior} outright, the adversarial game diverged")
            elif gen is not None and gen > GEN_DIVERGED:
                problems.append(f"the generator loss gen_{part} averaged {gen:.3g} over the epoch (above "
                                f"{GEN_DIVERGED:g}): the encoder no longer fools D_{part}, the adversarial game "
                                "diverged (lower --lr or raise --gen-lr-scale)")
        x = inputs(data)[:HEALTH_ROWS]
        if len(x) > 1:
            logits, z = self.codes(x, sample=False)
            std = float(z.std(0).mean())
            if not std > CODE_COLLAPSE:
                problems.append(f"the style codes collapsed (standard deviation {std:.2g} across {len(x)} images)")
            if len(x) >= 10 * self.k and int(torch.unique(logits.argmax(1)).numel()) == 1:
                problems.append(f"q(y|x) puts all {len(x)} checked images in one of its {self.k} categories")
        return problems

    # -- set-up and pictures -----------------------------------------------------------------
    def prepare(self, data: Batch | torch.Tensor) -> None:
        if self.config.output_bias_from_data:
            output_bias_from_data_(self.decoder, inputs(data), self.config.input_shape)

    def end_of_run(self, run_dir, data: Batch, seed: int = 0) -> list[str]:
        """``samples.png``: one row per category, each column one style z from the prior
        (the paper's figures of §5 and §6); and reconstructions."""
        from ..viz.grids import save_png, save_reconstructions

        run_dir = Path(run_dir)
        save_png(self.category_grid(STYLES, seed), run_dir / "samples.png")
        written = ["samples.png"]
        if len(data):
            save_reconstructions(self, data[:32], run_dir / "reconstructions.png")
            written.append("reconstructions.png")
        return written

    @torch.no_grad()
    def category_grid(self, styles: int = STYLES, seed: int = 0):
        """K rows (categories) × ``styles`` columns (one prior draw of z each), as a PIL image."""
        from ..viz.grids import grid

        g = torch.Generator(device=next(self.parameters()).device).manual_seed(seed)
        z = self.prior_z(styles, g).repeat(self.k, 1)
        y = self.one_hot(torch.arange(self.k, device=z.device).repeat_interleave(styles), z.dtype)
        return grid(self.likelihood.mean(self._decoder_out(y, z)), nrow=styles)


@register("aae-semi")
class SemiAAE(CategoricalAAE):
    """The semi-supervised AAE (§5): the adversarial phases shape q(y|x) into one-hot classes
    and z into N(0, I); a fourth phase fits q(y|x) to the labelled rows."""

    Config = SemiAAEConfig
    train_defaults = {"monitor": "error", "val_size": 10000, "val_rows": "last", "labelled_batch_size": 100}

    def classify(self, data: Batch | torch.Tensor) -> torch.Tensor:
        """Logits of q(y|x), (B, K)."""
        return self.codes(inputs(data), sample=False)[0]

    def unsupervised_rows(self, batch: Batch | torch.Tensor) -> torch.Tensor:
        """The unlabelled rows of a step that mixes both (the paper's unlabelled mini-batch),
        else every row."""
        x = inputs(batch)
        if isinstance(batch, Batch) and batch.y is not None and batch.labelled is not None:
            unlabelled = ~batch.labelled
            if bool(unlabelled.any()):
                return x[unlabelled]
        return x

    def class_loss(self, batch: Batch | torch.Tensor) -> Loss:
        """xent = −log q(y = label | x), averaged over the step's labelled rows only (0 with
        no gradient where a step has none)."""
        rows = batch.labelled_rows() if isinstance(batch, Batch) else None
        if rows is None or not bool(rows.any()):
            zero = sum(p.sum() for p in self.encoder_parameters()) * 0.0
            return Loss(zero, {"xent": zero}, {"xent": 1.0})
        y = batch.y[rows]
        self.one_hot(y)  # a label outside 0..K−1: one line
        xent = F.cross_entropy(self.classify(inputs(batch)[rows]), y)
        return Loss(xent, {"xent": xent}, {"xent": 1.0})

    def phases(self) -> dict[str, Phase]:
        return {**super().phases(),
                "classification": Phase(self.encoder_parameters, self.class_loss,
                                        lr_scale=self.config.classify_lr_scale)}

    def loss(self, batch: Batch | torch.Tensor) -> Loss:
        """The shared terms, plus ``xent`` over the labelled rows where there are any (weight 0)."""
        loss = super().loss(batch)
        if isinstance(batch, Batch) and batch.y is not None and bool(batch.labelled_rows().any()):
            xent = self.class_loss(batch).total
            loss.terms["xent"], loss.weights["xent"] = xent, 0.0
        return loss

    def prepare(self, data: Batch | torch.Tensor) -> None:
        """Refuse data without labels (the classification phase needs some), check them."""
        rows = data.labelled_rows() if isinstance(data, Batch) and data.y is not None else None
        if rows is None or not bool(rows.any()):
            raise VaelabError("aae-semi fits q(y|x) to labelled images, but the training data has none; train it on "
                              "a labelled dataset with --labels N (e.g. --labels 100), or use aae-cluster without labels")
        self.one_hot(data.y[rows])
        super().prepare(data)


@register("aae-cluster")
class ClusterAAE(CategoricalAAE):
    """The unsupervised clustering AAE (§6): the semi-supervised architecture without labels;
    q(y|x) over C clusters is the clustering."""

    Config = ClusterAAEConfig

    def cluster_probs(self, data: Batch | torch.Tensor) -> torch.Tensor:
        """q(y|x) over the C clusters, (B, C); each row sums to 1."""
        return self.category_probs(data)

    def prepare(self, data: Batch | torch.Tensor) -> None:
        """Refuse partly labelled training data (``--labels N``): this model learns without labels."""
        if isinstance(data, Batch) and data.y is not None and data.labelled is not None \
                and not bool(data.labelled.all()):
            raise VaelabError("aae-cluster learns without labels, but --labels keeps some; drop --labels "
                              "(or train aae-semi to use them)")
        super().prepare(data)


__all__ = ["CategoricalAAE", "ClusterAAE", "SemiAAE"]
