"""Kingma et al. (2014) M1 and M2: the exact sum over labels, the objective's weights, the
labelled-subset protocol (--labels, --label-seed, the last rows as validation), and the
refusals of bad input."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

import vaelab
from vaelab.cli import main as cli_main
from vaelab.data.batch import Batch
from vaelab.errors import VaelabError

SMALL_M2 = {"hidden": [32], "latent_dim": 4, "classifier_hidden": [32]}
SMALL_M1 = {"hidden": [32], "latent_dim": 4}
FAST = {"threads": 1, "batch_size": 100, "lr": 3e-3, "val_size": 200}


@pytest.fixture(scope="module")
def images(mnist_small):
    return mnist_small.train.subset(slice(0, 1200))


@pytest.fixture(scope="module")
def synthetic():
    """1,200 synthetic 28×28 binary images, 120 per class (a bright bar whose row is the class):
    for the tests of mechanisms and refusals, which need no real digits."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(1200) % 10
    p = torch.full((1200, 1, 28, 28), 0.05)
    p[torch.arange(1200), 0, 4 + 2 * y, 4:24] = 0.9
    return vaelab.Dataset("synthetic", torch.bernoulli(p, generator=g), y, tuple(map(str, range(10))))


@pytest.fixture(scope="module")
def m2_run(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("m2") / "run"
    result = vaelab.train("m2", images, out, model_config=SMALL_M2,
                          config={**FAST, "epochs": 2, "labels": 100, "label_seed": 3}, progress=False)
    return out, result


def _reference_neg_L(model, x, eps):
    """−L(x, y) for each y by the label-conditional VAE's own pieces, one class at a time."""
    columns = []
    for y in range(model.config.num_classes):
        labels = torch.full((len(x),), y)
        mu, logvar = model.posterior_params(Batch(x, labels))
        z = mu + torch.exp(0.5 * logvar) * eps[:, y]
        logits = model.decoder(torch.cat([z, F.one_hot(labels, 10).float()], 1))
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
        kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1)
        columns.append(nll + kl + math.log(10))
    return torch.stack(columns, 1)


def test_the_exact_sum_equals_a_loop_over_the_labels(synthetic):
    torch.manual_seed(0)
    model = vaelab.build("m2", input_shape=[1, 28, 28], **SMALL_M2)
    x = synthetic.x[:6]
    torch.manual_seed(5)
    fast = model.neg_L_every_class(x)
    torch.manual_seed(5)
    eps = torch.randn(6, 10, 4)
    assert torch.allclose(fast, _reference_neg_L(model, x, eps), atol=1e-3)


def test_the_batched_bernoulli_gradient_is_the_autograd_one():
    from vaelab.models.ssvae import _BernoulliEveryClass

    logits = (3 * torch.randn(4, 10, 20)).requires_grad_()
    x = torch.rand(4, 20)
    g = torch.randn(4, 10)
    ours = torch.autograd.grad(_BernoulliEveryClass.apply(logits, x), logits, g)[0]
    ref = F.binary_cross_entropy_with_logits(logits, x[:, None].expand_as(logits), reduction="none").sum(-1)
    assert torch.allclose(ours, torch.autograd.grad(ref, logits, g)[0], atol=1e-5)


def test_the_objective_weights_the_parts_by_the_labelled_share(synthetic):
    torch.manual_seed(0)
    model = vaelab.build("m2", input_shape=[1, 28, 28], **SMALL_M2, alpha=0.5)
    labelled = torch.zeros(len(synthetic), dtype=torch.bool)
    labelled[:100] = True
    model.prepare(Batch(synthetic.x, synthetic.y, labelled))
    assert float(model.labelled_share) == pytest.approx(100 / len(synthetic))
    batch = Batch(synthetic.x[95:105], synthetic.y[95:105], labelled[95:105])
    loss = model.loss(batch)
    f = 100 / len(synthetic)
    assert loss.weights == pytest.approx({"neg_L": f, "neg_log_qy": 0.5, "neg_U": 1 - f})
    total = sum(loss.weights[k] * loss.terms[k] for k in loss.terms)
    assert torch.allclose(loss.total, total)
    # −U(x) ≥ min_y −L(x, y) − log K: the entropy can lower the bound by at most log K
    assert set(model.loss(Batch(synthetic.x[:5], synthetic.y[:5])).terms) == {"neg_L", "neg_log_qy"}
    assert set(model.loss(synthetic.x[:5]).terms) == {"neg_U"}


def test_neg_U_is_the_q_weighted_sum_minus_the_entropy(synthetic):
    torch.manual_seed(0)
    model = vaelab.build("m2", input_shape=[1, 28, 28], **SMALL_M2)
    x = synthetic.x[:8]
    torch.manual_seed(1)
    neg_U = model.loss(x).terms["neg_U"]
    torch.manual_seed(1)
    neg_L = model.neg_L_every_class(x)
    q = F.softmax(model.classify(x), -1)
    expected = ((q * neg_L).sum(1) + (q * q.log()).sum(1)).mean()
    assert torch.allclose(neg_U, expected, atol=1e-4)


def _kl_every_class(model, x):
    """KL(q(z|x, y) ‖ p(z)) of every image and label, (B, K), from q's own parameters."""
    columns = []
    for y in range(model.config.num_classes):
        mu, logvar = model.posterior_params(Batch(x, torch.full((len(x),), y)))
        columns.append(0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1))
    return torch.stack(columns, 1)


@pytest.mark.parametrize("settings, epoch, weight", [
    ({"beta": 5.0}, 0.0, 5.0),                            # β weighs the KL of −L(x, y)
    ({"beta": 1.0, "kl_warmup_epochs": 2.0}, 0.0, 0.0),   # the warm-up starts at 0 ...
    ({"beta": 3.0, "kl_warmup_epochs": 2.0}, 1.0, 1.5),   # ... and rises linearly to β
])
def test_beta_and_the_kl_warmup_weigh_the_kl_of_neg_L(settings, epoch, weight):
    torch.manual_seed(0)
    x = torch.rand(5, 1, 6, 6)
    torch.manual_seed(1)
    plain = vaelab.build("m2", input_shape=[1, 6, 6], **SMALL_M2)
    torch.manual_seed(1)
    weighted = vaelab.build("m2", input_shape=[1, 6, 6], **SMALL_M2, **settings)
    weighted.schedule(epoch)
    torch.manual_seed(2)
    base = plain.neg_L_every_class(x)
    torch.manual_seed(2)
    changed = weighted.neg_L_every_class(x)
    with torch.no_grad():
        kl = _kl_every_class(plain, x)
    assert float(kl.min()) > 0.01
    assert torch.allclose(changed - base, (weight - 1.0) * kl, atol=1e-4)
    torch.manual_seed(3)
    loss_plain = plain.loss(Batch(x, torch.arange(5), torch.tensor([1, 1, 0, 0, 0], dtype=torch.bool))).total
    torch.manual_seed(3)
    loss_weighted = weighted.loss(Batch(x, torch.arange(5), torch.tensor([1, 1, 0, 0, 0], dtype=torch.bool))).total
    assert abs(float(loss_weighted - loss_plain)) > 1e-3  # and so the training objective


@pytest.mark.parametrize("family", ["m1", "m2", "m1m2"])
def test_the_semi_supervised_models_train_on_grey_levels_by_default(family):
    """docs/semi-supervised.md: grey-level pixels under a Bernoulli likelihood, as measured
    by ``vaelab compare ssl``; an explicit --binarize still wins."""
    from vaelab.data.samplers import resolve_binarize
    from vaelab.training.run import train_config

    model = vaelab.build(family, input_shape=[1, 6, 6])
    assert resolve_binarize(train_config(family).binarize, model) == "none"
    assert resolve_binarize(train_config(family, {"binarize": "dynamic"}).binarize, model) == "dynamic"


def test_glorot_initialises_the_classifier_too():
    torch.manual_seed(0)
    model = vaelab.build("m2", input_shape=[1, 6, 6], **SMALL_M2, init="glorot")
    first = model.classifier[0]
    assert float(first.bias.abs().max()) == 0.0
    bound = math.sqrt(6 / (first.in_features + first.out_features))  # Glorot-uniform's, not torch's 1/sqrt(fan_in)
    assert float(first.weight.abs().max()) > 1 / math.sqrt(first.in_features)
    assert float(first.weight.abs().max()) <= bound


def test_training_keeps_only_the_drawn_labels_and_validates_on_the_last_rows(m2_run, images):
    out, result = m2_run
    record = json.loads((out / "run.json").read_text())
    assert record["data"]["labels"] == 100 and record["data"]["label_seed"] == 3
    assert record["data"]["n_train"] == 1000 and record["data"]["n_val"] == 200
    assert float(result.model.labelled_share) == pytest.approx(0.1)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"neg_L", "neg_U", "neg_log_qy"} <= set(metrics[-1]["train"])
    # chance is 0.9 (± 0.02 on 200 rows); two epochs of the tiny model reach 0.735
    assert metrics[-1]["val"]["error"] < 0.8
    assert {"samples.png", "reconstructions.png", "analogies.png"} <= {p.name for p in out.iterdir()}


def test_eval_reports_the_error_of_q_y_given_x(m2_run, mnist_small):
    out, _ = m2_run
    model = vaelab.load(out)
    result = vaelab.evaluate(model, mnist_small.test)
    wrong = (model.classify(mnist_small.test.x).argmax(-1) != mnist_small.test.y).float().mean()
    assert result["classification_error"] == pytest.approx(float(wrong))
    assert "nll" not in result and "elbo" not in result


def test_a_changed_label_seed_is_refused_on_resume(m2_run, images):
    out, _ = m2_run
    with pytest.raises(VaelabError, match="trained on"):
        vaelab.train("m2", images, out, config={**FAST, "epochs": 3, "labels": 100, "label_seed": 4},
                     resume=True, progress=False)


@pytest.mark.parametrize("labels, message", [
    (105, "not a multiple of the 10 classes"),
    (5000, "fewer than per_class=500"),
])
def test_bad_label_counts_are_refused(synthetic, tmp_path, labels, message):
    with pytest.raises(VaelabError, match=message):
        vaelab.train("m2", synthetic, tmp_path / "run", model_config=SMALL_M2,
                     config={**FAST, "epochs": 1, "labels": labels}, progress=False)
    assert not (tmp_path / "run").exists()


def test_labels_on_data_without_labels_are_refused(synthetic, tmp_path):
    unlabelled = vaelab.Dataset("no labels", synthetic.x)
    with pytest.raises(VaelabError, match="no class labels"):
        vaelab.train("m2", unlabelled, tmp_path / "run", model_config=SMALL_M2,
                     config={**FAST, "epochs": 1, "labels": 100}, progress=False)


def test_cli_refuses_a_label_count_that_is_not_balanced(synthetic_npy, tmp_path, capsys):
    code = cli_main(["train", "m2", "--data", synthetic_npy, "--out", str(tmp_path / "r"),
                     "--labels", "55", "--val-size", "100", "--threads", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "choose 50 or 60" in err
    assert not (tmp_path / "r").exists()


def test_m1_classifies_from_the_codes_and_survives_a_round_trip(images, mnist_small, tmp_path):
    result = vaelab.train("m1", images, tmp_path / "m1", model_config=SMALL_M1,
                          config={**FAST, "epochs": 2, "labels": 100}, progress=False)
    model = result.model.eval()
    assert model.labelled_x.shape == (100, 1, 28, 28)
    assert torch.equal(torch.bincount(model.labelled_y), torch.full((10,), 10))
    before = model.classify(mnist_small.test.x[:200]).argmax(-1)
    loaded = vaelab.load(tmp_path / "m1")
    assert loaded.labelled_x.shape == (100, 1, 28, 28)
    assert torch.equal(loaded.classify(mnist_small.test.x[:200]).argmax(-1), before)
    error = (before != mnist_small.test.y[:200]).float().mean()
    assert error < 0.8
    metrics = json.loads((tmp_path / "m1" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "error" in metrics["val"]


def test_m1_without_labelled_images_is_refused(synthetic, tmp_path):
    with pytest.raises(VaelabError, match="--labels N"):
        vaelab.train("m1", vaelab.Dataset("no labels", synthetic.x), tmp_path / "run", model_config=SMALL_M1,
                     config={**FAST, "epochs": 1}, progress=False)


def test_m1m2_trains_two_stages_and_loads_as_one_classifier(images, mnist_small, tmp_path):
    settings = {"m1_hidden": [32], "m1_latent_dim": 6, "m2_hidden": [32], "m2_latent_dim": 4, "m1_epochs": 1}
    result = vaelab.train("m1m2", images, tmp_path / "run", model_config=settings,
                          config={**FAST, "epochs": 1, "labels": 100}, progress=False)
    plan = json.loads((tmp_path / "run" / "stages.json").read_text())
    assert [s["dir"] for s in plan["stages"]] == ["1-m1", "2-m2"] and plan["composite"] == "m1m2"
    second = json.loads((tmp_path / "run" / "2-m2" / "run.json").read_text())
    model = vaelab.load(tmp_path / "run")
    keep = model.m1.active_dims()  # the official code's rule: posterior means varying by > 0.1
    spread = model.m1.posterior_params(model.m1.labelled_x)[0].std(0)
    assert torch.equal(keep, spread > 0.1) and 0 < int(keep.sum()) <= 6
    assert second["data"]["labels"] == 100 and second["config"]["input_shape"] == [1, 1, int(keep.sum())]
    x = mnist_small.test.x[:50]
    codes = model.m1.posterior_params(x)[0][:, keep].reshape(50, 1, 1, -1)
    assert torch.equal(model.classify(x), model.m2.classify(codes))
    assert "classification_error" in vaelab.evaluate(model, mnist_small.test.subset(slice(0, 100)))
    assert result.model.classify(x).shape == (50, 10)


def test_compare_ssl_writes_the_table_with_the_papers_figures(data_dir, tmp_path):
    from vaelab.compare import ssl

    result = ssl(tmp_path / "ssl", data_dir=data_dir, labels=(100,), seeds=2, models=("m2",), epochs=1,
                 train_size=1200, test_size=200, threads=1, lr=3e-3, progress=False)
    result.write(tmp_path / "ssl")
    row = result.rows[0]
    assert row["labels"] == 100 and row["seeds"] == 2 and row["paper_%"] == 11.97 and row["pyro_%"] == 6.81
    seeds = [r["error_%"] for r in result.settings["per_seed"]]
    assert len(seeds) == 2 and row["error_%"] == pytest.approx(sum(seeds) / 2)  # mean ± std over the seeds
    assert row["std"] == pytest.approx(abs(seeds[0] - seeds[1]) / math.sqrt(2))
    test = vaelab.load_dataset("mnist", "test", data_dir=data_dir, download=False).subset(slice(0, 200))
    model = vaelab.load(tmp_path / "ssl" / "runs" / "m2-n100-seed1")
    wrong = (model.classify(test.x).argmax(-1) != test.y).float().mean()
    assert seeds[1] == pytest.approx(100 * float(wrong))  # each seed's figure: the error on the 200 test images
    assert {"m2_n100_styles.png", "m2_n100_analogies.png"} <= {p.name for p in (tmp_path / "ssl").iterdir()}
    again = ssl(tmp_path / "ssl", data_dir=data_dir, labels=(100,), seeds=2, models=("m2",), epochs=1,
                train_size=1200, test_size=200, threads=1, lr=3e-3, progress=False)
    assert again.rows[0]["error_%"] == pytest.approx(row["error_%"])  # finished runs are reused


def test_compare_ssl_trains_one_m1_vae_for_every_labelled_subset(data_dir, tmp_path):
    from vaelab.compare import ssl

    result = ssl(tmp_path / "ssl", data_dir=data_dir, labels=(100, 200), seeds=2, models=("m1", "m1m2"), epochs=1,
                 m1_epochs=1, train_size=1200, test_size=200, threads=1, lr=3e-3, progress=False)
    runs = sorted(p.name for p in (tmp_path / "ssl" / "runs").iterdir())
    assert runs == ["m1-vae", "m1m2-n100-seed0", "m1m2-n100-seed1", "m1m2-n200-seed0", "m1m2-n200-seed1"]
    assert vaelab.load(tmp_path / "ssl" / "runs" / "m1-vae").config.hidden == (600, 600)
    m2 = vaelab.load(tmp_path / "ssl" / "runs" / "m1m2-n100-seed0")
    assert m2.config.input_shape == (1, 1, 50) and m2.config.hidden == (300,)  # the official code's size for N = 100
    assert vaelab.load(tmp_path / "ssl" / "runs" / "m1m2-n200-seed0").config.hidden == (500,)
    rows = {(r["labels"], r["model"]): r for r in result.rows}
    assert rows[(100, "m1m2")]["paper_%"] == 3.33 and rows[(100, "m1m2")]["goal_%"] == 3.33
    per_seed = [r["error_%"] for r in result.settings["per_seed"] if (r["labels"], r["model"]) == (200, "m1")]
    assert rows[(200, "m1")]["seeds"] == 2 and rows[(200, "m1")]["error_%"] == pytest.approx(sum(per_seed) / 2)
    # seed 1's figure, recomputed: the shared VAE's SVM fitted to that seed's 200 labelled rows
    # of the first 1,000 training images (the last 200 of 1,200 validate), on 200 test images
    from vaelab.data.derive import labelled_subset
    from vaelab.models.ssvae import M1

    train = vaelab.load_dataset("mnist", "train", data_dir=data_dir, download=False).subset(slice(0, 1000))
    test = vaelab.load_dataset("mnist", "test", data_dir=data_dir, download=False).subset(slice(0, 200))
    m1 = M1.from_vae(vaelab.load(tmp_path / "ssl" / "runs" / "m1-vae"), labelled_subset(train, 20, 1).batch())
    wrong = (m1.classify(test.x).argmax(-1) != test.y).float().mean()
    assert per_seed[1] == pytest.approx(100 * float(wrong))


def test_m1_from_a_trained_vae_keeps_its_weights_and_takes_the_labelled_rows(synthetic):
    from vaelab.data.derive import labelled_subset
    from vaelab.models.ssvae import M1

    vae = vaelab.build("vae", input_shape=[1, 28, 28], **SMALL_M1)
    subset = labelled_subset(synthetic, 3, seed=1)
    m1 = M1.from_vae(vae, subset.batch(), classifier="knn", knn_k=1)
    assert torch.equal(m1.encoder[1][0].weight, vae.encoder[1][0].weight)
    assert torch.equal(m1.labelled_y.sort().values, subset.y[subset.labelled].sort().values)
    predicted = m1.classify(m1.labelled_x).argmax(1)
    assert torch.equal(predicted, m1.labelled_y)  # 1-NN on its own labelled rows
    with pytest.raises(VaelabError, match="takes a trained vae"):
        M1.from_vae(vaelab.build("m2", input_shape=[1, 28, 28], **SMALL_M2), subset.batch())


def test_compare_ssl_refuses_unbalanced_label_counts(tmp_path):
    from vaelab.compare import ssl

    with pytest.raises(VaelabError, match="not a positive multiple of the 10 classes"):
        ssl(tmp_path / "x", labels=(105,), progress=False)


def test_m2_draws_style_grids_and_analogies_with_the_conditional_commands(m2_run, data_dir, tmp_path, capsys):
    out, _ = m2_run
    assert cli_main(["manifold", str(out), "--by-class", "-n", "4", "-o", str(tmp_path / "styles.png")]) == 0
    assert cli_main(["analogies", str(out), "--data", "mnist", "--data-dir", str(data_dir), "-n", "4",
                     "-o", str(tmp_path / "analogies.png")]) == 0
    assert (tmp_path / "styles.png").stat().st_size > 0 and (tmp_path / "analogies.png").stat().st_size > 0


def _tiny_m1m2(images, out, resume=False):
    settings = {"m1_hidden": [32], "m1_latent_dim": 6, "m2_hidden": [32], "m2_latent_dim": 4, "m1_epochs": 1}
    return vaelab.train("m1m2", images, out, model_config=settings, config={**FAST, "epochs": 1, "labels": 100},
                        resume=resume, progress=False)


def test_m1m2_refuses_a_second_stage_whose_first_is_missing_or_changed(synthetic, tmp_path):
    import shutil

    out = tmp_path / "run"
    _tiny_m1m2(synthetic, out)
    first = out / "1-m1"
    saved = tmp_path / "saved-m1"
    shutil.copytree(first, saved)
    shutil.rmtree(first)
    with pytest.raises(VaelabError, match="whose run .* is missing"):
        _tiny_m1m2(synthetic, out, resume=True)
    assert not first.exists()
    # another first stage: its codes carry another name, so a run trained on them refuses to resume
    shutil.copytree(saved, first)
    model = vaelab.load(first)
    before = vaelab.data.encoded(model, synthetic, tmp_path / "a.safetensors").name
    with torch.no_grad():
        model.encoder[1][0].weight.add_(0.01)
    assert vaelab.data.encoded(model, synthetic, tmp_path / "b.safetensors").name != before


def test_m1_refits_its_classifier_when_the_encoder_changes(synthetic, tmp_path):
    result = vaelab.train("m1", synthetic, tmp_path / "m1", model_config=SMALL_M1,
                          config={**FAST, "epochs": 1, "labels": 100}, progress=False)
    model = result.model.eval()
    model.classify(synthetic.x[:10])
    _, first = model._classifier()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05, fused=True)  # the trainer's optimiser
    model.loss(synthetic.x[:100]).total.backward()
    optimiser.step()
    _, second = model._classifier()
    assert second is not first
    assert model._classifier()[1] is second  # unchanged weights: the fitted classifier is reused


def test_m2_draws_codes_from_their_posterior_in_training_and_reads_the_means_in_evaluation():
    from vaelab.models.ssvae import CODE_STD

    model = vaelab.build("m2", **{"input_shape": [1, 1, 6], "hidden": [16], "classifier_hidden": [16],
                                 "latent_dim": 3, "likelihood": "gaussian-real"})
    means = torch.randn(8, 1, 1, 6)
    batch = vaelab.Batch(means, extras={CODE_STD: torch.full((8, 1, 1, 6), 0.5)})
    model.train()
    torch.manual_seed(0)
    drawn = model.drawn_inputs(batch)
    assert not torch.equal(drawn, means) and abs(float((drawn - means).std()) - 0.5) < 0.2
    model.eval()
    assert torch.equal(model.drawn_inputs(batch), means)
    assert torch.equal(model.drawn_inputs(vaelab.Batch(means)), means)  # no std: the inputs as they are


def test_code_rows_keep_the_active_dimensions_with_their_posterior_std(synthetic, tmp_path):
    from vaelab.models.ssvae import CODE_STD, code_rows

    vae = vaelab.build("vae", **{"input_shape": [1, 28, 28], "hidden": [16], "latent_dim": 5})
    ds = vaelab.Dataset("some", synthetic.x[:40], synthetic.y[:40])
    keep = torch.tensor([True, False, True, True, False])
    rows = code_rows(vae, ds, tmp_path / "codes.safetensors", keep=keep)
    mean, logvar = vae.posterior_params(synthetic.x[:40])
    assert rows.x.shape == (40, 1, 1, 3) and torch.allclose(rows.x.flatten(1), mean[:, keep].detach())
    assert torch.allclose(rows.extras[CODE_STD].flatten(1), torch.exp(0.5 * logvar[:, keep]).detach())
    assert torch.equal(rows.y, ds.y)
