"""The Row LSTM of Pixel-RNN (van den Oord, Kalchbrenner & Kavukcuoglu 2016): an image modelled
pixel by pixel in raster order by LSTM layers that run down the image one row at a time.

- a first k0 × k0 convolution with **mask A** (the rows above within reach, and the current
  row strictly to the left: never the pixel itself);
- ``layers`` Row LSTM layers: the *input-to-state* part is a 1 × (k//2 + 1) convolution along
  the row over the columns up to the current one (mask B), computed for the whole map at once;
  the *state-to-state* part is a 1-D convolution of width k over the previous row's hidden
  state, so each row is one LSTM step: [o, f, i, g] = K_ss ⊛ h_{i−1} + K_is ⊛ x_i,
  c_i = σ(f)·c_{i−1} + σ(i)·tanh(g), h_i = σ(o)·tanh(c_i); a residual connection around each;
- a 1 × 1 ReLU output network giving K logits per pixel and channel, as
  :class:`vaelab.nn.pixelcnn.GatedPixelCNN` (the same interface: ``log_prob``, ``sample``).

Its context above a pixel is a triangle (the paper's figure), and training runs H sequential
steps per layer: the cost that makes the PixelCNN the practical choice.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .pixelcnn import categorical_inverse_cdf, start_maps


def _mask_a(k: int) -> torch.Tensor:
    """k × k: 1 on the rows above the centre and left of the centre on its row."""
    m = torch.zeros(k, k)
    m[: k // 2] = 1
    m[k // 2, : k // 2] = 1
    return m


class RowLSTMLayer(nn.Module):
    def __init__(self, hidden: int, kernel: int, classes: int):
        super().__init__()
        self.half, self.hidden = kernel // 2, hidden
        self.i2s = nn.Conv2d(hidden, 4 * hidden, (1, self.half + 1))
        self.s2s = nn.Conv1d(hidden, 4 * hidden, kernel, padding=self.half)
        self.cond = nn.Embedding(classes, 4 * hidden) if classes > 0 else None
        if self.cond is not None:
            nn.init.zeros_(self.cond.weight)

    def condition(self, y):
        return 0.0 if self.cond is None else self.cond(y)[:, None, None, :]

    def inputs(self, x: torch.Tensor, c) -> torch.Tensor:
        """Input-to-state pre-activations of a channels-last map (B, rows, W, h) -> (B, rows, W, 4h):
        columns ≤ j of the same row, the 1 × (k//2 + 1) convolution as one matrix product."""
        windows = F.pad(x, (0, 0, self.half, 0)).unfold(2, self.half + 1, 1)  # (B, rows, W, h, k//2 + 1)
        return F.linear(windows.flatten(3), self.i2s.weight.flatten(1), self.i2s.bias) + c

    def state_to_state(self, h_prev: torch.Tensor) -> torch.Tensor:
        """K_ss ⊛ h_{i−1} for a row held channels last (B, W, h) -> (B, W, 4h): the width-k
        windows as one matrix product, far cheaper on a CPU than a small 1-D convolution."""
        windows = F.pad(h_prev, (0, 0, self.half, self.half)).unfold(1, 2 * self.half + 1, 1)  # (B, W, h, k)
        return F.linear(windows.flatten(2), self.s2s.weight.flatten(1), self.s2s.bias)

    def step(self, pre_row: torch.Tensor, state):
        """One row: its input-to-state part (B, W, 4h) and the row above's (h, c) -> (h, c)."""
        h_prev, c_prev = state
        o, f, i, g = (pre_row + self.state_to_state(h_prev)).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def zero_state(self, x: torch.Tensor):
        """(h, c) of the row above the first: zeros (B, W, h) for a channels-last map x."""
        z = x.new_zeros(x.shape[0], x.shape[2], self.hidden)
        return z, z

    def forward(self, x: torch.Tensor, c) -> torch.Tensor:
        state, rows = self.zero_state(x), []
        for pre_row in self.inputs(x, c).unbind(1):  # unbind: one gradient stack, not a zero map per row
            state = self.step(pre_row, state)
            rows.append(state[0])
        return torch.stack(rows, dim=1) + x


class RowLSTM(nn.Module):
    """Logits (B, K, C, H, W) of p(x_ij | x_<ij): the interface of ``GatedPixelCNN``."""

    def __init__(self, channels: int = 1, categories: int = 2, layers: int = 2, hidden: int = 16,
                 kernel: int = 3, first_kernel: int = 7, head: int = 32, classes: int = 0):
        super().__init__()
        if kernel < 3 or kernel % 2 == 0 or first_kernel < 3 or first_kernel % 2 == 0:
            raise ValueError(f"kernels must be odd and >= 3, got {kernel} and {first_kernel}")
        self.channels, self.categories, self.classes = channels, categories, classes
        self.first = nn.Conv2d(channels, hidden, first_kernel, padding=first_kernel // 2)
        self.register_buffer("mask", _mask_a(first_kernel), persistent=False)
        self.layers = nn.ModuleList(RowLSTMLayer(hidden, kernel, classes) for _ in range(layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, head, 1), nn.ReLU(),
                                  nn.Conv2d(head, channels * categories, 1))

    def _first(self, x: torch.Tensor, padding) -> torch.Tensor:
        """The mask-A convolution, returned channels last (B, rows, W, h): the Row LSTM layers
        work on rows of channel vectors, so every later product is one dense GEMM."""
        return F.conv2d(x.float(), self.first.weight * self.mask, self.first.bias, padding=padding).permute(0, 2, 3, 1)

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        """The 1 × 1 output network on a channels-last map (B, rows, W, h) -> logits (B, K, C, rows, W)."""
        _, hidden, _, out = self.head
        h = F.linear(F.relu(h), hidden.weight.flatten(1), hidden.bias)
        h = F.linear(F.relu(h), out.weight.flatten(1), out.bias)
        b, rows, cols, _ = h.shape
        return h.view(b, rows, cols, self.categories, self.channels).permute(0, 3, 4, 1, 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self._first(x, self.first.padding)
        for layer in self.layers:
            h = layer(h, layer.condition(y))
        return self._head(h)

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        logp = -F.cross_entropy(self(x, y), x.long(), reduction="none")
        return logp.flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, shape: tuple[int, int], y: torch.Tensor | None = None,
               generator: torch.Generator | None = None, given: torch.Tensor | None = None,
               given_rows: int = 0, uniforms: torch.Tensor | None = None) -> torch.Tensor:
        """As :meth:`GatedPixelCNN.sample`. Each layer's LSTM state of the row above is kept;
        for each pixel only the current row is recomputed (first convolution on the k0 rows
        ending at it, one LSTM step per layer)."""
        rows, cols = shape
        uniforms, out = start_maps(self, n, shape, generator, given, given_rows, uniforms)
        conds = [layer.condition(y) for layer in self.layers]
        states = None
        for i in range(rows):
            if i >= given_rows:
                for j in range(cols):
                    top, _ = self._row(out, i, conds, states)
                    logits = self._head(top[:, :, j:j + 1]).reshape(n, self.categories, self.channels)
                    out[:, :, i, j] = categorical_inverse_cdf(logits, uniforms[:, :, i, j])
            _, states = self._row(out, i, conds, states)  # row i is final: its states for the next
        return out

    def _row(self, out: torch.Tensor, i: int, conds, states):
        """Row i through every layer from the states of row i − 1 (None: the first row): the
        last layer's output (B, 1, W, hidden) and each layer's (h, c) of row i."""
        k = self.first.kernel_size[0] // 2
        lo = max(0, i - k)
        window = F.pad(out[:, :, lo:i + 1].float(), (0, 0, k - (i - lo), k))  # rows i − k … i (+ k masked)
        h = self._first(window, (0, k))
        new = []
        for li, layer in enumerate(self.layers):
            state = states[li] if states is not None else layer.zero_state(h)
            hc = layer.step(layer.inputs(h, conds[li])[:, 0], state)
            new.append(hc)
            h = hc[0].unsqueeze(1) + h
        return h, new
