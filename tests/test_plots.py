"""PNG plots: 2-D latent maps, side-by-side panels, curves and 2-D projections."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vaelab.errors import VaelabError
from vaelab.viz.plots import line_plot, project_2d, scatter_2d, scatter_panels


def _png(path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        assert img.format == "PNG"
        return img


def _only(directory, name):
    assert sorted(p.name for p in directory.iterdir()) == [name]  # no temporary files left behind


def test_scatter_2d_with_and_without_labels(tmp_path):
    g = torch.Generator().manual_seed(0)
    codes, labels = torch.randn(300, 2, generator=g), torch.arange(300) % 10
    scatter_2d(codes, labels, tmp_path / "map.png", title="2-D latent space", class_names=list("0123456789"))
    assert _png(tmp_path / "map.png").size == (600, 550)
    _only(tmp_path, "map.png")
    scatter_2d(codes.numpy(), None, tmp_path / "map.png")  # overwrites atomically, one colour
    _only(tmp_path, "map.png")


def test_scatter_panels_side_by_side(tmp_path):
    codes = np.random.default_rng(0).normal(size=(100, 2))
    labels = np.arange(100) % 3
    scatter_panels([(codes, labels, "PCA"), (codes * 2, labels, "AE"), (codes, None, "VAE")], tmp_path / "p.png")
    wide = _png(tmp_path / "p.png").size
    assert wide[0] > 2 * wide[1]
    scatter_panels([(codes, labels, str(i)) for i in range(3)], tmp_path / "q.png", ncols=1)  # a column
    assert _png(tmp_path / "q.png").size[1] > _png(tmp_path / "q.png").size[0]


def test_scatter_rejects_codes_that_are_not_2d(tmp_path):
    with pytest.raises(VaelabError, match="project_2d"):
        scatter_2d(torch.randn(10, 5), None, tmp_path / "x.png")
    with pytest.raises(VaelabError, match="labels"):
        scatter_2d(torch.randn(10, 2), torch.zeros(9, dtype=torch.long), tmp_path / "x.png")
    with pytest.raises(VaelabError, match="panel 0"):
        scatter_panels([(torch.randn(10, 2), None)], tmp_path / "x.png")
    assert not any(tmp_path.iterdir())


def test_line_plot(tmp_path):
    xs = list(range(1, 11))
    line_plot(xs, {"train": [1 / x for x in xs], "test": np.linspace(1, 0.2, 10)}, tmp_path / "c.png",
              xlabel="epoch", ylabel="loss", title="curves", logy=True)
    _png(tmp_path / "c.png")
    line_plot(torch.arange(3), {"only": torch.tensor([1.0, float("nan"), 2.0])}, tmp_path / "d.png")
    with pytest.raises(VaelabError, match="has 2 values"):
        line_plot([1, 2, 3], {"bad": [1, 2]}, tmp_path / "e.png")
    with pytest.raises(VaelabError, match="log y"):
        line_plot([1, 2], {"bad": [0, 1]}, tmp_path / "e.png", logy=True)
    assert not (tmp_path / "e.png").exists()


def test_project_2d():
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(60, 6, generator=g) * torch.tensor([5.0, 3.0, 1.0, 0.1, 0.1, 0.1])
    pca = project_2d(codes)
    assert pca.shape == (60, 2) and pca.dtype == torch.float32
    assert pca[:, 0].var() > pca[:, 1].var()
    tsne = project_2d(codes, "tsne", seed=1)
    assert tsne.shape == (60, 2) and torch.equal(tsne, project_2d(codes, "tsne", seed=1))
    two = torch.randn(5, 2)
    assert torch.equal(project_2d(two, "tsne"), two)
    with pytest.raises(VaelabError, match="unknown projection"):
        project_2d(codes, "umap")
