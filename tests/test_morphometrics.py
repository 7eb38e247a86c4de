"""Morphometrics against hand-made images whose thickness, slant, size and length are known,
on real MNIST digits changed in a known way, and for the inputs that are not digits at all."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from vaelab import morphometrics as mm
from vaelab.errors import VaelabError


def _canvas(n: int = 28) -> np.ndarray:
    return np.zeros((n, n))


def _bar(thickness: int, length: int = 16) -> np.ndarray:
    img = _canvas()
    top, left = (28 - length) // 2, 14 - thickness // 2
    img[top:top + length, left:left + thickness] = 1.0
    return img


def _sheared_bar(degrees: float, thickness: float = 4.0, length: int = 18, size: int = 40) -> np.ndarray:
    """A bar whose top leans right by ``degrees`` (x of its axis = c + tan(θ)·(ȳ − y)), drawn
    with 8×8 supersampling so its edges are anti-aliased like a scanned stroke."""
    sub = 8
    ys, xs = np.mgrid[0:size * sub, 0:size * sub] / sub + 0.5 / sub
    centre = size / 2
    axis_x = centre + np.tan(np.radians(degrees)) * (centre - ys)
    inside = (np.abs(xs - axis_x) < thickness / 2) & (np.abs(ys - centre) < length / 2)
    return inside.reshape(size, sub, size, sub).mean((1, 3))


@pytest.mark.parametrize("scale", [1, 4])
def test_bars_of_known_thickness_width_and_height(scale):
    m = mm.measure(np.stack([_bar(2), _bar(4), _bar(6)]), scale=scale)
    np.testing.assert_allclose(m.thickness, [2, 4, 6], atol=0.25)
    np.testing.assert_allclose(m.width, [2, 4, 6], atol=0.25)
    np.testing.assert_allclose(m.height, [16, 16, 16], atol=0.25)
    np.testing.assert_allclose(m.area, [32, 64, 96], atol=0.5)
    np.testing.assert_allclose(m.slant, 0, atol=1e-9)
    assert m.valid.all()


def test_rectangle_width_height_area():
    img = _canvas()
    img[5:11, 4:14] = 1.0  # 6 rows high, 10 columns wide
    for scale in (1, 2, 4):
        m = mm.measure(img[None], scale=scale)
        assert m.width[0] == pytest.approx(10, abs=0.25) and m.height[0] == pytest.approx(6, abs=0.25)
        assert m.area[0] == pytest.approx(60, abs=0.5)


def test_length_of_straight_thin_lines():
    """A one-pixel line of n pixels measures n − 1 links (1 across, √2 diagonally)."""
    across, diagonal = _canvas(), _canvas()
    across[10, 3:23] = 1.0
    diagonal[np.arange(5, 15), np.arange(5, 15)] = 1.0
    m = mm.measure(np.stack([across, diagonal]), scale=1)
    np.testing.assert_allclose(m.length, [19, 9 * np.sqrt(2)], atol=1e-9)


@pytest.mark.parametrize("degrees", [-30, -15, 15, 30])
def test_slant_of_sheared_bars_is_the_shear_angle(degrees):
    """Positive slant = top leaning right; the bar stood upright keeps its thickness as width."""
    m = mm.measure(_sheared_bar(degrees)[None], scale=1)
    assert np.degrees(m.slant[0]) == pytest.approx(degrees, abs=1.0)
    assert m.width[0] == pytest.approx(4, abs=1.5)
    mirrored = mm.measure(_sheared_bar(degrees)[None, :, ::-1].copy(), scale=1)
    assert mirrored.slant[0] == pytest.approx(-m.slant[0], abs=1e-9)


def test_real_digits_sheared_and_thickened_move_their_measures(mnist_small):
    """A known shear of real digits raises their slant by about that angle; a 1-pixel dilation
    raises their thickness by about 2 pixels."""
    x = mnist_small.test.x[:40, 0].numpy().astype(np.float64)
    shear = np.tan(np.radians(20))
    # output (r, c) reads input (r, c + shear·(r − 14)): rows above the centre move right
    sheared = np.stack([ndimage.affine_transform(im, [[1, 0], [shear, 1]], offset=[0, -14 * shear], order=1)
                        for im in x])
    thick = np.stack([ndimage.grey_dilation(im, size=(3, 3)) for im in x])
    base, slanted, thicker = mm.measure(x), mm.measure(np.clip(sheared, 0, 1)), mm.measure(thick)
    assert np.degrees(np.median(slanted.slant - base.slant)) == pytest.approx(20, abs=4)
    assert np.median(thicker.thickness - base.thickness) == pytest.approx(2, abs=0.6)
    assert 1.5 < base.thickness.mean() < 4 and 10 < base.length.mean() < 80


def test_empty_image_is_zeros_and_invalid_noise_and_white_are_finite():
    rng = np.random.default_rng(0)
    images = np.stack([_canvas(), np.ones((28, 28)), rng.random((28, 28)), np.full((28, 28), 0.3)])
    m = mm.measure(images)
    assert m.valid.tolist() == [False, True, True, False]
    for name, values in m.as_dict().items():
        assert np.isfinite(values.astype(float)).all(), name
        if name != "valid":
            assert values[0] == 0 and values[3] == 0, name  # nothing reaches the threshold
    assert m.area[1] == pytest.approx(784, abs=1)
    assert m.summary()["thickness"]["mean"] == pytest.approx(m.thickness[m.valid].mean())


def test_chunking_uint8_and_layouts_give_the_same_figures(synthetic_small):
    x = synthetic_small.test.x[:30]
    a = mm.measure(x, chunk=64)
    for other in (mm.measure(x, chunk=7), mm.measure(x[:, 0].numpy())):
        for name in mm.MEASURES:
            np.testing.assert_allclose(getattr(other, name), getattr(a, name), atol=1e-9, err_msg=name)
    eight_bit = (x * 255).round().to(torch.uint8)
    np.testing.assert_allclose(mm.measure(eight_bit).area, mm.measure(eight_bit.float() / 255).area)


@pytest.mark.parametrize("images, settings, message", [
    (np.zeros((28, 28)), {}, r"N×1×H×W or N×H×W, got shape \(28, 28\)"),
    (np.full((1, 28, 28), 2.0), {}, r"pixels must lie in \[0, 1\]"),
    (np.full((1, 28, 28), np.nan), {}, "NaN"),
    (np.zeros((1, 3, 28, 28)), {}, "N×1×H×W"),
    (np.zeros((1, 28, 28)), {"scale": 0}, "scale must be a whole number"),
    (np.zeros((1, 28, 28)), {"scale": 2.5}, "scale must be a whole number"),
    (np.zeros((1, 28, 28)), {"threshold": 1.0}, "threshold must lie strictly between 0 and 1"),
    (np.zeros((1, 28, 28)), {"threshold": "half"}, "threshold must lie strictly between 0 and 1"),
])
def test_bad_input_is_one_clear_line(images, settings, message):
    with pytest.raises(VaelabError, match=message) as info:
        mm.measure(images, **settings)
    assert "\n" not in str(info.value)


def test_dataset_figures_are_cached_by_content(tmp_path, monkeypatch, synthetic_small):
    x = synthetic_small.test.x[:12]
    first = mm.dataset_morphometrics(x, cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".safetensors"
    monkeypatch.setattr(mm, "measure", lambda *a, **k: pytest.fail("measured again despite the cache"))
    again = mm.dataset_morphometrics(x, cache_dir=tmp_path)
    for name, values in first.as_dict().items():
        np.testing.assert_array_equal(again.as_dict()[name], values)
    monkeypatch.undo()
    mm.dataset_morphometrics(x.flip(3), cache_dir=tmp_path)  # other pixels: another file
    mm.dataset_morphometrics(x, scale=2, cache_dir=tmp_path)  # other settings: another file
    assert len(list(tmp_path.iterdir())) == 3


def test_default_cache_lives_in_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert mm.cache_directory() == tmp_path / "vaelab" / "morphometrics"


def test_attribute_vectors_one_hot_and_recorded_standardization(synthetic_small):
    train, test = synthetic_small.train.subset(slice(0, 60)), synthetic_small.test.subset(slice(0, 20))
    y, stand = mm.attribute_vectors(train.y, mm.measure(train.x))
    assert y.shape == (60, 12) and y.dtype == torch.float32
    assert torch.equal(y[:, :10].argmax(1), train.y) and torch.equal(y[:, :10].sum(1), torch.ones(60))
    np.testing.assert_allclose(y[:, 10:].mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(y[:, 10:].std(0, unbiased=False).numpy(), 1, atol=1e-4)
    figures = mm.measure(test.x)
    y_test, same = mm.attribute_vectors(test.y, figures, standardization=stand)
    assert same is stand and set(stand.to_dict()["mean"]) == {"thickness", "slant"}
    expected = (figures.thickness - stand.mean["thickness"]) / stand.std["thickness"]
    np.testing.assert_allclose(y_test[:, 10].numpy(), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(VaelabError, match=r"labels must lie in 0\.\.9"):
        mm.attribute_vectors(torch.full((20,), 12), figures)


def test_module_command_prints_a_split_summary(data_dir, capsys):
    assert mm.main(["--data", "mnist", "--data-dir", str(data_dir), "--limit", "40", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 40 and result["valid"] == 40 and result["images_per_second"] > 0
    assert 1.5 < result["summary"]["thickness"]["mean"] < 4
    assert mm.main(["--data", "nope", "--limit", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
