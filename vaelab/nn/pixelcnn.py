"""The gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
Decoders"): an autoregressive network over the pixels of an image in raster order.

Two stacks of convolutions remove the blind spot of the original masked PixelCNN:

- the **vertical stack** sees whole rows above: a (k//2 + 1) × k convolution over rows
  r − k//2 … r. Its features reach the horizontal stack *shifted down by one row*, so the
  pixel (i, j) only ever receives rows < i from it;
- the **horizontal stack** sees the current row to the left: a 1 × (k//2 + 1) convolution over
  columns j − k//2 … j; in the first layer the input is shifted right by one column first, so
  (i, j) sees columns < j of its own row and never itself (the paper's mask A; later layers
  mask B).

Each layer gates both stacks with tanh(a) · σ(b) (a and b the two halves of 2p channels), adds
the linked vertical features (a 1 × 1 convolution) to the horizontal pre-activation, and keeps a
residual connection on the horizontal stack. With ``classes`` > 0, one learned embedding per
class is added in every gate (the paper's conditional PixelCNN with a one-hot h).

The output is K logits per pixel and channel: K = 2 for binary images (the Bernoulli, as a
2-way softmax), K = codebook size for integer code maps (a VQ-VAE prior). Input is either a
float image of C channels (``embed_dim`` 0; binary images as 0/1) or an integer map (B, H, W)
or (B, 1, H, W) with values in 0 … K−1, embedded (``embed_dim`` > 0). With C > 1 the channels
of one pixel are conditionally independent given the pixels before it: still a normalised,
exact likelihood.

:meth:`GatedPixelCNN.sample` draws pixel by pixel without recomputing what cannot change: the
vertical stack is computed one row at a time (a row's features are final once the row above is
drawn) and the horizontal stack one pixel at a time, each from cached neighbours only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _gate(t: torch.Tensor) -> torch.Tensor:
    a, b = t.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One gated layer of both stacks; ``first`` uses mask A on the horizontal stack and has
    no residual connection (its input holds the pixel itself)."""

    def __init__(self, c_in: int, p: int, kernel: int, first: bool, classes: int):
        super().__init__()
        self.first, self.half = first, kernel // 2
        self.vconv = nn.Conv2d(c_in, 2 * p, (self.half + 1, kernel))
        self.hconv = nn.Conv2d(c_in, 2 * p, (1, self.half + 1))
        self.link = nn.Conv2d(2 * p, 2 * p, 1)
        self.hout = nn.Conv2d(p, p, 1)
        self.residual = not first  # the first layer's input holds the pixel itself
        self.cond = nn.Embedding(classes, 2 * p) if classes > 0 else None
        if self.cond is not None:
            nn.init.zeros_(self.cond.weight)

    def condition(self, y: torch.Tensor | None):
        if self.cond is None:
            return 0.0
        return self.cond(y)[:, :, None, None]

    def forward(self, v: torch.Tensor, h: torch.Tensor, c) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.half
        v_pre = self.vconv(F.pad(v, (k, k, k, 0))) + c
        v_down = F.pad(v_pre, (0, 0, 1, 0))[:, :, :-1]          # row i gets row i − 1
        h_src = F.pad(h, (1, 0))[..., :-1] if self.first else h  # mask A: column j gets j − 1
        h_pre = self.hconv(F.pad(h_src, (k, 0))) + self.link(v_down) + c
        h_out = self.hout(_gate(h_pre))
        return _gate(v_pre), h_out + h if self.residual else h_out

    # -- one row / one pixel at a time (sampling) ---------------------------------------
    def vertical_row(self, v_rows: torch.Tensor, c) -> torch.Tensor:
        """The pre-gate vertical features of the last row of ``v_rows`` (the k//2 + 1 rows
        ending at it, fewer at the top of the image): (B, 2p, 1, W)."""
        k = self.half
        return self.vconv(F.pad(v_rows, (k, k, k + 1 - v_rows.shape[2], 0))) + c

    def link_row(self, v_pre_above: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        """The linked vertical input of a row from the pre-gate features of the row above
        (None for the first row: zeros, as the shift pads)."""
        if v_pre_above is None:
            v_pre_above = torch.zeros_like(like)
        return self.link(v_pre_above)

    def horizontal_pixel(self, h_row: torch.Tensor, j: int, link: torch.Tensor, c) -> torch.Tensor:
        """This layer's horizontal output at column j of one row, from its input row ``h_row``
        (B, C, 1, W) and the row's linked vertical features: (B, p, 1, 1)."""
        k = self.half
        if self.first:  # columns j − 1 − k … j − 1
            lo, hi = j - 1 - k, j
        else:
            lo, hi = j - k, j + 1
        window = h_row[..., max(lo, 0):hi]
        window = F.pad(window, (k + 1 - window.shape[-1], 0))
        # one pixel: the convolutions as matrix products (a convolution call costs more than its work here)
        b = window.shape[0]
        h_pre = F.linear(window.reshape(b, -1), self.hconv.weight.flatten(1), self.hconv.bias)
        h_pre = h_pre + link[:, :, 0, j] + (c if isinstance(c, float) else c[:, :, 0, 0])
        a, g = h_pre.chunk(2, dim=1)
        out = F.linear(torch.tanh(a) * torch.sigmoid(g), self.hout.weight.flatten(1), self.hout.bias)[..., None, None]
        return out + h_row[..., j:j + 1] if self.residual else out


def start_maps(net, n: int, shape: tuple[int, int], generator, given, given_rows: int, uniforms):
    """What both autoregressive samplers start from: the draws (``uniforms``, or fresh ones
    from ``generator``) and the (n, C, H, W) map, its first ``given_rows`` rows copied from
    ``given`` (completion), the rest zeros to be drawn."""
    rows, cols = shape
    dev = next(net.parameters()).device
    if uniforms is None:
        uniforms = torch.rand(n, net.channels, rows, cols, generator=generator, device=dev)
    out = torch.zeros(n, net.channels, rows, cols, dtype=torch.long, device=dev)
    if given_rows:
        out[:, :, :given_rows] = given[:, :, :given_rows].long()
    return uniforms, out


class GatedPixelCNN(nn.Module):
    """Logits (B, K, C, H, W) of p(x_ij | x_<ij) for every pixel, from ``x`` (and class ``y``).

    ``channels`` C of the modelled image, ``categories`` K per value, ``layers`` gated layers of
    ``hidden`` p channels and ``kernel`` k (odd), ``head`` channels in the 1 × 1 output network,
    ``classes`` > 0 for class conditioning, ``embed_dim`` > 0 to embed integer maps (C = 1)."""

    def __init__(self, channels: int = 1, categories: int = 2, layers: int = 5, hidden: int = 32,
                 kernel: int = 5, head: int = 64, classes: int = 0, embed_dim: int = 0):
        super().__init__()
        if kernel < 3 or kernel % 2 == 0:
            raise ValueError(f"kernel must be odd and >= 3, got {kernel}")
        if embed_dim and channels != 1:
            raise ValueError("an embedded integer map has one channel")
        self.channels, self.categories, self.classes = channels, categories, classes
        self.embed = nn.Embedding(categories, embed_dim) if embed_dim else None
        c_in = embed_dim or channels
        self.layers = nn.ModuleList(
            GatedLayer(c_in if i == 0 else hidden, hidden, kernel, i == 0, classes) for i in range(layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, head, 1), nn.ReLU(),
                                  nn.Conv2d(head, channels * categories, 1))

    @property
    def receptive_rows(self) -> int:
        """Rows above a pixel that its distribution can depend on."""
        return 1 + sum(layer.half for layer in self.layers)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The first layer's input: an embedded integer map, or the float image itself."""
        if self.embed is None:
            return x.float()
        if x.dim() == 4:
            x = x[:, 0]
        return self.embed(x.long()).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        v = h = self.inputs(x)
        for layer in self.layers:
            v, h = layer(v, h, layer.condition(y))
        b, _, rows, cols = h.shape
        return self.head(h).view(b, self.categories, self.channels, rows, cols)

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x) per image, (B,): the exact sum of the per-pixel log-probabilities."""
        target = x.long() if x.dim() == 4 else x.long().unsqueeze(1)
        logp = -F.cross_entropy(self(x, y), target, reduction="none")
        return logp.flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, shape: tuple[int, int], y: torch.Tensor | None = None,
               generator: torch.Generator | None = None, given: torch.Tensor | None = None,
               given_rows: int = 0, uniforms: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` maps (n, C, H, W) of integer values 0 … K−1 drawn in raster order; rows above
        ``given_rows`` are copied from ``given`` (completion). ``uniforms`` (n, C, H, W) in
        [0, 1) are the draws (inverse CDF); by default drawn from ``generator``."""
        rows, cols = shape
        uniforms, out = start_maps(self, n, shape, generator, given, given_rows, uniforms)
        conds = [layer.condition(y) for layer in self.layers]
        # v_in[l]: the vertical stack's input of layer l, rows filled as they become final
        v_in = [self.inputs(out)] + [None] * len(self.layers)
        v_pre_above: list[torch.Tensor | None] = [None] * len(self.layers)
        for i in range(rows):
            links = []
            for li, layer in enumerate(self.layers):
                pre = v_pre_above[li]
                links.append(layer.link_row(pre, torch.zeros(n, layer.link.in_channels, 1, cols, device=out.device)))
            if i >= given_rows:
                self._sample_row(out, v_in[0], i, links, conds, uniforms)
            # row i is final: its vertical features for the rows below
            row0 = self.inputs(out[:, :, i:i + 1])
            v_in[0][:, :, i:i + 1] = row0
            for li, layer in enumerate(self.layers):
                lo = max(0, i - layer.half)
                pre = layer.vertical_row(v_in[li][:, :, lo:i + 1], conds[li])
                v_pre_above[li] = pre
                if v_in[li + 1] is None:
                    v_in[li + 1] = pre.new_zeros(n, pre.shape[1] // 2, rows, cols)
                v_in[li + 1][:, :, i:i + 1] = _gate(pre)
        return out

    def head_pixel(self, h: torch.Tensor) -> torch.Tensor:
        """The output network at one pixel, (B, p) -> (B, C·K): its 1 × 1 convolutions as matrix products."""
        _, first, _, last = self.head
        h = F.linear(torch.relu(h), first.weight.flatten(1), first.bias)
        return F.linear(torch.relu(h), last.weight.flatten(1), last.bias)

    def _sample_row(self, out, inp, i, links, conds, uniforms) -> None:
        cols = out.shape[-1]
        h_rows = [inp[:, :, i:i + 1].clone()] + [None] * len(self.layers)
        for j in range(cols):
            for li, layer in enumerate(self.layers):
                h = layer.horizontal_pixel(h_rows[li], j, links[li], conds[li])
                if h_rows[li + 1] is None:
                    h_rows[li + 1] = h.new_zeros(h.shape[0], h.shape[1], 1, cols)
                h_rows[li + 1][..., j:j + 1] = h
            b = out.shape[0]
            logits = self.head_pixel(h_rows[-1][:, :, 0, j]).view(b, self.categories, self.channels)
            value = categorical_inverse_cdf(logits, uniforms[:, :, i, j])
            out[:, :, i, j] = value
            h_rows[0][..., j:j + 1] = self.inputs(out[:, :, i:i + 1, j:j + 1])


def categorical_inverse_cdf(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The value v with CDF(v − 1) ≤ u < CDF(v) of softmax(logits) over dim 1: logits (B, K, ...)
    and u (B, ...) in [0, 1) give (B, ...) integers; the same u gives the same draw."""
    cdf = torch.softmax(logits.double(), dim=1).cumsum(dim=1)
    return (u.unsqueeze(1).double() >= cdf[:, :-1]).sum(dim=1)


@torch.no_grad()
def sample_naive(net: GatedPixelCNN, n: int, shape: tuple[int, int], uniforms: torch.Tensor,
                 y: torch.Tensor | None = None, given: torch.Tensor | None = None,
                 given_rows: int = 0) -> torch.Tensor:
    """The reference sampler: the whole network over the whole image for every pixel (slow;
    for tests and the benchmark's comparison)."""
    rows, cols = shape
    out = torch.zeros(n, net.channels, rows, cols, dtype=torch.long, device=uniforms.device)
    if given_rows:
        out[:, :, :given_rows] = given[:, :, :given_rows].long()
    for i in range(given_rows, rows):
        for j in range(cols):
            logits = net(out, y)[..., i, j]
            out[:, :, i, j] = categorical_inverse_cdf(logits, uniforms[:, :, i, j])
    return out
