"""The prior of a VQ-VAE (van den Oord, Vinyals & Kavukcuoglu 2017, §3.2): a gated PixelCNN
p(z) = Π_i p(z_i | z_<i) over the h × w map of code indices, fitted after the VQ-VAE to the
codes of its training images — the second stage that makes a VQ-VAE a generator.

``loss`` is the exact −log p(z) in nats per code map (term ``nll``). The VQ-VAE's posterior
q(z|x) is a point mass on the nearest codes z_q(x), so its KL to this prior is −log p(z_q) and

    log p(x) ≥ log p(x | z_q) + log p(z_q)                               (the paper's bound)

which :func:`log_likelihood_bound` computes for a VQ-VAE with its prior attached (``vaelab eval``
reports it as ``nll_bound`` and ``bits_per_dim_bound``: a bound, never an ``nll``).

A prior belongs to one VQ-VAE: ``vqvae`` records the SHA-256 fingerprint of the weights whose
codes it was fitted to, and :func:`attach` refuses a prior whose VQ-VAE has changed since
(retrained, resumed for more epochs): its codes would be another model's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import Config, require
from ..errors import VaelabError
from ..nn.pixelcnn import GatedPixelCNN
from .base import Batch, Loss, Model, as_batch
from .pixelcnn import class_labels
from .registry import register


@dataclass(frozen=True)
class VQPriorConfig(Config):
    """Constructor arguments of :class:`VQPrior` (saved as ``config.json``)."""

    input_shape: tuple[int, int, int] = field(default=(1, 7, 7), metadata={
        "option": False, "help": "the code map as 1,h,w (set from the VQ-VAE by train-prior)"})
    codebook_size: int = field(default=512, metadata={
        "option": False, "help": "K, the number of codes (set from the VQ-VAE by train-prior)"})
    layers: int = field(default=10, metadata={"help": "gated layers of the PixelCNN"})
    width: int = field(default=64, metadata={"help": "channels p of each stack (the gates use 2p)"})
    kernel: int = field(default=3, metadata={"help": "odd kernel size k of the masked convolutions"})
    head: int = field(default=256, metadata={"help": "channels of the 1×1 output network before the K logits"})
    embed_dim: int = field(default=32, metadata={"help": "size of each code's learned embedding (the input)"})
    classes: int = field(default=0, metadata={"help": "class-conditional p(z|y) over this many classes "
                                                      "(0 = unconditional)"})
    vqvae: str = field(default="", metadata={
        "option": False, "help": "SHA-256 fingerprint of the VQ-VAE whose codes this prior models (set by train-prior)"})

    likelihood = "categorical"  # codes are integers: the trainer never binarizes them

    def validate(self) -> None:
        require(len(self.input_shape) == 3 and self.input_shape[0] == 1 and min(self.input_shape) >= 1,
                f"input_shape must be 1,h,w (one map of code indices), got {self.input_shape}")
        require(self.codebook_size >= 2, f"codebook_size must be >= 2, got {self.codebook_size}")
        for name in ("layers", "width", "head", "embed_dim"):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        require(self.kernel >= 3 and self.kernel % 2 == 1, f"kernel must be odd and >= 3 (e.g. 3), got {self.kernel}")
        require(self.classes == 0 or self.classes >= 2,
                f"classes must be 0 (unconditional) or at least 2, got {self.classes}")


@register("vq-prior")
class VQPrior(Model):
    """A gated PixelCNN over a VQ-VAE's code maps: p(z), exactly, and samples of z."""

    Config = VQPriorConfig
    train_defaults = {"binarize": "none", "lr": 3e-4}

    def __init__(self, config: VQPriorConfig):
        super().__init__(config)
        self.net = GatedPixelCNN(channels=1, categories=config.codebook_size, layers=config.layers,
                                 hidden=config.width, kernel=config.kernel, head=config.head,
                                 classes=config.classes, embed_dim=config.embed_dim)

    @property
    def conditional(self) -> bool:
        return self.config.classes > 0

    def _checked(self, data: Batch | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch = as_batch(data)
        z = batch.x
        if z.dim() == 3:
            z = z.unsqueeze(1)
        if tuple(z.shape[1:]) != tuple(self.config.input_shape):
            raise VaelabError(f"code maps of shape {list(z.shape[1:])} given, this prior models "
                              f"{list(self.config.input_shape)}; use the codes of the VQ-VAE it was trained on")
        if z.is_floating_point() and bool((z != z.round()).any()):
            raise VaelabError("a VQ prior models integer code indices, got fractional values; pass model.codes(x)")
        z = z.long()
        if bool(((z < 0) | (z >= self.config.codebook_size)).any()):
            raise VaelabError(f"code index {int(z.min()) if z.min() < 0 else int(z.max())} is outside "
                              f"0..{self.config.codebook_size - 1}; this prior models {self.config.codebook_size} codes")
        return z, class_labels(self, batch.y, z.shape[0], z.device)

    def loss(self, batch: Batch | torch.Tensor) -> Loss:
        """The exact −log p(z) = −Σ_i log p(z_i | z_<i), nats per code map."""
        nll = -self.exact_log_likelihood(batch).mean()
        return Loss(nll, {"nll": nll}, {"nll": 1.0})

    def exact_log_likelihood(self, batch: Batch | torch.Tensor) -> torch.Tensor:
        """log p(z) (log p(z|y) when class-conditional) per code map, (B,)."""
        z, y = self._checked(batch)
        return self.net.log_prob(z, y)

    @torch.no_grad()
    def sample(self, n: int, y: torch.Tensor | int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` code maps (n, h, w) of indices drawn in raster order; a conditional prior
        draws given ``y`` (one class or one per map; default the classes in turn)."""
        dev = next(self.parameters()).device
        labels = None
        if self.config.classes:
            labels = torch.arange(n, device=dev) % self.config.classes if y is None else class_labels(self, y, n, dev)
        _, h, w = self.config.input_shape
        return self.net.sample(n, (h, w), y=labels, generator=generator)[:, 0]

    def end_of_run(self, run_dir, data: Batch, seed: int = 0) -> list[str]:
        return []  # the prior draws codes, not images: its VQ-VAE decodes them (vaelab sample RUN)


def fingerprint_of(vq: nn.Module) -> str:
    """The SHA-256 fingerprint of a VQ-VAE (name, config, weights) that its prior records."""
    from ..data.derive import model_fingerprint

    return model_fingerprint(vq)


def check_pair(vq, prior: VQPrior, where) -> None:
    """Refuse a prior that does not belong to ``vq``: another model's codes, another map or codebook."""
    h, w = vq.code_shape
    if tuple(prior.config.input_shape) != (1, h, w) or prior.config.codebook_size != vq.config.codebook_size:
        raise VaelabError(f"the prior in {where} models {prior.config.codebook_size} codes on a "
                          f"{list(prior.config.input_shape[1:])} map, the VQ-VAE has {vq.config.codebook_size} on "
                          f"{[h, w]}; train a prior for this VQ-VAE with `vaelab train-prior RUN`")
    if prior.config.vqvae != fingerprint_of(vq):
        raise VaelabError(f"the prior in {where} was trained on the codes of a different VQ-VAE (its weights changed "
                          "since, e.g. by training on); remove that directory and run `vaelab train-prior RUN` again")


def attach(vq, prior: VQPrior, where) -> None:
    """Give ``vq`` its prior (checked): it can then sample and bound log p(x)."""
    check_pair(vq, prior, where)
    vq.prior = prior.to(next(vq.parameters()).device).eval()  # held beside its weights, never one of them


def log_likelihood_bound(vq, data: Batch | torch.Tensor) -> torch.Tensor:
    """log p(x|z_q) + log p(z_q) per image, (B,): a lower bound on log p(x) (module docstring)."""
    if getattr(vq, "prior", None) is None:
        raise VaelabError("this VQ-VAE has no prior over its codes, so it bounds no likelihood: train one with "
                          "`vaelab train-prior RUN`")
    batch = as_batch(data)
    z = vq.codes(batch)
    y = batch.y if vq.prior.conditional else None
    return vq.code_log_likelihood(batch, z) + vq.prior.exact_log_likelihood(Batch(z, y))
