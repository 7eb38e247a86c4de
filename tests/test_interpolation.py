"""Interpolation: slerp's norm profile, the three paths, their measures, image files, the CLI
and ``compare interpolation``."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import vaelab
from test_cli import assert_one_line_error, cli
from vaelab.baselines import train_classifier
from vaelab.compare import interpolation as compare_interpolation
from vaelab.errors import VaelabError
from vaelab.viz.interpolation import interpolate, lerp, path_measures, read_image_files, slerp
from vaelab.viz.latent import LatentView


def test_slerp_keeps_the_norm_profile_where_a_straight_line_sags():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(16, generator=g), 2 * torch.randn(16, generator=g)
    t = torch.linspace(0, 1, 9)
    path = slerp(a, b, t)
    assert torch.allclose(path[0], a, atol=1e-5) and torch.allclose(path[-1], b, atol=1e-5)
    assert torch.allclose(path.norm(dim=1), (1 - t) * a.norm() + t * b.norm(), atol=1e-4)
    cosines = (path / path.norm(dim=1, keepdim=True)) @ (a / a.norm())
    assert (cosines[1:] < cosines[:-1]).all()  # the direction turns steadily away from a
    straight = lerp(a, b, t).norm(dim=1)
    assert straight[4] < path.norm(dim=1)[4] - 0.3  # nearly orthogonal codes: the line cuts inside


def test_slerp_falls_back_to_a_line_where_the_angle_is_undefined():
    a = torch.tensor([1.0, 0.0])
    t = torch.linspace(0, 1, 3)
    assert torch.allclose(slerp(a, -a, t), lerp(a, -a, t))
    assert torch.allclose(slerp(torch.zeros(2), a, t), lerp(torch.zeros(2), a, t))


def test_the_three_paths_decode_what_they_claim_and_measure_their_steps(synthetic_vae, synthetic_small):
    a, b = synthetic_small.test.x[0], synthetic_small.test.x[1]
    r = interpolate(synthetic_vae, a, b, steps=5)
    t = torch.linspace(0, 1, 5)
    assert torch.equal(r.images["pixels"][0], a) and torch.allclose(r.images["pixels"][-1], b)
    z = synthetic_vae.posterior_params(torch.stack([a, b]))[0].detach()
    view = LatentView(synthetic_vae)
    assert torch.allclose(r.codes["linear"], lerp(z[0], z[1], t), atol=1e-5)
    assert torch.allclose(r.images["linear"], view.decode(lerp(z[0], z[1], t)), atol=1e-5)
    assert torch.allclose(r.images["slerp"], view.decode(slerp(z[0], z[1], t)), atol=1e-5)
    assert r.measures["pixels"]["step_length"] == pytest.approx(float((b - a).norm()) / 4, rel=1e-5)
    x = r.images["linear"].flatten(1)
    assert r.measures["linear"]["step_length"] == pytest.approx(float((x[1:] - x[:-1]).norm(dim=1).mean()), rel=1e-5)
    assert r.rows().shape == (3, 5, 1, 28, 28)


def test_classifier_confidence_is_read_on_the_interior_and_the_endpoints_apart(synthetic_small):
    clf = train_classifier(synthetic_small.train.x, synthetic_small.train.y, epochs=1)
    images = synthetic_small.test.x[:6]
    p = clf.predict_proba(images).max(1).values
    m = path_measures(images, clf)
    assert m["confidence_mean"] == pytest.approx(float(p[1:5].mean()), rel=1e-5)
    assert m["confidence_min"] == pytest.approx(float(p[1:5].min()), rel=1e-5)
    assert m["endpoint_confidence"] == pytest.approx(float(p[[0, 5]].mean()), rel=1e-5)


def test_identical_images_a_missing_label_and_too_few_steps_are_refused(synthetic_vae, synthetic_small):
    x = synthetic_small.test.x
    with pytest.raises(VaelabError, match="identical, so there is nothing to interpolate"):
        interpolate(synthetic_vae, x[3], x[3].clone())
    for steps in (2, 201):
        with pytest.raises(VaelabError, match="from 3 .* to 200"):
            interpolate(synthetic_vae, x[0], x[1], steps=steps)
    torch.manual_seed(0)
    cvae = vaelab.build("cvae", input_shape=(1, 28, 28), hidden=[16], latent_dim=3, num_classes=10)
    with pytest.raises(VaelabError, match="give --label"):
        interpolate(cvae, x[0], x[1])
    r = interpolate(cvae, x[0], x[1], steps=3, label=4)
    assert torch.allclose(r.images["linear"], LatentView(cvae).decode(r.codes["linear"], 4))


def test_image_files_are_read_as_folder_data_is(tmp_path, synthetic_small):
    pixels = (synthetic_small.test.x[0, 0].numpy() * 255).round().astype(np.uint8)
    Image.fromarray(pixels, "L").save(tmp_path / "grey.png")
    Image.fromarray(np.stack([pixels] * 3, -1), "RGB").save(tmp_path / "rgb.png")
    x = read_image_files([tmp_path / "grey.png", tmp_path / "rgb.png"], (1, 28, 28))
    assert torch.equal(x[0, 0], torch.from_numpy(pixels).float() / 255) and torch.equal(x[0], x[1])
    Image.fromarray(pixels[:20], "L").save(tmp_path / "small.png")
    with pytest.raises(VaelabError, match="28×20 pixels; the model takes 1 channel, 28×28"):
        read_image_files([tmp_path / "small.png"], (1, 28, 28))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(VaelabError, match="cannot read image"):
        read_image_files([tmp_path / "bad.png"], (1, 28, 28))


@pytest.fixture(scope="module")
def saved(synthetic_vae, synthetic_small, tmp_path_factory):
    """The shared VAE as a model directory, and a small classifier directory."""
    root = tmp_path_factory.mktemp("interpolate")
    vaelab.save(synthetic_vae, root / "vae")
    train_classifier(synthetic_small.train.x, synthetic_small.train.y, epochs=1).save(root / "clf")
    return root


def test_cli_prints_each_paths_measures_and_writes_three_rows(saved, synthetic_npy, tmp_path, capsys):
    out = tmp_path / "i.png"
    pixels = (vaelab.load_dataset(synthetic_npy, "test").x[9, 0].numpy() * 255).round()
    Image.fromarray(pixels.astype(np.uint8), "L").save(tmp_path / "nine.png")
    code, stdout, err = cli(capsys, "interpolate", saved / "vae", "--data", synthetic_npy,
                            "--from", "0", "--to-file", tmp_path / "nine.png", "--steps", "4",
                            "--classifier", saved / "clf", "-o", out)
    assert code == 0, err
    lines = {line.split()[0]: line for line in stdout.splitlines()}
    assert {"pixels", "linear", "slerp"} <= set(lines) and "784 pixel values" in stdout
    with Image.open(out) as img:
        assert img.height == 3 * (56 + 4) + 4


def test_cli_bad_input_is_one_line(saved, synthetic_npy, tmp_path, capsys):
    base = ["interpolate", saved / "vae", "--data", synthetic_npy, "--no-classifier",
            "-o", tmp_path / "i.png"]
    assert_one_line_error(*cli(capsys, *base, "--from", "5", "--to", "5")[::2], "nothing to interpolate")
    assert_one_line_error(*cli(capsys, *base, "--from", "0", "--to", "200")[::2], "--to 200", "0 to 199")
    assert_one_line_error(*cli(capsys, *base, "--to", "1")[::2], "--from I", "--from-file FILE")
    (tmp_path / "bad.png").write_text("text")
    assert_one_line_error(*cli(capsys, *base, "--from-file", tmp_path / "bad.png", "--to", "1")[::2],
                          "cannot read image")
    assert_one_line_error(*cli(capsys, "interpolate", saved / "clf", "--data", synthetic_npy,
                               "--from", "0", "--to", "1")[::2], "not a vaelab model directory")
    torch.manual_seed(0)
    vaelab.save(vaelab.build("cvae", input_shape=(1, 28, 28), hidden=[16], latent_dim=3, num_classes=10),
                tmp_path / "cvae")
    assert_one_line_error(*cli(capsys, "interpolate", tmp_path / "cvae", "--data", synthetic_npy,
                               "--from", "0", "--to", "1", "--no-classifier")[::2], "give --label")
    assert not (tmp_path / "i.png").exists()


def test_compare_interpolation_tabulates_each_models_paths(saved, data_dir, tmp_path):
    torch.manual_seed(0)
    ae = vaelab.build("ae", input_shape=(1, 28, 28), hidden=[16], latent_dim=4)
    vaelab.save(ae, tmp_path / "ae")
    result = compare_interpolation(tmp_path / "cmp", data_dir=data_dir, runs=[saved / "vae", tmp_path / "ae"],
                                   pairs=6, steps=4, train_size=1000, progress=False)
    result.write(tmp_path / "cmp")
    assert [(r["model"].split()[0], r["path"]) for r in result.rows] == [
        ("–", "pixels"), ("vae", "linear"), ("vae", "slerp"), ("ae", "linear"), ("ae", "slerp")]
    test = vaelab.load_dataset("mnist", "test", data_dir=data_dir)
    from vaelab.compare.interpolation import _pairs
    pairs = _pairs(test.y, 6, 0)
    assert all(test.y[i] != test.y[j] for i, j in pairs)
    blend = sum(float((test.x[j] - test.x[i]).norm()) / 3 for i, j in pairs) / 6
    assert result.rows[0]["step_length"] == pytest.approx(blend, rel=1e-5)
    saved_json = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert saved_json["rows"][1]["confidence_min"] <= saved_json["rows"][1]["confidence_mean"]
    with Image.open(tmp_path / "cmp" / "interpolation_paths.png") as img:
        assert img.height == 2 * (3 * 5 * (28 + 2) + 2)  # 3 pairs × (blend + 2 models × 2 paths)
