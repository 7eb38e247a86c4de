"""The adversarial autoencoders with a categorical code: the semi-supervised AAE (aae-semi) and
the clustering AAE (aae-cluster). Their phases with their own optimisers through the ordinary
trainer on real MNIST, D_y seeing one-hot prior draws, the classification phase on the labelled
rows only, cluster probabilities, exact resume, and their bad inputs."""
from __future__ import annotations

import json

import pytest
import torch

import vaelab
from vaelab.data.batch import Batch
from vaelab.errors import VaelabError
from vaelab.evaluation.clustering import cluster_error, cluster_labels, clusters_used
from vaelab.training.checkpoint import read_checkpoint

FAST = {"threads": 1, "batch_size": 100}
SMALL = {"hidden": [64], "latent_dim": 4, "disc_hidden": [32]}
PHASES = ["reconstruction", "discriminator", "generator"]


def _train(name, data, out, model_config=None, resume=False, epochs=2, val_data=None, **settings):
    config = {**FAST, "epochs": epochs, "lr": 2e-3, "val_size": 0, **settings}
    mc = None if resume else {**SMALL, **(model_config or {})}
    return vaelab.train(name, data, out, model_config=mc, config=config, resume=resume, progress=False,
                        val_data=val_data)


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _mixed_batch(small, n_labelled=5, n=20):
    x, y = small.train.x[:n], small.train.y[:n]
    return Batch(x, y, torch.arange(n) < n_labelled)


@pytest.fixture(scope="module")
def semi_run(mnist_small, tmp_path_factory):
    """aae-semi on 1,000 real images with 100 labels, 3 epochs, validated on 500 others."""
    out = tmp_path_factory.mktemp("aae-semi") / "straight"
    _train("aae-semi", mnist_small.train.subset(slice(0, 1000)), out, epochs=3, labels=100,
           val_data=mnist_small.val)
    return out


# --- phases -----------------------------------------------------------------------------------


def test_semi_phases_train_with_their_own_optimisers_and_learn_to_classify(semi_run, mnist_small):
    lines = _metrics(semi_run)
    assert set(lines[0]["train"]) == {"reconstruction/recon", "discriminator/disc_y", "discriminator/disc_z",
                                      "generator/gen_y", "generator/gen_z", "classification/xent"}
    tensors, state = read_checkpoint(semi_run / "checkpoints" / "last.safetensors")
    for phase in [*PHASES, "classification"]:  # one optimiser each, all saved
        assert any(k.startswith(f"optim/{phase}/") for k in tensors), phase
    assert all(line["val"]["loss"] == line["val"]["recon"] for line in lines)  # never an adversary's loss
    best = min(range(len(lines)), key=lambda i: lines[i]["val"]["error"]) + 1  # monitored: the error
    assert state["counters"]["best_epoch"] == best
    model = vaelab.load(semi_run)
    result = vaelab.evaluate(model, mnist_small.test)
    assert result["classification_error"] < 0.5  # chance is 0.9; 100 labels, 3 short epochs
    assert lines[-1]["train"]["reconstruction/recon"] < lines[0]["train"]["reconstruction/recon"]


def test_each_phase_updates_only_its_own_parameters():
    model = vaelab.build("aae-semi", input_shape=[1, 28, 28], **SMALL)
    phases = model.phases()
    assert list(phases) == [*PHASES, "classification"]
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    discs = ids(model.disc_y.parameters()) | ids(model.disc_z.parameters())
    assert ids(phases["discriminator"].parameters()) == discs
    assert ids(phases["generator"].parameters()) == ids(model.encoder.parameters())  # no logit batch norm here
    assert ids(phases["classification"].parameters()) == ids(model.encoder.parameters())
    assert not discs & ids(phases["reconstruction"].parameters())
    assert phases["discriminator"].betas == (0.5, 0.999) and phases["generator"].betas == (0.5, 0.999)
    cluster = vaelab.build("aae-cluster", input_shape=[1, 28, 28], **SMALL, clusters=16)
    assert list(cluster.phases()) == PHASES and not hasattr(cluster, "classify")
    norm = ids(cluster.logit_norm.parameters())  # the clustering default: the logits' batch norm, trained
    assert len(norm) == 2 and norm <= ids(cluster.phases()["generator"].parameters())
    assert norm <= ids(cluster.phases()["reconstruction"].parameters())


def test_the_category_discriminator_sees_one_hot_prior_draws_and_softmax_codes(synthetic_small):
    torch.manual_seed(0)
    model = vaelab.build("aae-cluster", input_shape=[1, 28, 28], **SMALL, clusters=30)
    seen = []
    original = model.disc_y.forward
    model.disc_y.forward = lambda y: (seen.append(y.detach()), original(y))[1]
    loss = model.disc_loss(Batch(synthetic_small.train.x[:600]))
    prior, codes = seen
    assert prior.shape == codes.shape == (600, 30)
    assert torch.equal(prior.sum(1), torch.ones(600)) and bool(((prior == 0) | (prior == 1)).all())
    assert len(torch.unique(prior.argmax(1))) == 30  # Cat(30): every category drawn
    assert torch.allclose(codes.sum(1), torch.ones(600)) and not bool(((codes == 0) | (codes == 1)).all())
    assert set(loss.terms) == {"disc_y", "disc_z"}
    loss.total.backward()
    assert all(p.grad is None for p in model.encoder.parameters())  # the codes are constants for D


def test_the_classification_phase_uses_only_the_labelled_rows(synthetic_small):
    torch.manual_seed(0)
    model = vaelab.build("aae-semi", input_shape=[1, 28, 28], **SMALL)
    batch = _mixed_batch(synthetic_small, n_labelled=5)
    x = batch.x.clone().requires_grad_(True)
    loss = model.class_loss(Batch(x, batch.y, batch.labelled))
    loss.total.backward()
    touched = x.grad.flatten(1).abs().sum(1) > 0
    assert torch.equal(touched, batch.labelled)  # the gradient reaches the labelled images only
    expected = torch.nn.functional.cross_entropy(model.classify(batch.x[:5]), batch.y[:5])
    assert torch.allclose(loss.total, expected)
    garbage = batch.y.clone()
    garbage[5:] = 9 - garbage[5:]  # the unlabelled rows' y is never read
    assert torch.equal(model.class_loss(Batch(batch.x, garbage, batch.labelled)).total.detach(),
                       loss.total.detach())
    # the reconstruction and adversarial phases take the unlabelled rows of a mixed step
    assert torch.equal(model.unsupervised_rows(batch), batch.x[5:])
    assert torch.equal(model.unsupervised_rows(Batch(batch.x, batch.y)), batch.x)  # all labelled: every row
    none = model.class_loss(Batch(batch.x, batch.y, torch.zeros(20, dtype=torch.bool)))
    assert float(none.total.detach()) == 0.0


def test_cluster_probs_rows_sum_to_one_and_name_clusters(synthetic_small):
    torch.manual_seed(0)
    model = vaelab.build("aae-cluster", input_shape=[1, 28, 28], **SMALL, clusters=16).eval()
    with torch.no_grad():
        probs = model.cluster_probs(synthetic_small.train.x[:300])
        test = model.cluster_probs(Batch(synthetic_small.test.x))
    assert probs.shape == (300, 16) and bool((probs >= 0).all())
    assert torch.allclose(probs.sum(1), torch.ones(300), atol=1e-6)
    names = cluster_labels(probs, synthetic_small.train.y[:300], "most-confident")
    assert names.shape == (16,)
    # the error is the share of images whose likeliest cluster is named for another class
    wrong = (names[test.argmax(1)] != synthetic_small.test.y).float().mean()
    assert cluster_error(test, synthetic_small.test.y, names) == pytest.approx(float(wrong))
    assert model.sample(4, y=3).shape == (4, 1, 28, 28)
    with pytest.raises(VaelabError, match=r"label 16 is outside this aae-cluster's categories 0..15"):
        model.sample(2, y=16)


def test_cluster_training_makes_q_y_confident_and_writes_the_category_grid(mnist_small, tmp_path):
    torch.manual_seed(0)
    untrained = vaelab.build("aae-cluster", input_shape=[1, 28, 28], **SMALL, clusters=16).eval()
    x = mnist_small.test.x
    result = _train("aae-cluster", mnist_small.train.subset(slice(0, 1000)), tmp_path / "c", {"clusters": 16},
                    epochs=3, val_data=mnist_small.val)
    with torch.no_grad():
        before = untrained.cluster_probs(x).max(1).values.mean()
        probs = result.model.eval().cluster_probs(x)
    after = probs.max(1).values.mean()
    assert float(before) < 0.1 and float(after) > 0.25  # D_y pushes q(y|x) towards one-hot vectors
    assert clusters_used(probs) >= 8  # and spreads the images over the clusters (no collapse)
    lines = _metrics(tmp_path / "c")
    assert lines[-1]["train"]["reconstruction/recon"] < lines[0]["train"]["reconstruction/recon"]
    from PIL import Image

    assert Image.open(tmp_path / "c" / "samples.png").size[1] > 16 * 28  # one row per cluster


# --- resume -------------------------------------------------------------------------------------


def test_semi_resume_is_bit_identical(mnist_small, semi_run, tmp_path):
    out = tmp_path / "split"
    data = mnist_small.train.subset(slice(0, 1000))
    _train("aae-semi", data, out, epochs=1, labels=100, val_data=mnist_small.val)
    _train("aae-semi", data, out, epochs=3, labels=100, val_data=mnist_small.val, resume=True)
    assert (out / "model.safetensors").read_bytes() == (semi_run / "model.safetensors").read_bytes()
    ta, _ = read_checkpoint(out / "checkpoints" / "last.safetensors")
    tb, _ = read_checkpoint(semi_run / "checkpoints" / "last.safetensors")
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")} for r in rows]  # noqa: E731
    assert strip(_metrics(out)) == strip(_metrics(semi_run))


def test_cluster_resume_with_the_logit_batch_norm_is_bit_identical(synthetic_small, tmp_path):
    data = synthetic_small.train.subset(slice(0, 600))
    _train("aae-cluster", data, tmp_path / "straight", {"clusters": 16}, epochs=2)
    _train("aae-cluster", data, tmp_path / "split", {"clusters": 16}, epochs=1)
    _train("aae-cluster", data, tmp_path / "split", epochs=2, resume=True)
    a, b = tmp_path / "straight", tmp_path / "split"
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    tensors, _ = read_checkpoint(b / "checkpoints" / "last.safetensors")
    assert any("logit_norm.running_mean" in k for k in tensors)  # the batch norm's statistics travel too


# --- divergence ---------------------------------------------------------------------------------


def test_training_health_names_each_game_and_a_collapsed_clustering(synthetic_small):
    torch.manual_seed(0)
    model = vaelab.build("aae-cluster", input_shape=[1, 28, 28], **SMALL, clusters=4, logit_batchnorm=False)
    data = Batch(synthetic_small.val.x[:100])
    fine = {"discriminator/disc_y": 1.3, "discriminator/disc_z": 1.3, "generator/gen_y": 0.7, "generator/gen_z": 0.7}
    assert model.training_health(fine, data) == []
    [problem] = model.training_health({**fine, "discriminator/disc_y": 1e-4}, data)
    assert "D_y's loss" in problem and "Cat(4)" in problem and "diverged" in problem
    [problem] = model.training_health({**fine, "generator/gen_z": 40.0}, data)
    assert "gen_z averaged 40" in problem and "no longer fools D_z" in problem
    with torch.no_grad():
        model.encoder[-1][-1].bias[:4] = torch.tensor([100.0, 0, 0, 0])  # every image in category 0
    [problem] = model.training_health(fine, data)
    assert "q(y|x) puts all 100 checked images in one of its 4 categories" in problem


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, settings, message", [
    ("aae-cluster", {"clusters": 1}, r"clusters must be at least 2 .*got 1; pass e.g. --clusters 16"),
    ("aae-cluster", {"encoder": "stochastic"}, r"unknown encoder 'stochastic'"),
    ("aae-semi", {"num_classes": 1}, r"num_classes must be at least 2, got 1"),
    ("aae-semi", {"classify_lr_scale": 0.0}, r"classify_lr_scale must be > 0"),
])
def test_bad_settings_are_refused_in_one_line(name, settings, message):
    with pytest.raises(VaelabError, match=message) as info:
        vaelab.build(name, input_shape=[1, 28, 28], **settings)
    assert "\n" not in str(info.value)


def test_semi_without_labels_and_cluster_with_labels_are_refused(synthetic_small, tmp_path):
    unlabelled = vaelab.Dataset("unlabelled", synthetic_small.train.x[:200])
    with pytest.raises(VaelabError, match="aae-semi fits q\\(y\\|x\\) to labelled images, but the training data "
                                          "has none; train it on a labelled dataset with --labels N"):
        _train("aae-semi", unlabelled, tmp_path / "a", epochs=1)
    with pytest.raises(VaelabError, match="aae-cluster learns without labels, but --labels keeps some; drop --labels"):
        _train("aae-cluster", synthetic_small.train.subset(slice(0, 200)), tmp_path / "b", epochs=1, labels=20)
    bad = Batch(synthetic_small.train.x[:4], torch.tensor([1, 2, 10, 3]))
    model = vaelab.build("aae-semi", input_shape=[1, 28, 28], **SMALL)
    with pytest.raises(VaelabError, match=r"label 10 is outside this aae-semi's categories 0..9"):
        model.class_loss(bad)


def test_cli_refuses_one_cluster_and_trains_a_semi_aae(tmp_path, capsys):
    from vaelab.cli import main

    code = main(["train", "aae-cluster", "--data", "digits", "--out", str(tmp_path / "c"), "--clusters", "1",
                 "--epochs", "1", "--threads", "1"])
    err = capsys.readouterr().err
    assert code != 0 and "clusters must be at least 2" in err and "Traceback" not in err
    run = tmp_path / "s"
    assert main(["train", "aae-semi", "--data", "digits", "--out", str(run), "--labels", "50", "--hidden", "32",
                 "--disc-hidden", "16", "--latent-dim", "2", "--epochs", "1", "--threads", "1",
                 "--val-size", "200"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--data", "digits", "--json"]) == 0
    assert "classification_error" in json.loads(capsys.readouterr().out)
