"""The 2-D latent map: codes (or their projection) as points, one colour per label."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

import vaelab
from test_cli import assert_one_line_error, assert_png, cli
from vaelab.data.batch import Batch
from vaelab.errors import VaelabError
from vaelab.viz.latent import LatentView
from vaelab.viz.latent_map import latent_map, save_latent_map, save_points
from vaelab.viz.plots import project_2d


def _model(name="vae", latent_dim=2, shape=(1, 8, 8), **cfg):
    torch.manual_seed(0)
    return vaelab.build(name, input_shape=shape, hidden=[16], latent_dim=latent_dim, **cfg)


def _labelled(n=60, classes=3):
    torch.manual_seed(1)
    return Batch(torch.rand(n, 1, 8, 8), torch.arange(n) % classes)


def test_2d_codes_are_drawn_as_they_are_with_their_labels():
    model = _model()
    rows = _labelled()
    m = latent_map(model, rows)
    assert m.projection is None and m.note is None
    assert torch.equal(m.points, LatentView(model).encode(rows)) and torch.equal(m.labels, rows.y)


def test_wider_codes_are_projected():
    model = _model(latent_dim=5)
    rows = _labelled()
    m = latent_map(model, rows, projection="pca")
    assert m.projection == "pca" and m.codes.shape == (60, 5)
    assert torch.allclose(m.points, project_2d(m.codes, "pca"))


def _tab10_colours_in(path, alpha: float = 0.7) -> int:
    """How many of tab10's colours, drawn at the map's ``alpha`` on white, the PNG holds
    (its grey, the 8th, is left out: anti-aliased black text makes that grey too)."""
    from matplotlib import colormaps

    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16).reshape(-1, 3)
    found = 0
    for i in (0, 1, 2, 3, 4, 5, 6, 8, 9):
        rgb = np.array(colormaps["tab10"](i)[:3]) * 255
        blend = np.round(alpha * rgb + (1 - alpha) * 255)
        found += int((np.abs(pixels - blend).max(1) <= 2).sum() >= 20)
    return found


def test_the_png_has_one_colour_per_label_and_one_without_labels(tmp_path):
    model = _model()
    rows = _labelled(classes=4)
    save_latent_map(latent_map(model, rows), tmp_path / "four.png")
    assert _tab10_colours_in(tmp_path / "four.png") == 4
    plain = latent_map(model, rows.x)
    assert plain.labels is None and "no labels" in plain.note
    save_latent_map(plain, tmp_path / "plain.png")
    assert _tab10_colours_in(tmp_path / "plain.png", alpha=0.6) == 1  # unlabelled points: alpha 0.6


def test_umap_missing_is_one_line_and_used_when_present(monkeypatch):
    model = _model(latent_dim=4)
    rows = _labelled(n=20)
    monkeypatch.setitem(sys.modules, "umap", None)  # import umap fails
    with pytest.raises(VaelabError, match="pip install umap-learn"):
        latent_map(model, rows, projection="umap")

    class UMAP:
        def __init__(self, n_components, random_state, n_neighbors):
            self.seed = random_state

        def fit_transform(self, codes):
            return codes[:, :2] + self.seed

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=UMAP))
    m = latent_map(model, rows, projection="umap", seed=2)
    assert m.projection == "umap" and torch.allclose(m.points, m.codes[:, :2] + 2)
    with pytest.raises(VaelabError, match="unknown projection 'isomap'; choose one of pca, tsne, umap"):
        latent_map(model, rows, projection="isomap")


def test_saved_points_hold_points_codes_and_labels(tmp_path):
    m = latent_map(_model(latent_dim=3), _labelled())
    save_points(m, tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz", allow_pickle=False) as f:
        assert np.array_equal(f["points"], m.points.numpy()) and np.array_equal(f["codes"], m.codes.numpy())
        assert np.array_equal(f["y"], m.labels.numpy())
    with pytest.raises(VaelabError, match="ending in .npz"):
        save_points(m, tmp_path / "p.csv")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return vaelab.save(_model(latent_dim=3, shape=(1, 28, 28)), tmp_path_factory.mktemp("map") / "vae")


def test_cli_scatter_maps_the_test_split(tiny_run, synthetic_npy, tmp_path, capsys):
    out, pts = tmp_path / "map.png", tmp_path / "pts.npz"
    code, stdout, err = cli(capsys, "scatter", tiny_run, "--data", synthetic_npy, "--limit", "150",
                            "--threads", "1", "-o", out, "--save-codes", pts)
    assert code == 0, err
    assert f"wrote {out} and {pts}" in stdout and err == ""
    assert_png(out)
    test = vaelab.load_dataset(synthetic_npy, "test")
    with np.load(pts) as f:
        assert f["points"].shape == (150, 2) and np.array_equal(f["y"], test.y[:150].numpy())
    assert _tab10_colours_in(out) == 9  # 10 classes, less the grey


def test_cli_scatter_without_labels_notes_it(tiny_run, tmp_path, capsys):
    x = (np.random.default_rng(0).random((40, 28, 28)) * 255).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    code, stdout, err = cli(capsys, "scatter", tiny_run, "--data", f"npy:{tmp_path / 'x.npy'}", "--split", "train",
                            "--threads", "1", "-o", tmp_path / "m.png")
    assert code == 0, err
    assert err == "note: the data has no labels, so the map has one colour\n"


@pytest.mark.parametrize("args, fragment", [
    (["--projection", "mds"], "unknown projection 'mds'"),
    (["--save-codes", "pts.txt"], "ending in .npz"),
    (["--limit", "-1"], "--limit must be >= 0"),
])
def test_cli_scatter_bad_input_is_one_line(tiny_run, synthetic_npy, tmp_path, capsys, args, fragment):
    code, _, err = cli(capsys, "scatter", tiny_run, "--data", synthetic_npy, *args,
                       "-o", tmp_path / "m.png")
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "m.png").exists()
