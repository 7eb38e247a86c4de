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

from ..config import require
from ..nn.rowlstm import RowLSTM
from .pixelcnn import PixelCNN, PixelCNNConfig
from .registry import register


@dataclass(frozen=True)
class PixelRNNConfig(PixelCNNConfig):
    """Constructor arguments of :class:`PixelRNN` (saved as ``config.json``): the PixelCNN's
    (``head``, ``classes``, ``completion_rows``, the checks) with the Row LSTM's sizes."""

    layers: int = field(default=2, metadata={"help": "Row LSTM layers (each with a residual connection)"})
    width: int = field(default=32, metadata={"help": "hidden units h of each LSTM (its gates use 4h)"})
    kernel: int = field(default=3, metadata={"help": "odd width k of the state-to-state convolution (the "
                                                     "input-to-state one spans k//2+1 columns)"})
    first_kernel: int = field(default=7, metadata={"help": "odd size of the first, mask-A convolution"})

    def validate(self) -> None:
        super().validate()
        require(self.first_kernel >= 3 and self.first_kernel % 2 == 1,
                f"first_kernel must be odd and >= 3, got {self.first_kernel}")


@register("pixelrnn")
class PixelRNN(PixelCNN):
    Config = PixelRNNConfig

    @staticmethod
    def network(config) -> nn.Module:
        return RowLSTM(channels=config.input_shape[0], categories=2, layers=config.layers, hidden=config.width,
                       kernel=config.kernel, first_kernel=config.first_kernel, head=config.head,
                       classes=config.classes)
