"""The label-conditional VAE (cvae), the first model whose every entry point needs y: it
trains on real MNIST through the ordinary trainer, round-trips through safetensors + JSON,
estimates log p(x|y) above its ELBO and under the name cnll, draws samples of the class it
is given, refuses labels outside its classes in one line, and resumes bit for bit."""
from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from PIL import Image

import vaelab
from vaelab.cli import main as cli_main
from vaelab.data import binarize_static
from vaelab.data.batch import Batch
from vaelab.errors import VaelabError
from vaelab.training import trainer as trainer_module
from vaelab.training.checkpoint import read_checkpoint

FAST = {"threads": 1, "batch_size": 100}
SMALL = {"hidden": [64], "latent_dim": 2}  # a 2-d code leaves the class to y


def _train(small, out, model=None, resume=False, n_train=2000, epochs=4, **settings):
    config = {**FAST, "epochs": epochs, "lr": 3e-3, "val_size": 0, **settings}
    return vaelab.train(model if model is not None else "cvae", small.train.subset(slice(0, n_train)), out,
                        model_config=None if (model is not None or resume) else dict(SMALL),
                        config=config, val_data=small.val.subset(slice(0, 200)), resume=resume, progress=False)


@pytest.fixture(scope="module")
def run(mnist_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("cvae") / "run"
    _train(mnist_small, out)
    return out


@pytest.fixture(scope="module")
def model(run):
    return vaelab.load(run).eval()


@pytest.fixture(scope="module")
def test_batch(mnist_small):
    """200 real MNIST test images, binarized as evaluate does, with their labels."""
    test = mnist_small.test
    return Batch(binarize_static(test.x[:200], 123), test.y[:200])


def test_trains_and_round_trips_through_safetensors_and_json(run, model, test_batch):
    record = json.loads((run / "config.json").read_text())
    assert record["model"] == "cvae"
    config = record["config"]
    assert config["num_classes"] == 10 and config["latent_dim"] == 2
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["val"]["loss"] < metrics[0]["val"]["loss"] < 250
    assert set(metrics[-1]["train"]) == {"recon", "kl"}
    with Image.open(run / "samples.png") as img:  # the trainer asked the model for its own pictures
        assert img.size == (10 * 60 + 4, 10 * 60 + 4)  # one row per class, 10 samples each
    again = vaelab.load(run)
    assert again.name == "cvae" and again.config == model.config
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    with torch.no_grad():
        torch.manual_seed(0)
        first = model.loss(test_batch).total
        torch.manual_seed(0)
        assert torch.equal(first, again.loss(test_batch).total)


def test_conditional_estimate_is_above_the_bound_and_named_cnll(model, mnist_small):
    result = vaelab.evaluate(model, mnist_small.test.subset(slice(0, 200)), nll_samples=100, binarize="dynamic")
    for key in ("nll", "elbo", "bits_per_dim"):  # log p(x|y) is not log p(x): never under those names
        assert key not in result
    assert result["celbo"] == -(result["recon"] + result["kl"])
    assert result["cnll"] < -result["celbo"]  # log p(x|y) ≥ ELBO(x, y), tighter with k = 100
    assert result["cnll"] > -result["celbo"] - 10
    assert result["cbits_per_dim"] == pytest.approx(result["cnll"] / (784 * 0.6931471805599453))
    assert "mse" in result and result["active_units"] == 2


def test_estimate_bounds_the_elbo_per_image_in_expectation(model, test_batch):
    with torch.no_grad():
        elbo = model.importance_log_weights(test_batch, 50, generator=torch.Generator().manual_seed(9)).mean(1)
    ll = vaelab.log_likelihood(model, test_batch, 200, seed=1)
    assert ll.shape == (200,) and ll.dtype == torch.float64
    assert ll.mean() > elbo.double().mean()
    assert (ll > elbo.double() - 1.0).float().mean() > 0.95


def test_the_label_matters(model, test_batch):
    """The estimate reads y: the true labels explain the images better than wrong ones."""
    wrong = Batch(test_batch.x, (test_batch.y + 1) % 10)
    true_ll = vaelab.log_likelihood(model, test_batch, 50, seed=1).mean()
    wrong_ll = vaelab.log_likelihood(model, wrong, 50, seed=1).mean()
    assert true_ll > wrong_ll + 5


def test_samples_follow_their_class(model, mnist_small):
    train = mnist_small.train
    class_means = torch.stack([train.x[train.y == c].mean(0) for c in range(10)]).flatten(1)
    g = torch.Generator().manual_seed(0)
    nearest = [int((class_means - model.sample(50, y=c, generator=g).mean(0).flatten()).square().sum(1).argmin())
               for c in range(10)]
    assert sum(n == c for c, n in enumerate(nearest)) >= 7, nearest


def test_sample_cycles_classes_and_repeats_for_a_seed(model):
    def draw(**kwargs):
        return model.sample(20, generator=torch.Generator().manual_seed(3), **kwargs)

    assert torch.equal(draw(), draw(y=torch.arange(20) % 10))
    assert torch.equal(draw(y=4), draw(y=torch.full((20,), 4)))
    assert not torch.equal(draw(y=4), draw(y=5))
    assert draw().shape == (20, 1, 28, 28)


def test_reconstruct_uses_the_labels(model, test_batch):
    b = test_batch[:16]
    given = model.reconstruct(b)
    other = model.reconstruct(Batch(b.x, (b.y + 5) % 10))
    assert given.shape == b.x.shape and not torch.equal(given, other)
    assert (given - b.x).square().sum() < (other - b.x).square().sum()
    # without labels: the class the model finds likeliest
    assert torch.equal(model.reconstruct(b.x), model.reconstruct(Batch(b.x, model.likeliest_class(b.x))))


def test_end_of_run_writes_one_row_per_class(model, test_batch, tmp_path):
    assert model.end_of_run(tmp_path, test_batch[:8], seed=0) == ["samples.png", "reconstructions.png"]
    with Image.open(tmp_path / "samples.png") as img:
        assert img.size == (10 * 60 + 4, 10 * 60 + 4)  # 10 classes × 10 samples, 28 px tiles shown at 2×


def test_labels_outside_the_classes_are_refused_in_one_line(model, mnist_small, test_batch, tmp_path):
    with pytest.raises(VaelabError, match=r"^label [5-9] is outside this cvae's classes 0\.\.4 \(num_classes=5\)"):
        vaelab.train("cvae", mnist_small.train.subset(slice(0, 300)), tmp_path / "k5",
                     model_config={**SMALL, "num_classes": 5}, config={**FAST, "epochs": 1, "val_size": 0},
                     progress=False)
    bad = Batch(test_batch.x[:4], torch.tensor([0, 1, 10, 2]))
    for call in (lambda: model.loss(bad), lambda: vaelab.evaluate(model, bad, nll_samples=2),
                 lambda: model.sample(2, y=10), lambda: model.sample(2, y=-1)):
        with pytest.raises(VaelabError) as info:
            call()
        assert "outside this cvae's classes 0..9" in str(info.value) and "\n" not in str(info.value)


def test_missing_or_hidden_labels_are_refused(model, test_batch):
    with pytest.raises(VaelabError, match="needs each image's class label"):
        model.loss(test_batch.x)
    partly = Batch(test_batch.x[:4], test_batch.y[:4], torch.tensor([True, False, True, False]))
    with pytest.raises(VaelabError, match="2 rows are unlabelled"):
        model.loss(partly)
    with pytest.raises(VaelabError, match="class indices as y"):
        model.loss(Batch(test_batch.x[:4], torch.rand(4)))


def test_cli_eval_sample_and_reconstruct(run, data_dir, tmp_path, capsys):
    code = cli_main(["eval", str(run), "--data", "mnist", "--data-dir", str(data_dir), "--limit", "100",
                     "--nll-samples", "10", "--json", "--threads", "1", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert {"cnll", "cnll_stderr", "cbits_per_dim", "celbo"} <= set(result) and "nll" not in result
    code = cli_main(["eval", str(run), "--data", "mnist", "--data-dir", str(data_dir), "--limit", "100",
                     "--nll-samples", "10", "--threads", "1", "--no-progress"])
    out, _ = capsys.readouterr()
    assert code == 0 and "cnll" in out and "celbo" in out
    assert cli_main(["sample", str(run), "--label", "3", "-n", "8", "-o", str(tmp_path / "three.png")]) == 0
    assert (tmp_path / "three.png").is_file()
    code = cli_main(["sample", str(run), "--label", "12", "-o", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "choose labels from 0 to 9" in err
    assert cli_main(["reconstruct", str(run), "--data", "mnist", "--data-dir", str(data_dir), "-n", "8",
                     "-o", str(tmp_path / "r.png")]) == 0


def test_cli_train_has_num_classes_and_refuses_labels_beyond_it(synthetic_npy, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli_main(["train", "cvae", "--help"])
    assert "--num-classes" in capsys.readouterr().out
    code = cli_main(["train", "cvae", "--data", synthetic_npy, "--out", str(tmp_path / "run"),
                     "--num-classes", "5", "--hidden", "16", "--latent-dim", "2", "--epochs", "1", "--threads", "1",
                     "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "outside this cvae's classes 0..4 (num_classes=5)" in err
    assert not (tmp_path / "run" / "checkpoints" / "last.safetensors").exists()


def test_cli_refuses_a_label_for_a_model_without_labels(synthetic_vae, tmp_path, capsys):
    vaelab.save(synthetic_vae, tmp_path / "vae")
    code = cli_main(["sample", str(tmp_path / "vae"), "--label", "3", "-o", str(tmp_path / "s.png")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "samples without labels; drop --label" in err
    assert not (tmp_path / "s.png").exists()


def _same_run(a, b):
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    for name in ("last", "best"):
        ta, sa = read_checkpoint(a / "checkpoints" / f"{name}.safetensors")
        tb, sb = read_checkpoint(b / "checkpoints" / f"{name}.safetensors")
        assert ta.keys() == tb.keys() and sa["counters"] == sb["counters"]
        assert all(torch.equal(ta[k], tb[k]) for k in ta), name


def test_resume_after_ctrl_c_is_bit_identical(synthetic_small, tmp_path):
    straight = tmp_path / "straight"
    _train(synthetic_small, straight, n_train=600, epochs=3)
    torch.manual_seed(0)  # the trainer builds a named model after seeding with the run's seed
    out = tmp_path / "run"
    model = vaelab.build("cvae", input_shape=[1, 28, 28], **SMALL)
    original, steps = model.loss, []

    def loss(batch):
        if model.training:
            steps.append(1)
            if len(steps) == 8:  # epoch 2 (6 steps per epoch), step 2
                os.kill(os.getpid(), signal.SIGINT)
        return original(batch)

    model.loss = loss
    with pytest.raises(trainer_module.TrainingInterrupted, match="stopped by SIGINT at epoch 2, step 8"):
        _train(synthetic_small, out, model=model, n_train=600, epochs=3)
    _train(synthetic_small, out, resume=True, n_train=600, epochs=3)
    _same_run(straight, out)


def test_attribute_vectors_condition_like_one_hot_and_a_wrong_width_is_refused(model, test_batch):
    import torch.nn.functional as F

    vectors = F.one_hot(test_batch.y, 10).float()
    by_index, by_vector = model.loss(test_batch), model.loss(Batch(test_batch.x, vectors))
    torch.manual_seed(0)
    a = model.reconstruct(test_batch)
    assert torch.equal(a, model.reconstruct(Batch(test_batch.x, vectors)))
    assert set(by_index.terms) == set(by_vector.terms)
    with pytest.raises(VaelabError, match=r"attribute vectors of width 7 given, but this cvae conditions on 10"):
        model.loss(Batch(test_batch.x, vectors[:, :7]))
