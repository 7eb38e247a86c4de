"""Analogies of a label-conditional model and the checks that put numbers on them: the grid's
column c is the source's style decoded as class c, pixel for pixel in the PNG; a model
without labels is refused in one line; a trained cvae scores far above an untrained one."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import vaelab
from vaelab.cli import main as cli_main
from vaelab.data.batch import Batch
from vaelab.errors import VaelabError
from vaelab.evaluation import conditional_checks as checks
from vaelab.viz.analogy import analogies, analogy_grid, save_analogies
from vaelab.viz.latent import LatentView

FAST = {"threads": 1, "batch_size": 100}
SMALL = {"hidden": [64], "latent_dim": 2, "beta": 1.0}  # the ELBO: style stays in z


@pytest.fixture(scope="module")
def cvae_run(mnist_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("analogy") / "run"
    vaelab.train("cvae", mnist_small.train, out, model_config=dict(SMALL),
                 config={**FAST, "epochs": 4, "lr": 3e-3, "val_size": 0}, progress=False)
    return out


@pytest.fixture(scope="module")
def cvae(cvae_run):
    return vaelab.load(cvae_run).eval()


@pytest.fixture(scope="module")
def classifier(mnist_small, tmp_path_factory):
    return checks.digit_classifier(mnist_small.train, epochs=2, cache_dir=tmp_path_factory.mktemp("clf"))


def test_column_c_is_the_source_style_decoded_as_c(cvae, mnist_small):
    x, y = mnist_small.test.x[:4], mnist_small.test.y[:4]
    made = analogies(cvae, x, y)
    assert made.shape == (4, 10, 1, 28, 28)
    view = LatentView(cvae)
    z = view.encode(Batch(x, y))
    for c in (0, 3, 9):
        assert torch.equal(made[:, c], view.decode(z, c))
    assert not torch.equal(made[:, 0], made[:, 1])  # the label changes the picture
    tiles = analogy_grid(cvae, x, y).reshape(4, 11, 1, 28, 28)
    assert torch.equal(tiles[:, 0], x) and torch.equal(tiles[:, 1:], made)


def test_png_rows_are_sources_then_classes(cvae, mnist_small, tmp_path):
    x, y = mnist_small.test.x[5:8], mnist_small.test.y[5:8]
    made = save_analogies(cvae, x, y, tmp_path / "a.png")
    png = np.asarray(Image.open(tmp_path / "a.png"))
    scale, pad = 2, 2  # grid(): 28-pixel tiles doubled, 2 pixels of padding
    assert png.shape == ((3 * 30 + 2) * scale, (11 * 30 + 2) * scale)

    def tile(r, c):
        top, left = (pad + r * 30) * scale, (pad + c * 30) * scale
        return png[top:top + 28 * scale:scale, left:left + 28 * scale:scale].astype(float) / 255

    np.testing.assert_allclose(tile(1, 0), x[1, 0].numpy(), atol=1 / 255)
    np.testing.assert_allclose(tile(2, 1 + 7), made[2, 7, 0].numpy(), atol=1 / 255)


def test_a_model_without_labels_is_refused(synthetic_vae, synthetic_small, tmp_path):
    with pytest.raises(VaelabError, match=r"^analogies need a label-conditional model such as cvae: a 'vae'"):
        analogies(synthetic_vae, synthetic_small.test.x[:2], synthetic_small.test.y[:2])
    with pytest.raises(VaelabError, match="label-conditional"):
        checks.sample_accuracy(synthetic_vae, None)


def test_command_writes_the_grid_and_refuses_in_one_line(cvae_run, trained_vae, data_dir, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert cli_main(["analogies", str(cvae_run), "--data", "mnist", "--data-dir", str(data_dir),
                     "--indices", "0,1,2", "-o", str(out)]) == 0
    assert "3 digits × 10 classes" in capsys.readouterr().out
    assert Image.open(out).size == ((11 * 30 + 2) * 2, (3 * 30 + 2) * 2)
    vaelab.save(trained_vae, tmp_path / "vae")
    assert cli_main(["analogies", str(tmp_path / "vae"), "--data", "mnist", "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: analogies need a label-conditional model") and err.count("\n") == 1
    assert cli_main(["analogies", str(cvae_run), "--data", "mnist", "--data-dir", str(data_dir),
                     "--indices", "10000"]) == 2
    assert "indices run from 0 to 9999" in capsys.readouterr().err


def test_classifier_is_cached_and_judges_real_digits(classifier, mnist_small, tmp_path, monkeypatch):
    assert classifier.accuracy(mnist_small.test.x, mnist_small.test.y) > 0.85
    small, x = mnist_small.train.subset(slice(0, 300)), mnist_small.test.x[:50]
    first = checks.digit_classifier(small, epochs=1, cache_dir=tmp_path)
    monkeypatch.setattr(checks, "train_classifier", lambda *a, **k: pytest.fail("trained again despite the cache"))
    again = checks.digit_classifier(small, epochs=1, cache_dir=tmp_path)
    assert torch.equal(first.predict_proba(x), again.predict_proba(x))
    monkeypatch.undo()
    checks.digit_classifier(mnist_small.train.subset(slice(300, 600)), epochs=1, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 2  # other images: another classifier


def test_checks_of_a_trained_cvae_beat_an_untrained_one(cvae, classifier, mnist_small):
    untrained = vaelab.build("cvae", input_shape=[1, 28, 28], **SMALL).eval()
    x, y = mnist_small.test.x[:24], mnist_small.test.y[:24]
    trained = {**checks.sample_accuracy(cvae, classifier, 10), **checks.analogy_checks(cvae, classifier, x, y)}
    blank = {**checks.sample_accuracy(untrained, classifier, 10), **checks.analogy_checks(untrained, classifier, x, y)}
    assert trained["pairs"] == 24 * 9 and trained["samples"] == 100
    assert trained["sample_accuracy"] > 0.5 > 0.2 > blank["sample_accuracy"]  # 0.71 vs 0.10 when written
    assert trained["analogy_accuracy"] > 0.35 > 0.2 > blank["analogy_accuracy"]  # 0.46 vs 0.11
    assert trained["slant_r"] > 0.5 > 0.3 > abs(blank["slant_r"])  # 0.73 vs 0.00: the style is kept
    assert trained["analogy_source_class"] < 1 - trained["analogy_accuracy"]
    assert len(trained["slant_r_per_class"]) == 10 and trained["reconstruction_slant_r"] > trained["slant_r"]


def test_pearson_is_nan_free():
    a = np.array([1.0, 2.0, 3.0, 5.0])
    assert checks.pearson(a, 2 * a + 1) == pytest.approx(1.0)
    assert checks.pearson(a, np.ones(4)) == 0.0 and checks.pearson(a[:1], a[:1]) == 0.0


def test_checks_command_refuses_in_one_line(trained_vae, cvae_run, data_dir, tmp_path, capsys):
    vaelab.save(trained_vae, tmp_path / "vae")
    assert checks.main([str(tmp_path / "vae"), "--data", "mnist", "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: analogies need a label-conditional model") and err.count("\n") == 1
    assert checks.main([str(cvae_run), "--data", "mnist", "--data-dir", str(data_dir), "--sources", "1",
                        "--split", "test"]) == 2
    assert "sources must be a whole number of test digits, at least 2" in capsys.readouterr().err
