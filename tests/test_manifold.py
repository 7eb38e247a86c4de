"""The decoded manifold, the class-fixed style grids and the continuity / completeness panels."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import vaelab
from test_cli import assert_one_line_error, assert_png, cli
from vaelab.data.batch import Batch
from vaelab.errors import VaelabError, VaelabWarning
from vaelab.viz.coverage import coverage_panels
from vaelab.viz.latent import LatentView
from vaelab.viz.manifold import MAX_SIDE, decoded_manifold, save_manifold


def _model(name, latent_dim=3, shape=(1, 8, 8), **cfg):
    torch.manual_seed(0)
    return vaelab.build(name, input_shape=shape, hidden=[16], latent_dim=latent_dim, **cfg)


def _icdf(q):
    return torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(q))


def test_each_tile_decodes_the_inverse_cdf_code_of_its_place():
    model = _model("vae")
    n = 4
    m = decoded_manifold(model, n=n, dims=(2, 0))
    view = LatentView(model)
    for r, c in [(0, 0), (0, 3), (2, 1), (3, 3)]:
        z = torch.zeros(1, 3)
        z[0, 2] = _icdf((c + 0.5) / n)  # across: left to right
        z[0, 0] = _icdf((n - 1 - r + 0.5) / n)  # up: the top row holds the largest value
        assert torch.allclose(m.codes[r * n + c], z[0], atol=1e-6)
        assert torch.allclose(m.images[0, r * n + c], view.decode(z)[0], atol=1e-6)
    assert m.images.shape == (1, n * n, 1, 8, 8) and m.labels is None
    assert "0 (the prior mean)" in m.caption[1] and "--dims" in m.caption[0]


def test_the_default_plane_is_the_two_top_ranked_dimensions_on_the_data(synthetic_vae, synthetic_small):
    order = LatentView(synthetic_vae).dimension_order(synthetic_small.test).order
    m = decoded_manifold(synthetic_vae, n=3, data=synthetic_small.test)
    assert m.dims == (order[0], order[1]) and "highest mean KL" in m.caption[0]
    assert decoded_manifold(synthetic_vae, n=3).dims == (0, 1)  # no data: dimensions 0 and 1, said so
    assert m.images.std() > 0.05  # a trained decoder draws strokes, not a flat grey


def test_an_autoencoder_grid_spans_quantiles_of_its_codes():
    model = _model("ae")
    x = torch.rand(40, 1, 8, 8)
    m = decoded_manifold(model, n=5, dims=(1, 2), data=x)
    codes = LatentView(model).encode(x)
    u = (torch.arange(5, dtype=torch.float64) + 0.5) / 5
    assert torch.allclose(m.across, torch.quantile(codes[:, 1].double(), u).float())
    assert torch.allclose(m.up, torch.quantile(codes[:, 2].double(), u).float())
    assert torch.allclose(m.codes[:, 0], codes.median(0).values[0].expand(25))
    assert "no prior" in m.caption[1] and "median" in m.caption[1]
    with pytest.raises(VaelabError, match="has no prior.*give data"):
        decoded_manifold(model, n=5)


def test_style_grids_fix_the_class_and_vary_z():
    model = _model("cvae", latent_dim=2, num_classes=10)
    view = LatentView(model)
    m = decoded_manifold(model, n=3)
    assert m.labels == list(range(10)) and m.images.shape[:2] == (10, 9)
    for k in (0, 4, 9):
        assert torch.allclose(m.images[k], view.decode(m.codes, k), atol=1e-6)
    assert not torch.allclose(m.images[1], m.images[7])
    one = decoded_manifold(model, n=3, label=7, by_class=True)
    assert one.labels == [7] and torch.allclose(one.images[0], m.images[7])


@pytest.mark.parametrize("kwargs, match", [
    ({"dims": (1, 1)}, "names one dimension twice"),
    ({"dims": (0, 3)}, r"dimension 3 is outside the latent space \(dimensions run from 0 to 2\)"),
    ({"dims": (0,)}, "takes two latent dimensions"),
    ({"n": 1}, "at least 2"),
    ({"by_class": True}, "drop --by-class"),
    ({"label": 2}, "drop --label"),
])
def test_bad_settings_are_refused_in_one_line(kwargs, match):
    with pytest.raises(VaelabError, match=match):
        decoded_manifold(_model("vae"), **kwargs)


def test_a_label_outside_the_classes_and_a_model_that_cannot_decode_are_refused():
    with pytest.raises(VaelabError, match=r"--label 10 is outside this model's classes 0..9"):
        decoded_manifold(_model("cvae", num_classes=10), n=2, label=10)

    class EncoderOnly(torch.nn.Module):
        name = "encoder-only"

        def encode(self, x):
            return x

    with pytest.raises(VaelabError, match="has no decode"):
        decoded_manifold(EncoderOnly(), n=2)
    with pytest.raises(VaelabError, match="1-D"):
        decoded_manifold(_model("vae", latent_dim=1), n=2)


def test_an_absurd_grid_size_is_capped_and_said():
    with pytest.warns(VaelabWarning, match=f"drawing {MAX_SIDE}×{MAX_SIDE}"):
        m = decoded_manifold(_model("vae"), n=10_000)
    assert m.n == MAX_SIDE and m.images.shape[1] == MAX_SIDE ** 2


def test_midpoints_decode_the_mean_of_two_codes_and_random_codes_follow_the_prior():
    model = _model("vae")
    x = torch.rand(30, 1, 8, 8)
    panels = coverage_panels(model, x, n=6, seed=3)
    assert [t for _, t in panels][1:] == ["real images A", "midpoints of the codes of A and B", "real images B"]
    view = LatentView(model)
    (prior, _), (a, _), (mid, _), (b, _) = panels
    assert torch.allclose(mid, view.decode((view.encode(a) + view.encode(b)) / 2), atol=1e-6)
    assert prior.shape == (6, 1, 8, 8) and "N(0, I)" in panels[0][1]
    again = coverage_panels(model, x, n=6, seed=3)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(panels, again))  # repeatable for a seed
    assert not torch.equal(coverage_panels(model, x, n=6, seed=4)[1][0], a)


def test_conditional_midpoints_join_two_images_of_one_class():
    model = _model("cvae", num_classes=3)
    y = torch.arange(30) % 3
    x = torch.rand(30, 1, 8, 8)
    panels = coverage_panels(model, Batch(x, y), n=8, seed=0)
    a, b = panels[1][0], panels[3][0]
    class_of = {tuple(x[i].flatten().tolist()): int(y[i]) for i in range(30)}
    assert [class_of[tuple(i.flatten().tolist())] for i in a] == [class_of[tuple(i.flatten().tolist())] for i in b]


def test_an_autoencoders_random_codes_come_from_a_gaussian_fitted_to_its_codes():
    from vaelab.viz.coverage import _random_codes

    view = LatentView(_model("ae"))
    x = torch.rand(200, 1, 8, 8)
    codes = view.encode(x)
    z, title = _random_codes(view, x, 20000, torch.Generator().manual_seed(0))
    assert "Gaussian fit to codes" in title and "Gaussian fit to codes" in coverage_panels(view, x, n=4)[0][1]
    cov = torch.cov(codes.T)
    scale = float(cov.diagonal().max())
    assert torch.allclose(z.mean(0), codes.mean(0), atol=0.05 * scale ** 0.5)  # not N(0, I)'s 0
    assert torch.allclose(torch.cov(z.T), cov, atol=0.05 * scale)


def test_the_png_shows_the_grid_and_differs_by_plane(tmp_path):
    model = _model("vae", shape=(1, 28, 28))
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    save_manifold(decoded_manifold(model, n=4, dims=(0, 1)), a)
    save_manifold(decoded_manifold(model, n=4, dims=(2, 1)), b)
    assert_png(a)
    pa, pb = (np.asarray(Image.open(p).convert("L"), dtype=np.int16) for p in (a, b))
    assert pa.shape == pb.shape and np.abs(pa - pb).max() > 50


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """An untrained 28×28 VAE saved as a model directory (what the CLI loads)."""
    return vaelab.save(_model("vae", latent_dim=3, shape=(1, 28, 28)), tmp_path_factory.mktemp("maps") / "vae")


def test_cli_manifold_and_coverage(tiny_run, data_dir, tmp_path, capsys):
    out = tmp_path / "m.png"
    code, stdout, err = cli(capsys, "manifold", tiny_run, "--n", "5", "--data", "mnist", "--data-dir", data_dir,
                            "--limit", "200", "--threads", "1", "-o", out)
    assert code == 0, err
    assert f"wrote {out}" in stdout and "highest mean KL" in stdout
    assert_png(out)
    cov = tmp_path / "c.png"
    code, stdout, err = cli(capsys, "manifold", tiny_run, "--coverage", "-n", "6", "--data", "mnist",
                            "--data-dir", data_dir, "--limit", "200", "--threads", "1", "-o", cov)
    assert code == 0, err
    assert "midpoints" in stdout and f"wrote {cov}" in stdout
    assert_png(cov)


@pytest.mark.parametrize("args, fragment", [
    (["--dims", "0,5"], "dimension 5 is outside the latent space"),
    (["--dims", "2,2"], "names one dimension twice"),
    (["--n", "0"], "at least 2"),
    (["--by-class"], "drop --by-class"),
    (["--label", "1"], "drop --label"),
    (["--coverage"], "give --data SPEC"),
])
def test_cli_manifold_bad_input_is_one_line(tiny_run, tmp_path, capsys, args, fragment):
    code, _, err = cli(capsys, "manifold", tiny_run, *args, "-o", tmp_path / "x.png")
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "x.png").exists()


def test_cli_manifold_caps_n_with_a_warning(tmp_path, capsys):
    run = vaelab.save(_model("vae"), tmp_path / "small")  # 8×8 images keep a 50×50 grid quick
    code, _, err = cli(capsys, "manifold", run, "--n", "400", "-o", tmp_path / "x.png")
    assert code == 0 and f"warning: --n 400 is more tiles per side than can be read; drawing {MAX_SIDE}" in err


def test_cli_style_grid_refuses_a_class_the_model_lacks_and_draws_one_it_has(tmp_path, capsys):
    run = vaelab.save(_model("cvae", latent_dim=2, num_classes=4), tmp_path / "cvae")
    code, _, err = cli(capsys, "manifold", run, "--label", "4", "-o", tmp_path / "x.png")
    assert_one_line_error(code, err, "--label 4 is outside this model's classes 0..3")
    code, stdout, err = cli(capsys, "manifold", run, "--label", "3", "--n", "3", "-o", tmp_path / "x.png")
    assert code == 0 and f"wrote {tmp_path / 'x.png'}" in stdout, err
    assert_png(tmp_path / "x.png")
