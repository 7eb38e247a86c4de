"""Pixel-RNN's Row LSTM (van den Oord, Kalchbrenner & Kavukcuoglu 2016), the model the lecture
notes' Pixel-RNN slide draws: binary images pixel by pixel, rows processed by LSTM layers, with
the exact −log p(x) as its loss (``nll``) and evaluation figure, exactly as :mod:`.pixelcnn`
(the same checks, sampling, completion and pictures; only the network differs:
:class:`vaelab.nn.rowlstm.RowLSTM`). Its training runs one LSTM step per row and layer, in
sequence: the cost per epoch beside the PixelCNN's is in docs/pixelcnn.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..config import Config, require
from ..nn.rowlstm import RowLSTM
from . import fields
from .pixelcnn import PixelCNN
from .registry import register


@dataclass(frozen=True)
class PixelRNNConfig(Config):
    """Constructor arguments of :class:`PixelRNN` (saved as ``config.json``)."""

    input_shape: tuple[int, int, int] = fields.input_shape()
    layers: int = field(default=2, metadata={"help": "Row LSTM layers (each with a residual connection)"})
    width: int = field(default=32, metadata={"help": "hidden units h of each LSTM (its gates use 4h)"})
    kernel: int = field(default=3, metadata={"help": "odd width k of the state-to-state convolution (the "
                                                     "input-to-state one spans k//2+1 columns)"})
    first_kernel: int = field(default=7, metadata={"help": "odd size of the first, mask-A convolution"})
    head: int = field(default=64, metadata={"help": "channels of the 1×1 output network"})
    classes: int = field(default=0, metadata={"help": "class-conditional p(x|y) over this many classes "
                                                      "(0 = unconditional)"})
    completion_rows: int = field(default=14, metadata={
        "help": "rows given when completions.png completes test images (the top half of MNIST)"})

    likelihood = "bernoulli"  # as PixelCNNConfig: "auto" binarization applies

    def validate(self) -> None:
        require(len(self.input_shape) == 3 and all(s >= 1 for s in self.input_shape),
                f"input_shape must be C,H,W of positive sizes, got {self.input_shape}")
        require(self.layers >= 1, f"layers must be >= 1, got {self.layers}")
        require(self.width >= 1, f"width must be >= 1, got {self.width}")
        require(self.head >= 1, f"head must be >= 1, got {self.head}")
        for name in ("kernel", "first_kernel"):
            k = getattr(self, name)
            require(k >= 3 and k % 2 == 1, f"{name} must be odd and >= 3, got {k}")
        require(self.classes == 0 or self.classes >= 2,
                f"classes must be 0 (unconditional) or at least 2, got {self.classes}")
        require(0 <= self.completion_rows < self.input_shape[1],
                f"completion_rows must be in 0..{self.input_shape[1] - 1}, got {self.completion_rows}")


@register("pixelrnn")
class PixelRNN(PixelCNN):
    Config = PixelRNNConfig

    @staticmethod
    def network(config) -> nn.Module:
        return RowLSTM(channels=config.input_shape[0], categories=2, layers=config.layers, hidden=config.width,
                       kernel=config.kernel, first_kernel=config.first_kernel, head=config.head,
                       classes=config.classes)
