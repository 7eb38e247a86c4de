"""PixelCNN: the masks are causal with no blind spot, the likelihood is exact (sums to one),
the cached sampler draws what the naive one draws, training, save/load, eval and bad input."""
from __future__ import annotations

import itertools
import json

import pytest
import torch

import vaelab
from vaelab.cli import main as cli_main
from vaelab.data import binarize_static
from vaelab.data.batch import Batch
from vaelab.errors import VaelabError
from vaelab.models import build
from vaelab.nn.pixelcnn import GatedPixelCNN, sample_naive

from conftest import FAST

TINY = {"layers": 2, "width": 8, "kernel": 3, "head": 8}


def _dependencies(net: GatedPixelCNN, shape, y=None) -> torch.Tensor:
    """dep[i, a] = whether any output at pixel i (raster order) has a non-zero gradient with
    respect to input pixel a, summed over a few random inputs."""
    h, w = shape
    torch.manual_seed(1)
    x = torch.bernoulli(torch.full((4, net.channels, h, w), 0.5)).requires_grad_(True)
    logits = net(x, y)
    dep = torch.zeros(h * w, h * w, dtype=torch.bool)
    for i in range(h * w):
        (g,) = torch.autograd.grad(logits[..., i // w, i % w].sum(), x, retain_graph=True)
        dep[i] = g.abs().sum((0, 1)).flatten() > 0
    return dep


@pytest.mark.parametrize("classes", [0, 3])
def test_mask_is_causal_and_has_no_blind_spot(classes):
    torch.manual_seed(0)
    # 4 layers of kernel 3 see 5 rows up and 4 columns aside: every earlier pixel of a 4×4 image
    net = GatedPixelCNN(channels=2, layers=4, hidden=8, kernel=3, head=8, classes=classes)
    with torch.no_grad():  # the conditional embeddings start at zero; make them matter
        for layer in net.layers:
            if layer.cond is not None:
                layer.cond.weight.normal_()
    y = torch.tensor([0, 1, 2, 1]) if classes else None
    dep = _dependencies(net, (4, 4), y)
    earlier = torch.ones(16, 16, dtype=torch.bool).tril(-1)  # a < i
    assert not (dep & ~earlier).any(), "an output depends on its own pixel or a later one"
    assert dep[earlier].all(), "a blind spot: an earlier pixel in the receptive field has no influence"


def test_original_masked_layout_would_fail_the_blind_spot_check():
    """The check above can fail: without the vertical stack's link the pixels above are unseen."""
    torch.manual_seed(0)
    net = GatedPixelCNN(layers=4, hidden=8, kernel=3, head=8)
    with torch.no_grad():
        for layer in net.layers:
            layer.link.weight.zero_()
            layer.link.bias.zero_()
    dep = _dependencies(net, (4, 4))
    earlier = torch.ones(16, 16, dtype=torch.bool).tril(-1)
    assert not dep[earlier].all()


@torch.no_grad()
def test_likelihood_is_exact_it_sums_to_one_over_all_images():
    torch.manual_seed(0)
    m = build("pixelcnn", input_shape=(1, 2, 2), completion_rows=1, **TINY)
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4))).view(16, 1, 2, 2)
    total = m.exact_log_likelihood(images).double().exp().sum()
    assert abs(float(total) - 1.0) < 1e-5
    assert torch.allclose(m.loss(images).total, -m.exact_log_likelihood(images).mean())
    # conditional: a distribution for every class
    c = build("pixelcnn", input_shape=(1, 2, 2), completion_rows=1, classes=3, **TINY)
    for layer in c.net.layers:
        layer.cond.weight.normal_()
    for k in range(3):
        p = c.exact_log_likelihood(Batch(images, torch.full((16,), k))).double().exp()
        assert abs(float(p.sum()) - 1.0) < 1e-5
    # an embedded integer map over K = 3 values (the VQ prior's input)
    net = GatedPixelCNN(categories=3, layers=2, hidden=8, kernel=3, head=8, embed_dim=4)
    maps = torch.tensor(list(itertools.product(range(3), repeat=4))).view(81, 2, 2)
    assert abs(float(net.log_prob(maps).double().exp().sum()) - 1.0) < 1e-5


@pytest.mark.parametrize("settings", [{}, {"classes": 3}, {"categories": 4, "embed_dim": 3}, {"channels": 2}])
def test_cached_sampling_equals_naive_sampling(settings):
    torch.manual_seed(0)
    net = GatedPixelCNN(layers=3, hidden=8, kernel=5, head=8, **settings)
    with torch.no_grad():
        for layer in net.layers:
            if layer.cond is not None:
                layer.cond.weight.normal_()
    n, shape = 5, (7, 6)
    u = torch.rand(n, net.channels, *shape)
    y = torch.tensor([0, 1, 2, 0, 1]) if settings.get("classes") else None
    fast = net.sample(n, shape, y=y, uniforms=u)
    assert torch.equal(fast, sample_naive(net, n, shape, u, y=y))
    assert fast.min() >= 0 and fast.max() < net.categories and len(fast.unique()) > 1
    given = torch.randint(0, net.categories, (n, net.channels, *shape))
    done = net.sample(n, shape, y=y, uniforms=u, given=given, given_rows=3)
    assert torch.equal(done[:, :, :3], given[:, :, :3])
    assert torch.equal(done, sample_naive(net, n, shape, u, y=y, given=given, given_rows=3))


def test_training_steps_lower_the_loss(synthetic_small):
    torch.manual_seed(0)
    m = build("pixelcnn", **TINY)
    x = binarize_static(synthetic_small.train.batch().x[:64], 0)
    first = m.loss(x).total.item()
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    for _ in range(15):
        loss = m.loss(x)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
    assert m.loss(x).total.item() < first - 50


@pytest.fixture(scope="module")
def run(synthetic_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("pixelcnn") / "run"
    vaelab.train("pixelcnn", synthetic_small.train.subset(slice(0, 300)), out, model_config=TINY,
                 config={**FAST, "epochs": 1, "val_size": 0}, val_data=synthetic_small.val.subset(slice(0, 100)),
                 progress=False)
    return out


def test_run_records_dynamic_binarization_and_writes_samples_and_completions(run):
    record = json.loads((run / "run.json").read_text())
    assert record["resolved"]["binarize"] == "dynamic"
    assert (run / "samples.png").is_file() and (run / "completions.png").is_file()


def test_save_load_round_trip_and_exact_eval(run, synthetic_small):
    m = vaelab.load(run)
    x = binarize_static(synthetic_small.test.batch().x[:50], 123)
    again = vaelab.load(run)
    assert torch.equal(m.exact_log_likelihood(x), again.exact_log_likelihood(x))
    result = vaelab.evaluate(m, synthetic_small.test.subset(slice(0, 50)), binarize="dynamic", nll_samples=100)
    assert result["nll_method"] == "exact" and result["k"] == 0
    assert result["nll"] == pytest.approx(-m.exact_log_likelihood(x).double().mean().item(), rel=1e-5)
    assert result["bits_per_dim"] == pytest.approx(result["nll"] / (784 * 0.6931471805599453))
    g = torch.Generator().manual_seed(3)
    a = m.sample(4, generator=g)
    assert a.shape == (4, 1, 28, 28) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a, m.sample(4, generator=torch.Generator().manual_seed(3)))
    done = m.complete_rows(x[:3], rows=14, generator=g)
    assert torch.equal(done[:, :, :14], x[:3, :, :14])


def test_cli_eval_reports_exact_nll_and_sample_writes_png(run, synthetic_npy, tmp_path, capsys):
    code = cli_main(["eval", str(run), "--data", synthetic_npy, "--limit", "50",
                     "--json", "--threads", "1", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["nll_method"] == "exact" and result["binarize"].startswith("dynamic,") and result["nll"] > 0
    assert "elbo" not in result
    assert cli_main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").is_file()


def test_bad_input_gets_one_clear_line():
    m = build("pixelcnn", **TINY)
    with pytest.raises(VaelabError, match=r"shape \[1, 14, 14\].*takes \[1, 28, 28\]"):
        m.loss(torch.zeros(2, 1, 14, 14))
    with pytest.raises(VaelabError, match="binary images.*binarize") as grey:
        m.loss(torch.full((2, 1, 28, 28), 0.3))
    assert "\n" not in str(grey.value)
    c = build("pixelcnn", classes=10, **TINY)
    with pytest.raises(VaelabError, match=r"label 12 is outside .* classes 0..9"):
        c.loss(Batch(torch.zeros(2, 1, 28, 28), torch.tensor([1, 12])))
    with pytest.raises(VaelabError, match="needs each image's label"):
        c.loss(torch.zeros(2, 1, 28, 28))
    with pytest.raises(VaelabError, match="label 10 is outside"):
        c.sample(2, y=10)
    with pytest.raises(VaelabError, match="kernel must be odd"):
        build("pixelcnn", kernel=4)


# -- pixelrnn: the Row LSTM, the same contract -------------------------------------------------
ROW = {"layers": 2, "width": 8, "kernel": 3, "first_kernel": 3, "head": 8}


def test_row_lstm_is_causal_exact_and_samples_as_the_naive_sampler():
    from vaelab.nn.rowlstm import RowLSTM

    torch.manual_seed(0)
    net = RowLSTM(channels=2, layers=2, hidden=8, kernel=3, first_kernel=3, head=8, classes=3)
    with torch.no_grad():
        for layer in net.layers:
            layer.cond.weight.normal_()
    y = torch.tensor([0, 1, 2, 1])
    dep = _dependencies(net, (4, 4), y)
    earlier = torch.ones(16, 16, dtype=torch.bool).tril(-1)
    assert not (dep & ~earlier).any()
    assert dep[earlier].float().mean() > 0.8  # the Row LSTM's context: a triangle, not all
    u = torch.rand(4, 2, 5, 6)
    fast = net.sample(4, (5, 6), y=y, uniforms=u)
    assert torch.equal(fast, sample_naive(net, 4, (5, 6), u, y=y))
    given = torch.randint(0, 2, (4, 2, 5, 6))
    assert torch.equal(net.sample(4, (5, 6), y=y, uniforms=u, given=given, given_rows=2),
                       sample_naive(net, 4, (5, 6), u, y=y, given=given, given_rows=2))
    with torch.no_grad():
        m = build("pixelrnn", input_shape=(1, 2, 2), completion_rows=1, **ROW)
        images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4))).view(16, 1, 2, 2)
        assert abs(float(m.exact_log_likelihood(images).double().exp().sum()) - 1.0) < 1e-5


def test_pixelrnn_trains_saves_loads_and_evaluates_exactly(synthetic_small, tmp_path):
    out = tmp_path / "rnn"
    vaelab.train("pixelrnn", synthetic_small.train.subset(slice(0, 100)), out, model_config=ROW,
                 config={**FAST, "epochs": 1, "val_size": 0}, val_data=synthetic_small.val.subset(slice(0, 50)),
                 progress=False)
    m = vaelab.load(out)
    assert m.name == "pixelrnn" and (out / "completions.png").is_file()
    result = vaelab.evaluate(m, synthetic_small.test.subset(slice(0, 20)), binarize="dynamic")
    assert result["nll_method"] == "exact" and 0 < result["nll"] < 784 * 0.7
    with pytest.raises(VaelabError, match="pixelrnn models binary images"):
        m.loss(torch.full((2, 1, 28, 28), 0.5))


def test_class_conditional_run_reports_cnll_and_samples_by_label(synthetic_small, tmp_path, capsys):
    out = tmp_path / "y"
    vaelab.train("pixelcnn", synthetic_small.train.subset(slice(0, 100)), out, model_config={**TINY, "classes": 10},
                 config={**FAST, "epochs": 1, "val_size": 0}, progress=False)
    result = vaelab.evaluate(vaelab.load(out), synthetic_small.test.subset(slice(0, 20)), binarize="dynamic")
    assert result["cnll_method"] == "exact" and "cnll" in result and "nll" not in result
    assert cli_main(["sample", str(out), "--label", "3", "-n", "2", "-o", str(tmp_path / "3.png")]) == 0
    assert cli_main(["sample", str(out), "--label", "12", "-n", "2", "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "label 12 is outside" in err


# -- defaults that fit the data they meet -----------------------------------------------------
@pytest.mark.parametrize("name", ["pixelcnn", "pixelrnn"])
def test_completion_rows_default_to_half_the_image_height(name):
    assert build(name, input_shape=(1, 8, 8), **TINY).config.completion_rows == 4
    assert build(name, input_shape=(1, 28, 28), **TINY).config.completion_rows == 14
    assert build(name, input_shape=(1, 5, 7), **TINY).config.completion_rows == 2
    assert build(name, input_shape=(1, 8, 8), completion_rows=0, **TINY).config.completion_rows == 0


def test_pixelcnn_trains_on_8x8_digits_and_a_bad_row_count_names_the_option(tmp_path, capsys):
    args = ["train", "pixelcnn", "--data", "digits", "--epochs", "1", "--layers", "2", "--width", "8",
            "--head", "8", "--kernel", "3", "--threads", "1", "--no-progress"]
    assert cli_main(args + ["--out", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["completion_rows"] == 4
    capsys.readouterr()
    assert cli_main(args + ["--out", str(tmp_path / "bad"), "--completion-rows", "9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --completion-rows must be in 0..7") and "got 9" in err and err.count("\n") == 1
