"""The adversarial autoencoder (Makhzani, Shlens, Jaitly, Goodfellow & Frey 2015).

An autoencoder whose aggregated posterior q(z) = E_x q(z|x) is matched to a prior p(z) by a
discriminator D(z) instead of a KL term. Each training step has three phases, each with its
own Adam optimiser:

    reconstruction  (encoder, decoder):  recon = E_x[−log p(x | z)],  z ~ q(z|x)
    discriminator   (D):                  disc  = −log D(z') − log(1 − D(z)),  z' ~ p(z), z ~ q(z|x)
    generator       (encoder):            gen   = −log D(z),  z ~ q(z|x)   (the encoder fools D)

q(z|x) is a deterministic encoder (a point mass) or, with ``encoder="gaussian"``, a Gaussian
(the paper's second option). Priors: N(0, I), a 10-component 2-D Gaussian mixture, a 2-D
swiss roll (:mod:`vaelab.nn.priors`). With ``supervised=True`` the decoder also reads the
one-hot label, so z holds the style and y the content (the paper's supervised AAE).

The networks and likelihoods are the VAE's blocks. ``loss`` reports all three terms and
weighs only ``recon`` (``disc`` and ``gen`` have weight 0), so a run's validation ``loss`` —
what marks its best epoch — is the reconstruction term, never a discriminator loss.
``training_health`` names a diverged adversarial game (D wins outright, or codes collapse)
so the trainer does not keep such an epoch as the best.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import distributions as td
from torch import nn

from ..config import Config, choice, require
from ..errors import VaelabError
from ..nn.conv import ConvDecoder, ConvEncoder
from ..nn.deterministic import PointMass
from ..nn.init import glorot_, output_bias_from_data_
from ..nn.likelihoods import LIKELIHOODS, make_likelihood
from ..nn.mlp import mlp, validate_network
from ..nn.priors import PRIORS, TWO_D_PRIORS, sample_prior
from . import fields
from .base import Batch, Loss, Model, Phase, inputs
from .cvae import sample_labels
from .registry import register
from .vae import gaussian_params

ENCODERS = ("deterministic", "gaussian")
DISC_COLLAPSE = 0.01   # an epoch's mean discriminator loss below this: D separates codes from the prior
GEN_DIVERGED = 10.0    # an epoch's mean generator loss above this: D gives the codes probability below e^-10
CODE_COLLAPSE = 1e-3   # the codes' standard deviation (mean over dimensions) below this: codes collapsed
HEALTH_ROWS = 1000     # images encoded for the collapse check
STYLES = 10            # rows of the supervised style/content figure


@dataclass(frozen=True)
class AAEConfig(Config):
    """Constructor arguments of :class:`AAE` (saved as ``config.json``)."""

    input_shape: tuple[int, int, int] = fields.input_shape()
    latent_dim: int = fields.latent_dim(8)
    hidden: tuple[int, ...] = fields.hidden((400,))
    activation: str = fields.activation("relu")
    backbone: str = fields.backbone("mlp")
    channels: tuple[int, ...] = fields.channels((32, 64))
    likelihood: str = fields.likelihood()
    sigma: float = fields.sigma()
    encoder: str = field(default="deterministic", metadata={
        "help": "q(z|x): deterministic (a point mass) or gaussian (mean and variance, reparameterised)"})
    prior: str = field(default="normal", metadata={
        "help": "p(z) the codes are matched to: normal (N(0, I)), mixture (10 Gaussians on a circle, 2-D) or "
                "swiss-roll (2-D)"})
    disc_hidden: tuple[int, ...] = field(default=(256, 256), metadata={
        "help": "hidden layer sizes of the discriminator D(z)"})
    disc_lr_scale: float = field(default=0.5, metadata={
        "help": "the discriminator phase's learning rate as a multiple of --lr"})
    gen_lr_scale: float = field(default=0.5, metadata={
        "help": "the generator phase's (encoder fools D) learning rate as a multiple of --lr"})
    adversarial_betas: tuple[float, float] = field(default=(0.5, 0.999), metadata={
        "help": "Adam's β1,β2 of the discriminator and generator phases (the reconstruction phase uses "
                "--adam-betas)"})
    supervised: bool = field(default=False, metadata={
        "help": "feed the one-hot label to the decoder (z = style, y = content); needs labelled data"})
    num_classes: int = field(default=10, metadata={"help": "K, the classes y = 0..K-1 of --supervised"})
    init: str = fields.init("torch")
    output_bias_from_data: bool = fields.output_bias_from_data(True)

    def validate(self) -> None:
        choice("backbone", self.backbone, ("mlp", "conv"))
        validate_network(self, self.backbone == "conv")
        choice("likelihood", self.likelihood, LIKELIHOODS)
        choice("encoder", self.encoder, ENCODERS)
        choice("prior", self.prior, PRIORS)
        if self.prior in TWO_D_PRIORS:
            require(self.latent_dim == 2, f"the {self.prior} prior is 2-D, but latent_dim is {self.latent_dim}; "
                                          f"pass --latent-dim 2, or use --prior normal for other sizes")
        require(self.sigma > 0, f"sigma must be > 0, got {self.sigma}")
        require(all(h > 0 for h in self.disc_hidden), f"disc_hidden sizes must be positive, got {list(self.disc_hidden)}")
        require(self.disc_lr_scale > 0 and self.gen_lr_scale > 0,
                f"disc_lr_scale and gen_lr_scale must be > 0, got {self.disc_lr_scale}, {self.gen_lr_scale}")
        require(all(0 <= b < 1 for b in self.adversarial_betas),
                f"adversarial_betas must lie in [0, 1), got {list(self.adversarial_betas)}")
        require(self.num_classes >= 2, f"num_classes must be at least 2, got {self.num_classes}")


def _encoder(cfg: AAEConfig, width: int) -> nn.Module:
    """x -> ``width`` features, from the VAE's blocks (MLP or stride-2 convolutions)."""
    c, h, w = cfg.input_shape
    if cfg.backbone == "mlp":
        return nn.Sequential(nn.Flatten(), mlp(c * h * w, cfg.hidden, width, cfg.activation))
    return ConvEncoder((c, h, w), cfg.channels, width, cfg.activation, cfg.hidden)


def _decoder(cfg: AAEConfig, in_features: int, out_channels: int) -> nn.Module:
    c, h, w = cfg.input_shape
    if cfg.backbone == "mlp":
        return nn.Sequential(mlp(in_features, tuple(reversed(cfg.hidden)), out_channels * h * w, cfg.activation),
                             nn.Unflatten(1, (out_channels, h, w)))
    return ConvDecoder(in_features, cfg.channels, cfg.input_shape, out_channels, cfg.activation, cfg.hidden)


@register("aae")
class AAE(Model):
    Config = AAEConfig

    def __init__(self, config: AAEConfig):
        super().__init__(config)
        self.conditional = config.supervised  # decodes p(x|z, y): analogies and the conditional checks apply
        c = config.input_shape[0]
        self.likelihood = make_likelihood(config.likelihood, config.sigma)
        out_c = c * self.likelihood.params_per_channel
        gaussian = config.encoder == "gaussian"
        self.encoder = _encoder(config, config.latent_dim * (2 if gaussian else 1))
        extra = config.num_classes if config.supervised else 0
        self.decoder = _decoder(config, config.latent_dim + extra, out_c)
        self.discriminator = mlp(config.latent_dim, config.disc_hidden, 1, "leaky-relu")
        if config.init == "glorot":
            glorot_(self)

    # -- the label (supervised) --------------------------------------------------------
    def one_hot(self, y: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        k = self.config.num_classes
        y = torch.as_tensor(y)
        if y.dtype != torch.int64 or y.ndim != 1:
            raise VaelabError(f"the supervised aae takes class indices as y (int64, one per image), got "
                              f"{y.dtype} {tuple(y.shape)}; pass labels such as a dataset's y")
        if len(y):
            low, high = torch.aminmax(y)
            if int(low) < 0 or int(high) >= k:
                bad = y[(y < 0) | (y >= k)]
                raise VaelabError(f"label {int(bad[0])} is outside this aae's classes 0..{k - 1} "
                                  f"(num_classes={k}); choose labels from 0 to {k - 1}, or build it with "
                                  "num_classes covering every label")
        return torch.eye(k, dtype=dtype, device=y.device).index_select(0, y)

    def _labels(self, data) -> torch.Tensor | None:
        """onehot(y) of a labelled batch for the supervised model; None for the unsupervised one."""
        if not self.config.supervised:
            return None
        if not isinstance(data, Batch) or data.y is None:
            raise VaelabError("this aae is supervised (the decoder reads the label) and needs each image's class "
                              "label: pass a Batch(x, y) or labelled data")
        if data.labelled is not None and not bool(data.labelled.all()):
            raise VaelabError("the supervised aae needs a label for every image; train it on the labelled rows")
        x = inputs(data)
        return self.one_hot(data.y.to(x.device), x.dtype)

    # -- the model's pieces ------------------------------------------------------------
    def code(self, x: torch.Tensor, sample: bool = True) -> torch.Tensor:
        """z ~ q(z|x) (the mean when ``sample`` is False; a deterministic encoder has only that)."""
        h = self.encoder(x)
        if self.config.encoder == "deterministic":
            return h
        mu, logvar = gaussian_params(h)
        return torch.addcmul(mu, (0.5 * logvar).exp(), torch.randn_like(mu)) if sample else mu

    def encode(self, data: Batch | torch.Tensor) -> td.Distribution:
        """q(z|x): a point mass at the code, or a diagonal Gaussian; ``.mean`` is the code."""
        h = self.encoder(inputs(data))
        if self.config.encoder == "deterministic":
            return PointMass(h)
        mu, logvar = gaussian_params(h)
        return td.Independent(td.Normal(mu, torch.exp(0.5 * logvar)), 1)

    def _decoder_out(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.decoder(z if y is None else torch.cat([z, y], 1))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> td.Distribution:
        """p(x|z) (supervised: p(x|z, y) for class indices ``y``)."""
        if self.config.supervised:
            if y is None:
                raise VaelabError("this aae is supervised: decode(z, y) needs the class of each code")
            y = self.one_hot(torch.as_tensor(y, device=z.device), z.dtype)
        return self.likelihood.distribution(self._decoder_out(z, y))

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        p = next(self.parameters())
        return sample_prior(self.config.prior, n, self.config.latent_dim, generator, p.device, p.dtype)

    @torch.no_grad()
    def reconstruct(self, data: Batch | torch.Tensor) -> torch.Tensor:
        """Mean of p(x | z = the code of x) (supervised: with x's label)."""
        x = inputs(data)
        return self.likelihood.mean(self._decoder_out(self.code(x, sample=False), self._labels(data)))

    @torch.no_grad()
    def sample(self, n: int, y: torch.Tensor | int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Means of p(x|z) for z drawn from the prior. Supervised: ``y`` is one class for all, n
        classes, or None for the classes cycled 0, 1, ..., K−1, 0, ..."""
        z = self.prior_sample(n, generator)
        onehot = None
        if self.config.supervised:
            onehot = self.one_hot(sample_labels(n, y, self.config.num_classes, z.device), z.dtype)
        elif y is not None:
            raise VaelabError("this aae is unsupervised: its samples take no label (train with --supervised)")
        return self.likelihood.mean(self._decoder_out(z, onehot))

    # -- objectives --------------------------------------------------------------------
    def recon_loss(self, batch: Batch | torch.Tensor) -> Loss:
        """recon = −log p(x|z) summed over pixels, z ~ q(z|x), averaged over the batch."""
        x = inputs(batch)
        recon = self.likelihood.nll_sum(self._decoder_out(self.code(x), self._labels(batch)), x) / x.shape[0]
        return Loss(recon, {"recon": recon}, {"recon": 1.0})

    def _disc(self, x: torch.Tensor, z_fake: torch.Tensor) -> torch.Tensor:
        """BCE of D telling prior draws (1) from codes (0): mean over each half, summed."""
        z_real = self.prior_sample(x.shape[0])
        real, fake = self.discriminator(z_real), self.discriminator(z_fake)
        return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))

    def disc_loss(self, batch: Batch | torch.Tensor) -> Loss:
        """disc = −E_p(z) log D(z) − E_q(z) log(1 − D(z)); the codes are constants here."""
        x = inputs(batch)
        with torch.no_grad():
            z = self.code(x)
        disc = self._disc(x, z)
        return Loss(disc, {"disc": disc}, {"disc": 1.0})

    def gen_loss(self, batch: Batch | torch.Tensor) -> Loss:
        """gen = −E_q(z) log D(z): the encoder moves its codes to where D sees the prior."""
        d = self.discriminator(self.code(inputs(batch)))
        gen = F.binary_cross_entropy_with_logits(d, torch.ones_like(d))
        return Loss(gen, {"gen": gen}, {"gen": 1.0})

    def phases(self) -> dict[str, Phase]:
        cfg = self.config
        ae = lambda: [*self.encoder.parameters(), *self.decoder.parameters()]  # noqa: E731
        return {
            "reconstruction": Phase(ae, self.recon_loss),
            "discriminator": Phase(self.discriminator.parameters, self.disc_loss,
                                   lr_scale=cfg.disc_lr_scale, betas=cfg.adversarial_betas),
            "generator": Phase(self.encoder.parameters, self.gen_loss,
                               lr_scale=cfg.gen_lr_scale, betas=cfg.adversarial_betas),
        }

    def loss(self, batch: Batch | torch.Tensor) -> Loss:
        """All three terms on one batch's codes, for validation; ``total`` is ``recon`` alone
        (``disc`` and ``gen`` are reported with weight 0: an adversary's loss marks no best epoch)."""
        x = inputs(batch)
        z = self.code(x)
        recon = self.likelihood.nll_sum(self._decoder_out(z, self._labels(batch)), x) / x.shape[0]
        disc = self._disc(x, z)
        d = self.discriminator(z)
        gen = F.binary_cross_entropy_with_logits(d, torch.ones_like(d))
        return Loss(recon, {"recon": recon, "disc": disc, "gen": gen}, {"recon": 1.0, "disc": 0.0, "gen": 0.0})

    # -- divergence ------------------------------------------------------------------------
    @torch.no_grad()
    def training_health(self, train_terms: dict[str, float], data: Batch) -> list[str]:
        """What went wrong in an epoch's adversarial game, one phrase each (empty: nothing):
        the discriminator's loss near 0 over the whole epoch (it tells codes from prior draws
        every time, so the encoder gets no useful signal), the generator's loss far above its
        equilibrium value log 2 (the encoder has lost the game), or the codes collapsed to a point."""
        problems = []
        disc, gen = train_terms.get("discriminator/disc"), train_terms.get("generator/gen")
        if disc is not None and disc < DISC_COLLAPSE:
            problems.append(f"the discriminator loss averaged {disc:.2g} over the epoch (below {DISC_COLLAPSE}): "
                            "D separates codes from prior draws outright, the adversarial game diverged")
        elif gen is not None and gen > GEN_DIVERGED:
            problems.append(f"the generator loss averaged {gen:.3g} over the epoch (above {GEN_DIVERGED:g}): the "
                            "encoder no longer fools D, the adversarial game diverged (lower --lr or raise "
                            "--gen-lr-scale)")
        x = inputs(data)[:HEALTH_ROWS]
        if len(x) > 1:
            std = float(self.code(x, sample=False).std(0).mean())
            if not std > CODE_COLLAPSE:
                problems.append(f"the codes collapsed (standard deviation {std:.2g} across {len(x)} images)")
        return problems

    # -- set-up and pictures -----------------------------------------------------------------
    def prepare(self, data: Batch | torch.Tensor) -> None:
        """Check the labels (supervised), then the decoder's output bias from the data (as the VAE)."""
        if self.config.supervised:
            self._labels(data)
        if self.config.output_bias_from_data:
            output_bias_from_data_(self.decoder, inputs(data), self.config.input_shape)

    def end_of_run(self, run_dir, data: Batch, seed: int = 0) -> list[str]:
        """Unsupervised: samples and reconstructions. Supervised: ``samples.png`` is the paper's
        style/content figure: each row one style z from the prior, each column one class."""
        if not self.config.supervised:
            return super().end_of_run(run_dir, data, seed)
        from ..viz.grids import save_png, save_reconstructions

        run_dir = Path(run_dir)
        save_png(self.style_grid(STYLES, seed), run_dir / "samples.png")
        written = ["samples.png"]
        if len(data) and data.y is not None:
            save_reconstructions(self, data[:32], run_dir / "reconstructions.png")
            written.append("reconstructions.png")
        return written

    @torch.no_grad()
    def style_grid(self, styles: int = STYLES, seed: int = 0) -> torch.Tensor:
        """The style/content grid (supervised): ``styles`` rows of one prior draw each, K columns."""
        from ..viz.grids import grid

        k = self.config.num_classes
        g = torch.Generator(device=next(self.parameters()).device).manual_seed(seed)
        z = self.prior_sample(styles, g).repeat_interleave(k, 0)
        y = self.one_hot(torch.arange(k, device=z.device).repeat(styles), z.dtype)
        return grid(self.likelihood.mean(self._decoder_out(z, y)), nrow=k)
