"""Stacked autoencoder: greedy layer-wise pretraining, then fine-tuning of the whole stack
(Bengio et al. 2007; Hinton & Salakhutdinov 2006 with autoencoders in place of RBMs).

Layer i is first trained as a shallow autoencoder on the codes of layers 1..i−1
(h_i = act(W_i h_{i−1} + b_i), ĥ_{i−1} = act(V_i h_i + c_i); the last encoder layer is
linear, the first decoder layer reconstructs pixels with the model's loss). Its weights
then initialise the matching encoder and decoder layers of the deep autoencoder, which
the ordinary training run fine-tunes end to end.

The pretraining runs in ``prepare(x_train)``, i.e. once at the start of a fresh
``vaelab train stacked-ae`` run, before the first fine-tuning step. It draws from a fork
of the run's seeded torch RNG, so it is deterministic under ``--seed`` and leaves the
RNG stream of fine-tuning untouched; a resumed run restores the fine-tuned weights from
its checkpoint and never pretrains again.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config, require
from ..nn.corruption import corrupt
from ..nn.mlp import activation
from ..nn.init import glorot_, output_bias_from_data_
from .ae import Autoencoder, mlp_autoencoder, validate_autoencoder
from .base import Batch, inputs
from . import fields
from .registry import register


@dataclass(frozen=True)
class StackedAEConfig(Config):
    """Constructor arguments of :class:`StackedAE`: an MLP :class:`~vaelab.models.ae.AEConfig`
    plus the pretraining schedule.

    ``pretrain_epochs`` passes over the training set per layer (0 = no pretraining),
    with Adam at ``pretrain_lr`` on minibatches of ``pretrain_batch_size``. A
    ``corruption`` is applied to the pixels when the first layer is pretrained and
    during fine-tuning (a stacked denoising autoencoder, Vincent et al. 2010).
    """

    input_shape: tuple[int, int, int] = fields.input_shape()
    latent_dim: int = fields.latent_dim(30)
    hidden: tuple[int, ...] = fields.hidden((500, 250))
    activation: str = fields.activation("relu")
    loss: str = fields.recon_loss("mse")
    corruption: str = fields.corruption("none")
    noise_level: float = fields.noise_level(0.25)
    init: str = fields.init("torch")
    output_bias_from_data: bool = fields.output_bias_from_data(True)
    pretrain_epochs: int = field(
        default=5,
        metadata={"help": "greedy layer-wise pretraining epochs per layer before fine-tuning (0 = off)"})
    pretrain_lr: float = field(default=1e-3, metadata={"help": "Adam learning rate of the layer-wise pretraining"})
    pretrain_batch_size: int = field(default=100, metadata={"help": "minibatch size of the layer-wise pretraining"})

    def validate(self) -> None:
        validate_autoencoder(self, conv=False)
        require(len(self.hidden) > 0,
                "stacked-ae needs at least one hidden layer, e.g. hidden 500,250; use 'ae' for a shallow autoencoder")
        require(self.pretrain_epochs >= 0, f"pretrain_epochs must be >= 0 (0 = no pretraining), got {self.pretrain_epochs}")
        require(self.pretrain_lr > 0 and self.pretrain_lr != float("inf"),
                f"pretrain_lr must be a positive number, got {self.pretrain_lr}")
        require(self.pretrain_batch_size > 0, f"pretrain_batch_size must be positive, got {self.pretrain_batch_size}")


@register("stacked-ae")
class StackedAE(Autoencoder):
    """Deep MLP autoencoder initialised by greedy layer-wise pretraining."""

    Config = StackedAEConfig

    def __init__(self, config: StackedAEConfig):
        super().__init__(config)
        self.encoder, self.decoder = mlp_autoencoder(config)
        if config.init == "glorot":
            glorot_(self)
        self.pretrain_history: list[float] = []  # final-epoch loss of each layer (not saved)

    def code(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decoder_output(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def layer_pairs(self) -> list[tuple[nn.Linear, nn.Linear]]:
        """(encoder layer i, the decoder layer that inverts it), from the pixels up."""
        enc = [m for m in self.encoder.modules() if isinstance(m, nn.Linear)]
        dec = [m for m in self.decoder.modules() if isinstance(m, nn.Linear)]
        return list(zip(enc, reversed(dec)))

    def prepare(self, data: Batch | torch.Tensor) -> None:
        """Output bias from the data, then greedy layer-wise pretraining (see the module docstring)."""
        x_train = inputs(data)
        if self.config.output_bias_from_data:
            output_bias_from_data_(self.decoder, x_train, self.config.input_shape)
        if self.config.pretrain_epochs == 0:
            return
        device = x_train.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            self.pretrain(x_train)

    def pretrain(self, x_train: torch.Tensor) -> list[float]:
        """Train each layer pair as a shallow autoencoder on the previous layer's codes."""
        cfg = self.config
        act = activation(cfg.activation)
        kind, level = self.corruption
        pairs = self.layer_pairs()
        was_training = self.training
        self.train()
        history = []
        h = x_train.float()
        n = h.shape[0]
        for i, (enc, dec) in enumerate(pairs):
            first, last = i == 0, i == len(pairs) - 1
            optimizer = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=cfg.pretrain_lr)
            for _ in range(cfg.pretrain_epochs):
                perm = torch.randperm(n, device=h.device)
                total = 0.0
                for start in range(0, n, cfg.pretrain_batch_size):
                    target = h.index_select(0, perm[start:start + cfg.pretrain_batch_size])
                    inp = target
                    if first:
                        if kind != "none":
                            inp = corrupt(target, kind, level)
                        inp = inp.flatten(1)
                    code = enc(inp)
                    if not last:
                        code = act(code)
                    out = dec(code)
                    if first:
                        loss = self.recon_sum(out.view(target.shape), target)
                    else:
                        loss = F.mse_loss(act(out), target, reduction="sum")
                    loss = loss / target.shape[0]
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach()) * target.shape[0]
            history.append(total / n)
            with torch.no_grad():  # the next layer learns on these codes
                flat = h.flatten(1)
                h = torch.cat([enc(flat[s:s + 4096]) for s in range(0, n, 4096)])
                if not last:
                    h = act(h)
        self.train(was_training)
        self.pretrain_history = history
        return history
