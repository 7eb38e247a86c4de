"""The VQ-VAE (van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete Representation
Learning"): a convolutional encoder's output map z_e(x) of D-vectors, each replaced by its
nearest code of a learned codebook of K vectors (:class:`vaelab.nn.quantizer.VectorQuantizer`),
decoded by a convolutional decoder into p(x | z_q).

The loss is the paper's equation (3), one named term each, **all on one reduction**: summed over
the data dimensions (pixels × channels) or over the code-map positions × D, averaged over the
batch (nats per image for ``recon``):

    recon       −log p(x | z_q(x))          weight 1
    codebook    ‖sg[z_e(x)] − e‖²            weight 1 (0 with ``ema``: the EMA update moves the codes)
    commitment  ‖z_e(x) − sg[e]‖²            weight β

Networks (the paper's CIFAR-10 design, sizes settable; any C×H×W): the encoder has
one 4×4 stride-2 convolution per entry of ``channels`` (ReLU after each), a 3×3 convolution,
``residual_blocks`` residual blocks (ReLU, 3×3 conv to ``residual_channels``, ReLU, 1×1 conv back),
ReLU and a 1×1 convolution to D: MNIST's 28×28 becomes a 7×7 code map. The decoder mirrors it
with transposed convolutions whose output padding restores H×W exactly.

Likelihoods: ``bernoulli`` (binarized images; nats), ``discretized-logistic`` (8-bit grey or
colour images: a proper distribution over the 256 levels, so bits/dim are honest) or
``gaussian`` (a fixed-σ density on [0, 1]: trains, but is no likelihood of 8-bit data, so
:meth:`VQVAE.code_log_likelihood` refuses it).

The prior over code maps is a second stage (:mod:`vaelab.models.vq_prior`, trained by ``vaelab
train-prior RUN`` into ``RUN/prior``); ``vaelab.load(RUN)`` attaches it as ``model.prior`` (held
beside the model, never one of its weights). With it the model samples and bounds log p(x);
without it ``sample`` says how to train one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import Config, choice, require
from ..errors import VaelabError
from ..nn.likelihoods import check_8bit, make_likelihood
from ..nn.quantizer import VectorQuantizer, usage_figures
from .base import Batch, Loss, Model, inputs
from . import fields
from .registry import register

VQ_LIKELIHOODS = ("bernoulli", "discretized-logistic", "gaussian")


@dataclass(frozen=True)
class VQVAEConfig(Config):
    """Constructor arguments of :class:`VQVAE` (saved as ``config.json``)."""

    input_shape: tuple[int, int, int] = fields.input_shape()
    codebook_size: int = field(default=512, metadata={"help": "K, the number of codes in the codebook"})
    code_dim: int = field(default=64, metadata={"help": "D, the dimension of each code (the encoder's output channels)"})
    beta: float = field(default=0.25, metadata={"help": "weight β of the commitment term (the paper: 0.25)"})
    channels: tuple[int, ...] = field(default=(64, 64), metadata={
        "help": "channels of each 4×4 stride-2 convolution, e.g. 64,64 (two: MNIST 28×28 -> a 7×7 code map; the "
                "paper: 256,256); the last also sets the residual blocks' width"})
    residual_channels: int = field(default=32, metadata={
        "help": "channels inside each residual block (its 3×3 convolution)"})
    residual_blocks: int = field(default=2, metadata={"help": "residual 3×3/1×1 blocks in the encoder and in the decoder"})
    likelihood: str = field(default="bernoulli", metadata={
        "help": "bernoulli (binarized images), discretized-logistic (8-bit images: 256 levels per sub-pixel) "
                "or gaussian (fixed --sigma; a density, not a likelihood of 8-bit data)"})
    sigma: float = fields.sigma()
    ema: bool = field(default=False, metadata={
        "help": "update the codebook by exponential moving averages (the paper's appendix) instead of the "
                "codebook term's gradient"})
    decay: float = field(default=0.99, metadata={"help": "the EMA decay γ (with --ema)", "applies": {"ema": (True,)}})
    kmeans_init: bool = field(default=False, metadata={
        "help": "start the codebook at k-means centres of the first training batch's encoder outputs"})
    revive: bool = field(default=True, metadata={
        "help": "move codes unused for --revive-after training steps onto random encoder outputs of the batch "
                "(--no-revive: leave dead codes dead, as the paper)"})
    revive_after: int = field(default=50, metadata={"help": "training steps without use after which --revive "
                                                            "moves a code", "applies": {"revive": (True,)}})

    def validate(self) -> None:
        require(len(self.input_shape) == 3 and all(s >= 1 for s in self.input_shape),
                f"input_shape must be C,H,W of positive sizes, got {self.input_shape}")
        require(self.codebook_size >= 2,
                f"codebook_size must be at least 2 (a codebook of one code carries no information), got "
                f"{self.codebook_size}; use e.g. --codebook-size 512")
        require(self.code_dim >= 1, f"code_dim must be at least 1, got {self.code_dim}")
        require(self.beta >= 0, f"beta must be >= 0 (the paper: 0.25), got {self.beta}")
        n = len(self.channels)
        require(n >= 1 and all(c >= 1 for c in self.channels),
                f"channels must list at least one positive size (e.g. 64,64), got {list(self.channels)}")
        require(self.residual_channels >= 1, f"residual_channels must be >= 1, got {self.residual_channels}")
        require(self.residual_blocks >= 0, f"residual_blocks must be >= 0, got {self.residual_blocks}")
        _, h, w = self.input_shape
        require(min(h, w) >= 2 ** n,
                f"images of {h}×{w} are too small for {n} stride-2 convolutions (each halves the size); give "
                f"--channels at most {max(1, min(h, w).bit_length() - 1)} sizes")
        choice("likelihood", self.likelihood, VQ_LIKELIHOODS)
        require(self.sigma > 0, f"sigma must be > 0, got {self.sigma}")
        require(0 < self.decay < 1, f"decay must lie in (0, 1) (the paper: 0.99), got {self.decay}")
        require(self.revive_after >= 1, f"revive_after must be >= 1 step, got {self.revive_after}")


class Residual(nn.Module):
    """x + conv1×1(ReLU(conv3×3(ReLU(x)))): the paper's residual block."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.block = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, hidden, 3, padding=1),
                                   nn.ReLU(), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def map_sizes(h: int, w: int, stages: int) -> list[tuple[int, int]]:
    """Spatial sizes after each 4×4 stride-2 convolution with padding 1 (each floors h/2)."""
    sizes = [(h, w)]
    for _ in range(stages):
        sizes.append((sizes[-1][0] // 2, sizes[-1][1] // 2))
    return sizes


def networks(config: VQVAEConfig, out_channels: int) -> tuple[nn.Sequential, nn.Sequential]:
    """Encoder x (B, C, H, W) -> z_e (B, D, h, w) and decoder z_q -> (B, out_channels, H, W)."""
    c, h, w = config.input_shape
    chans, n = config.channels, len(config.channels)
    ch = chans[-1]
    enc: list[nn.Module] = []
    for i in range(n):
        enc += [nn.Conv2d(c if i == 0 else chans[i - 1], chans[i], 4, stride=2, padding=1), nn.ReLU()]
    enc.append(nn.Conv2d(ch, ch, 3, padding=1))
    enc += [Residual(ch, config.residual_channels) for _ in range(config.residual_blocks)]
    enc += [nn.ReLU(), nn.Conv2d(ch, config.code_dim, 1)]
    dec: list[nn.Module] = [nn.Conv2d(config.code_dim, ch, 3, padding=1)]
    dec += [Residual(ch, config.residual_channels) for _ in range(config.residual_blocks)]
    dec.append(nn.ReLU())
    sizes = map_sizes(h, w, n)
    for i in range(n):
        (th, tw), (sh, sw) = sizes[n - 1 - i], sizes[n - i]
        last = i == n - 1
        dec.append(nn.ConvTranspose2d(chans[n - 1 - i], out_channels if last else chans[n - 2 - i], 4, stride=2, padding=1,
                                      output_padding=(th - 2 * sh, tw - 2 * sw)))
        if not last:
            dec.append(nn.ReLU())
    return nn.Sequential(*enc), nn.Sequential(*dec)


@register("vqvae")
class VQVAE(Model):
    Config = VQVAEConfig

    def __init__(self, config: VQVAEConfig):
        super().__init__(config)
        c, _, _ = config.input_shape
        self.likelihood = make_likelihood(config.likelihood, config.sigma)
        self.encoder, self.decoder = networks(config, c * self.likelihood.params_per_channel)
        self.quantizer = VectorQuantizer(config.codebook_size, config.code_dim, beta=config.beta, ema=config.ema,
                                         decay=config.decay, kmeans_init=config.kmeans_init,
                                         revive_after=config.revive_after if config.revive else 0)
        self.prior = None

    def __setattr__(self, name, value):
        if name == "prior":  # held beside the model: never registered, saved or counted as its weights
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # -- shapes and checks --------------------------------------------------------------------
    @property
    def code_shape(self) -> tuple[int, int]:
        """(h, w) of the code map."""
        _, h, w = self.config.input_shape
        return map_sizes(h, w, len(self.config.channels))[-1]

    def _images(self, data: Batch | torch.Tensor) -> torch.Tensor:
        x = inputs(data)
        if x.dim() != 4 or tuple(x.shape[1:]) != tuple(self.config.input_shape):
            raise VaelabError(f"{self.name}: images of shape {list(x.shape[1:])} given, this model takes "
                              f"{list(self.config.input_shape)} (C,H,W); resize them or build a model for that shape")
        return x.float()

    def _checked_codes(self, idx) -> torch.Tensor:
        k, (h, w) = self.config.codebook_size, self.code_shape
        if not torch.is_tensor(idx) or idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
            kind = idx.dtype if torch.is_tensor(idx) else type(idx).__name__
            raise VaelabError(f"{self.name} decodes integer code maps (a LongTensor of indices), got {kind}")
        if idx.dim() != 3 or tuple(idx.shape[1:]) != (h, w):
            raise VaelabError(f"{self.name} decodes code maps of shape (B, {h}, {w}), got {list(idx.shape)}; "
                              "pass the maps model.codes(images) returns (model.code_shape is (h, w))")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= k):
            bad = int(idx.min()) if int(idx.min()) < 0 else int(idx.max())
            raise VaelabError(f"code index {bad} is outside this {self.name}'s codebook 0..{k - 1} "
                              f"(codebook_size = {k}); the codes come from another model")
        return idx.long().to(self.quantizer.codebook.device)

    # -- the model's pieces --------------------------------------------------------------------
    def encode_map(self, data: Batch | torch.Tensor) -> torch.Tensor:
        """z_e(x): the encoder's output map (B, D, h, w) before quantization."""
        return self.encoder(self._images(data))

    @torch.no_grad()
    def codes(self, data: Batch | torch.Tensor) -> torch.Tensor:
        """Nearest-code indices of images: LongTensor (B, h, w)."""
        return self.quantizer.codes(self.encode_map(data))

    @torch.no_grad()
    def decode_codes(self, idx: torch.Tensor) -> torch.Tensor:
        """The decoder's mean image (B, C, H, W) for code maps (B, h, w) (probabilities for
        Bernoulli, locations for the discretized logistic)."""
        return self.likelihood.mean(self.decoder(self.quantizer.lookup(self._checked_codes(idx))))

    @torch.no_grad()
    def code_log_likelihood(self, data: Batch | torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """log p(x | z_q) in nats per image (B,) for the given code maps: the first half of the
        paper's bound log p(x) ≥ log p(x|z_q) + log p(z_q). Bernoulli needs binary images,
        the discretized logistic 8-bit ones; the fixed Gaussian is refused (a density on
        [0, 1] is not a likelihood of 8-bit data)."""
        x = self._images(data)
        idx = self._checked_codes(idx)
        if idx.shape[0] != x.shape[0]:
            raise VaelabError(f"{x.shape[0]} images but {idx.shape[0]} code maps given; pass one map per image")
        self._check_scored(x)
        return self.likelihood.log_prob(self.decoder(self.quantizer.lookup(idx)), x)

    def _check_scored(self, x: torch.Tensor) -> None:
        name = self.config.likelihood
        if name == "gaussian":
            raise VaelabError(f"this {self.name} was trained with the fixed-σ gaussian, a density on [0, 1] that is "
                              "no likelihood of 8-bit images; train with --likelihood discretized-logistic "
                              "(8-bit) or bernoulli (binarized) for one")
        if name == "bernoulli" and bool(((x != 0) & (x != 1)).any()):
            raise VaelabError(f"this {self.name}'s bernoulli likelihood scores binary images (pixels 0 or 1), got grey "
                              "levels; binarize them (vaelab.data.binarize_static(x, seed))")
        if name == "discretized-logistic":
            check_8bit(x)

    @torch.no_grad()
    def reconstruct(self, data: Batch | torch.Tensor) -> torch.Tensor:
        """The decoder's mean image for the nearest codes of each image."""
        return self.decode_codes(self.codes(data))

    @property
    def can_sample(self) -> bool:
        """Whether ``sample`` can draw: only with a prior over code maps attached."""
        return self.prior is not None

    @torch.no_grad()
    def sample(self, n: int, y: torch.Tensor | int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Decoded code maps drawn from the attached prior; a class-conditional prior draws
        given ``y`` (one class or one per image; default the classes in turn)."""
        if self.prior is None:
            raise VaelabError(f"this {self.name} has no prior over its codes: train one with "
                              "`vaelab train-prior RUN`, then sample")
        if y is not None and not self.prior.conditional:
            raise VaelabError(f"this {self.name}'s prior is unconditional: drop the label, or train a class-conditional "
                              "prior (`vaelab train-prior RUN --classes 10`)")
        drawn = self.prior.sample(n, y=y, generator=generator)
        return self.decode_codes(drawn.reshape(n, *self.code_shape).long())

    @property
    def bounds_likelihood(self) -> bool:
        """Whether :meth:`log_likelihood_bound` can be computed: it needs the prior."""
        return self.prior is not None

    def log_likelihood_bound(self, data: Batch | torch.Tensor) -> torch.Tensor:
        """log p(x|z_q) + log p(z_q) per image: the paper's lower bound on log p(x)."""
        from .vq_prior import log_likelihood_bound

        return log_likelihood_bound(self, data)

    # -- the objective -------------------------------------------------------------------------
    def loss(self, batch: Batch | torch.Tensor) -> Loss:
        """recon + codebook + β·commitment, each summed over an image's pixels (code-map
        positions × D) and averaged over the batch."""
        x = self._images(batch)
        q = self.quantizer(self.encoder(x))
        recon = self.likelihood.nll_sum(self.decoder(q.z_q), x) / x.shape[0]
        codebook, commitment = q.codebook.mean(), q.commitment.mean()
        weights = {"recon": 1.0, "codebook": 0.0 if self.config.ema else 1.0, "commitment": self.config.beta}
        total = recon + weights["codebook"] * codebook + self.config.beta * commitment
        return Loss(total, {"recon": recon, "codebook": codebook, "commitment": commitment}, weights)

    def prepare(self, data: Batch | torch.Tensor) -> None:
        """Before a fresh run: the discretized logistic refuses training images that are not 8-bit."""
        if self.config.likelihood == "discretized-logistic":
            check_8bit(inputs(data), "training images")

    def epoch_figures(self) -> dict[str, float]:
        """Codebook usage, code perplexity and revived codes over the epoch's training steps;
        the counts then start again (the trainer calls this once per epoch)."""
        return self.quantizer.epoch_figures()

    @torch.no_grad()
    def codebook_usage(self, data: Batch | torch.Tensor, batch_size: int = 1000) -> dict[str, float]:
        """``codebook_usage`` (fraction of codes chosen) and ``code_perplexity`` over ``data``'s
        code maps: what the codebook holds for these images, nothing updated."""
        x = inputs(data)
        counts = torch.zeros(self.config.codebook_size, dtype=torch.long, device=self.quantizer.codebook.device)
        for i in range(0, len(x), batch_size):
            counts += torch.bincount(self.codes(x[i:i + batch_size]).flatten(), minlength=self.config.codebook_size)
        return usage_figures(counts)
