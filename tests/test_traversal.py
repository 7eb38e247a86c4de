"""Latent traversals: one dimension changes per row, ranked rows, the PNG, the GIF and the CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import vaelab
from test_cli import assert_one_line_error, cli
from vaelab.data.batch import Batch
from vaelab.errors import VaelabError
from vaelab.viz.grids import grid
from vaelab.viz.latent import LatentView
from vaelab.viz.traversal import save_traversal, traversal

PICTURED = [("vae", {}), ("ae", {}), ("dae", {}), ("conv-ae", {}), ("linear-ae", {}), ("stacked-ae", {}),
            ("cvae", {"num_classes": 10})]


def _tiny(name, **cfg):
    torch.manual_seed(0)
    net = {} if name in ("conv-ae", "linear-ae") else {"hidden": [16]}
    return vaelab.build(name, input_shape=(1, 28, 28), latent_dim=3, **net, **cfg)


@pytest.mark.parametrize("name,cfg", PICTURED)
def test_every_pictured_model_traverses_around_an_image(name, cfg, synthetic_small):
    model = _tiny(name, **cfg)
    data = synthetic_small.test.subset(slice(0, 50))
    t = traversal(model, data, index=4, steps=5)
    assert t.images.shape == (3, 5, 1, 28, 28) and sorted(t.dims) == [0, 1, 2]
    view = LatentView(model)
    centre = view.encode(Batch(data.x[4:5], data.y[4:5]) if view.conditional else data.x[4:5])[0]
    assert torch.allclose(t.centre, centre)
    label = int(data.y[4]) if view.conditional else None  # a conditional model decodes at the image's class
    codes = centre.repeat(5, 1)
    codes[:, t.dims[0]] = t.values[0]
    assert torch.allclose(t.images[0], view.decode(codes, label), atol=1e-6)


def test_only_the_rows_dimension_changes_over_its_posterior_spread(synthetic_vae, synthetic_small):
    data = synthetic_small.test
    t = traversal(synthetic_vae, data, index=7, steps=7, span=2.0)
    mu, logvar = synthetic_vae.posterior_params(data.x[7:8])
    sigma = (0.5 * logvar).exp()[0]
    view = LatentView(synthetic_vae)
    for r, d in enumerate(t.dims):
        expected = mu[0, d] + torch.linspace(-2, 2, 7) * sigma[d]
        assert torch.allclose(t.values[r], expected, atol=1e-5)
        codes = mu[0].repeat(7, 1)
        codes[:, d] = expected
        assert torch.allclose(t.images[r], view.decode(codes), atol=1e-5)
    assert not torch.allclose(t.images[0, 0], t.images[0, -1])  # the row does change


def test_rows_are_ranked_by_kl_and_a_prior_traversal_spans_the_prior(synthetic_vae, synthetic_small):
    data = synthetic_small.test
    kl = synthetic_vae.kl_per_dim(data.x).mean(0)
    t = traversal(synthetic_vae, data, top=3, steps=5)
    assert t.dims == torch.argsort(kl, descending=True)[:3].tolist()
    assert t.scores == pytest.approx(kl[t.dims].tolist(), rel=1e-4) and "KL" in t.measure
    assert torch.equal(t.centre, torch.zeros(8)) and torch.allclose(t.values[0], torch.linspace(-3, 3, 5))
    assert traversal(synthetic_vae, data, dims=[5, 1], steps=3).dims == [5, 1]


def test_an_autoencoder_is_traversed_around_its_mean_code_in_code_standard_deviations(synthetic_small):
    ae = _tiny("ae")
    x = synthetic_small.test.x[:100]
    codes = ae.code(x)
    t = traversal(ae, x, steps=3, span=1.0)
    assert torch.allclose(t.centre, codes.mean(0), atol=1e-5)
    d = t.dims[0]
    assert torch.allclose(t.values[0], codes[:, d].mean() + torch.tensor([-1.0, 0, 1]) * codes[:, d].std(), atol=1e-5)
    assert t.dims == torch.argsort(codes.var(0), descending=True).tolist()


def test_png_is_captioned_rows_of_the_decoded_tiles_and_the_gif_has_one_frame_per_step(synthetic_vae, synthetic_small,
                                                                                         tmp_path):
    png, gif = tmp_path / "t.png", tmp_path / "t.gif"
    t = save_traversal(synthetic_vae, png, synthetic_small.test, gif=gif, top=4, steps=6)
    tiles = grid(t.images.reshape(24, 1, 28, 28), nrow=6)
    with Image.open(png) as img:
        assert img.height == tiles.height and img.width > tiles.width
        right = np.asarray(img.convert("L"))[:, img.width - tiles.width:]
        left = np.asarray(img.convert("L"))[:, :img.width - tiles.width]
    assert np.array_equal(right, np.asarray(tiles))
    assert (left < 128).any()  # the captions are drawn
    with Image.open(gif) as anim:
        assert anim.n_frames == 6 and anim.info.get("loop") == 0
        anim.seek(5)
        last = np.asarray(anim.convert("L"))
    assert last.shape[0] == tiles.height  # one tile per row, all rows in every frame


def test_bad_choices_are_one_line_errors(synthetic_vae, synthetic_small):
    data = synthetic_small.test
    with pytest.raises(VaelabError, match="latent dimensions run from 0 to 7"):
        traversal(synthetic_vae, data, dims=[2, 8])
    with pytest.raises(VaelabError, match="indices run from 0 to 499"):
        traversal(synthetic_vae, data, index=500)
    with pytest.raises(VaelabError, match="without --top"):
        traversal(synthetic_vae, data, dims=[1], top=2)
    with pytest.raises(VaelabError, match="--steps must be from 2"):
        traversal(synthetic_vae, data, steps=1)
    with pytest.raises(VaelabError, match="give --label"):
        traversal(_tiny("cvae", num_classes=10), data)


@pytest.fixture(scope="module")
def saved_vae(synthetic_vae, tmp_path_factory):
    path = tmp_path_factory.mktemp("traverse") / "vae"
    vaelab.save(synthetic_vae, path)
    return path


def test_cli_writes_a_png_of_rows_by_steps_tiles(saved_vae, synthetic_npy, tmp_path, capsys):
    out = tmp_path / "t.png"
    code, stdout, err = cli(capsys, "traverse", saved_vae, "--data", synthetic_npy, "--top", "3",
                            "--steps", "4", "--index", "2", "-o", out, "--gif", tmp_path / "t.gif")
    assert code == 0, err
    tile = 28 * 2  # 28-pixel images are drawn twice as large, with 2 pixels of padding
    with Image.open(out) as img:
        assert img.height == 3 * (tile + 4) + 4
    assert "around image 2" in stdout and "posterior standard deviations" in stdout


def test_cli_bad_input_is_one_line(saved_vae, synthetic_npy, tmp_path, capsys):
    base = ["traverse", saved_vae, "--data", synthetic_npy, "-o", tmp_path / "t.png"]
    assert_one_line_error(*cli(capsys, *base, "--dims", "0,8")[::2], "--dims 8", "run from 0 to 7")
    assert_one_line_error(*cli(capsys, *base, "--index", "200")[::2], "--index 200", "0 to 199")
    clf = vaelab.baselines.train_classifier(torch.rand(20, 1, 28, 28), torch.arange(20) % 10, epochs=1)
    clf.save(tmp_path / "baseline")
    baseline = ["traverse", tmp_path / "baseline", "--data", synthetic_npy]
    assert_one_line_error(*cli(capsys, *baseline)[::2], "not a vaelab model directory")
    vaelab.save(_tiny("cvae", num_classes=10), tmp_path / "cvae")
    assert_one_line_error(*cli(capsys, "traverse", tmp_path / "cvae", "--data", synthetic_npy)[::2],
                          "give --label")
    assert not (tmp_path / "t.png").exists()
