"""The adversarial autoencoder (aae): three phases with their own optimisers through the ordinary
trainer on real MNIST, the priors it can be matched to, the supervised decoder and its
style/content figure, exact resume (at an epoch's end and after a Ctrl-C mid-epoch), a diverged
adversarial game named in metrics.jsonl and never kept as the best epoch, and its bad inputs."""
from __future__ import annotations

import json
import math
import os
import signal

import pytest
import torch
from PIL import Image

import vaelab
from vaelab.data.batch import Batch
from vaelab.errors import VaelabError
from vaelab.models.aae import AAE
from vaelab.nn.priors import MIXTURE_RADIUS, prior_log_prob, sample_prior
from vaelab.training import trainer as trainer_module
from vaelab.training.checkpoint import read_checkpoint

FAST = {"threads": 1, "batch_size": 100}
SMALL = {"hidden": [64], "latent_dim": 2, "disc_hidden": [32, 32]}


def _train(small, out, model_config=None, resume=False, n_train=600, epochs=2, model=None, **settings):
    config = {**FAST, "epochs": epochs, "lr": 2e-3, "val_size": 0, **settings}
    mc = None if (resume or model is not None) else {**SMALL, **(model_config or {})}
    return vaelab.train(model if model is not None else "aae", small.train.subset(slice(0, n_train)), out,
                        model_config=mc, config=config, val_data=small.val.subset(slice(0, 200)),
                        resume=resume, progress=False)


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _same_run(a, b):
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    for name in ("last", "best"):
        ta, sa = read_checkpoint(a / "checkpoints" / f"{name}.safetensors")
        tb, sb = read_checkpoint(b / "checkpoints" / f"{name}.safetensors")
        assert ta.keys() == tb.keys() and sa["counters"] == sb["counters"]
        assert all(torch.equal(ta[k], tb[k]) for k in ta), name
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")} for r in rows]  # noqa: E731
    assert strip(_metrics(a)) == strip(_metrics(b))


@pytest.fixture(scope="module")
def straight(synthetic_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("aae") / "straight"
    _train(synthetic_small, out, {"prior": "mixture"}, epochs=3)
    return out


# --- training -------------------------------------------------------------------------------


def test_three_phases_train_and_best_is_the_reconstruction_term(straight):
    lines = _metrics(straight)
    assert set(lines[0]["train"]) == {"reconstruction/recon", "discriminator/disc", "generator/gen"}
    for line in lines:
        assert line["val"]["loss"] == line["val"]["recon"]  # the monitored value: never an adversary's loss
        assert "diverged" not in line
    assert lines[-1]["train"]["reconstruction/recon"] < lines[0]["train"]["reconstruction/recon"]
    _, state = read_checkpoint(straight / "checkpoints" / "last.safetensors")
    best = min(range(len(lines)), key=lambda i: lines[i]["val"]["recon"]) + 1
    assert state["counters"]["best_epoch"] == best
    tensors, _ = read_checkpoint(straight / "checkpoints" / "last.safetensors")
    for phase in ("reconstruction", "discriminator", "generator"):  # one optimiser each, all saved
        assert any(k.startswith(f"optim/{phase}/") for k in tensors), phase
    model = vaelab.load(straight)
    assert isinstance(model, AAE) and model.config.prior == "mixture"
    assert model.sample(5, generator=torch.Generator().manual_seed(0)).shape == (5, 1, 28, 28)


def test_each_phase_updates_only_its_own_parameters(synthetic_small):
    torch.manual_seed(0)
    model = vaelab.build("aae", input_shape=[1, 28, 28], **SMALL)
    phases = model.phases()
    assert list(phases) == ["reconstruction", "discriminator", "generator"]
    disc = {id(p) for p in model.discriminator.parameters()}
    assert not disc & {id(p) for p in phases["reconstruction"].parameters()}
    assert not disc & {id(p) for p in phases["generator"].parameters()}
    assert {id(p) for p in phases["generator"].parameters()} == {id(p) for p in model.encoder.parameters()}
    assert phases["discriminator"].betas == (0.5, 0.999)
    x = synthetic_small.train.x[:50]
    loss = phases["discriminator"].loss(Batch(x))
    loss.total.backward()
    assert all(p.grad is None for p in model.encoder.parameters())  # codes are constants for D


def test_resume_is_bit_identical(synthetic_small, straight, tmp_path):
    out = tmp_path / "split"
    _train(synthetic_small, out, {"prior": "mixture"}, epochs=1)
    _train(synthetic_small, out, epochs=3, resume=True)
    _same_run(straight, out)


def test_ctrl_c_mid_epoch_then_resume_is_bit_identical(synthetic_small, straight, tmp_path):
    out = tmp_path / "run"
    torch.manual_seed(0)
    model = vaelab.build("aae", input_shape=[1, 28, 28], **SMALL, prior="mixture")
    original, calls = model.gen_loss, [0]

    def gen_loss(batch):  # the third phase of step 8 (6 steps per epoch): epoch 2, mid-way
        calls[0] += 1
        if calls[0] == 8:
            os.kill(os.getpid(), signal.SIGINT)
        return original(batch)

    model.gen_loss = gen_loss
    with pytest.raises(trainer_module.TrainingInterrupted, match="stopped by SIGINT at epoch 2, step 8"):
        _train(synthetic_small, out, model=model, epochs=3)
    _train(synthetic_small, out, epochs=3, resume=True)
    _same_run(straight, out)


# --- divergence ------------------------------------------------------------------------------


def test_training_health_names_a_winning_discriminator_and_collapsed_codes(synthetic_small):
    torch.manual_seed(0)
    model = vaelab.build("aae", input_shape=[1, 28, 28], **SMALL)
    data = Batch(synthetic_small.val.x[:100])
    assert model.training_health({"discriminator/disc": 1.3}, data) == []
    [problem] = model.training_health({"discriminator/disc": 1e-4}, data)
    assert "discriminator loss" in problem and "diverged" in problem
    [problem] = model.training_health({"discriminator/disc": 0.13, "generator/gen": 53.9}, data)
    assert "generator loss averaged 53.9" in problem and "no longer fools D" in problem
    assert model.training_health({"discriminator/disc": 1.0, "generator/gen": 2.5}, data) == []
    with torch.no_grad():
        last = model.encoder[-1][-1]
        last.weight.zero_()
    [problem] = model.training_health({"discriminator/disc": 1.3}, data)
    assert "codes collapsed" in problem


def test_a_diverged_epoch_is_flagged_and_not_kept_as_best(synthetic_small, tmp_path, monkeypatch):
    def health(self, terms, data):  # the game "diverges" from epoch 2 on
        return ["the discriminator loss averaged 0.001 over the epoch"] if self.diverge else []

    monkeypatch.setattr(AAE, "training_health", health)
    monkeypatch.setattr(AAE, "diverge", False, raising=False)
    torch.manual_seed(0)
    model = vaelab.build("aae", input_shape=[1, 28, 28], **SMALL)
    original = model.recon_loss
    steps = [0]

    def recon_loss(batch):
        steps[0] += 1
        model.diverge = steps[0] > 6  # after epoch 1 (6 steps)
        return original(batch)

    model.recon_loss = recon_loss
    with pytest.warns(vaelab.errors.VaelabWarning, match="epoch 2: the discriminator loss.*not kept as the best"):
        result = _train(synthetic_small, tmp_path / "run", model=model, epochs=3, lr=1e-2)
    lines = _metrics(tmp_path / "run")
    assert [line.get("diverged", False) for line in lines] == [False, True, True]
    assert "discriminator loss" in lines[1]["warning"]
    assert min(line["val"]["recon"] for line in lines[1:]) < lines[0]["val"]["recon"]  # better, yet not kept
    assert result.best_epoch == 1


# --- priors ----------------------------------------------------------------------------------


def test_priors_sample_their_shapes_and_the_mixture_density_integrates_to_one():
    g = torch.Generator().manual_seed(0)
    z = sample_prior("mixture", 5000, 2, g)
    radius = z.norm(dim=1)
    assert abs(float(radius.mean()) - MIXTURE_RADIUS) < 0.1
    angle = torch.atan2(z[:, 1], z[:, 0]) % (2 * math.pi)
    nearest = torch.round(angle / (2 * math.pi / 10)) % 10
    assert len(torch.unique(nearest)) == 10  # all ten components drawn
    assert sample_prior("swiss-roll", 100, 2, g).shape == (100, 2)
    assert sample_prior("normal", 100, 7, g).shape == (100, 7)
    # ∫ p(z) dz ≈ 1 on a grid covering the mixture
    axis = torch.linspace(-7, 7, 701, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    mass = prior_log_prob("mixture", grid).exp().sum() * (axis[1] - axis[0]) ** 2
    assert abs(float(mass) - 1.0) < 1e-3
    zn = torch.randn(4, 3, dtype=torch.float64)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(zn).sum(1)
    assert torch.allclose(prior_log_prob("normal", zn), expected)


# --- supervised ----------------------------------------------------------------------------------


def test_supervised_aae_decodes_the_label_and_draws_the_style_grid(mnist_small, tmp_path):
    out = tmp_path / "sup"
    result = _train(mnist_small, out, {"supervised": True, "latent_dim": 4}, epochs=1)
    model = result.model
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    threes, fours = model.sample(4, y=3, generator=g()), model.sample(4, y=4, generator=g())
    assert not torch.equal(threes, fours)  # same styles, another digit
    img = Image.open(out / "samples.png")
    assert img.size[0] > 10 * 28 and img.size[1] > 10 * 28  # ten styles × ten digits
    from vaelab.viz.analogy import analogies  # a test digit's style decoded as every class

    x, y = mnist_small.val.x[:3], mnist_small.val.y[:3]
    made = analogies(model, x, y)
    assert made.shape == (3, 10, 1, 28, 28) and model.conditional
    assert torch.allclose(made[torch.arange(3), y], model.reconstruct(Batch(x, y)), atol=1e-6)
    with pytest.raises(VaelabError, match=r"label 10 is outside this aae's classes 0..9"):
        model.sample(2, y=10)
    with pytest.raises(VaelabError, match=r"label 12 is outside this aae's classes 0..9"):
        model.loss(Batch(mnist_small.val.x[:2], torch.tensor([1, 12])))
    with pytest.raises(VaelabError, match="needs each image's class label"):
        model.loss(Batch(mnist_small.val.x[:2]))


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("settings, message", [
    ({"prior": "cauchy"}, r"unknown prior 'cauchy'; choose one of: normal, mixture, swiss-roll"),
    ({"prior": "mixture", "latent_dim": 8}, r"the mixture prior is 2-D, but latent_dim is 8; pass --latent-dim 2"),
    ({"prior": "swiss-roll", "latent_dim": 3}, r"the swiss-roll prior is 2-D"),
    ({"encoder": "stochastic"}, r"unknown encoder 'stochastic'"),
])
def test_bad_settings_are_refused_in_one_line(settings, message):
    with pytest.raises(VaelabError, match=message) as info:
        vaelab.build("aae", input_shape=[1, 28, 28], **settings)
    assert "\n" not in str(info.value)


def test_cli_refuses_a_mixture_prior_with_another_latent_size(tmp_path, capsys):
    from vaelab.cli import main

    code = main(["train", "aae", "--data", "digits", "--out", str(tmp_path / "r"), "--prior", "mixture",
                 "--latent-dim", "3", "--epochs", "1", "--threads", "1"])
    err = capsys.readouterr().err
    assert code != 0 and "mixture prior is 2-D" in err and "Traceback" not in err


# --- the VAE under the same mixture prior (for compare aae-vs-vae) -----------------------------


def test_vae_prior_monte_carlo_kl_matches_the_kl_integrated_on_a_grid(synthetic_small):
    torch.manual_seed(0)
    model = vaelab.build("vae-prior", input_shape=[1, 28, 28], hidden=[32], latent_dim=2, prior="mixture")
    mu, logvar = torch.tensor([[3.0, 1.0]]), torch.tensor([[-1.0, 0.5]])
    eps = torch.randn(200000, 2, dtype=torch.float64)
    z = mu + (0.5 * logvar).exp() * eps
    mc = model._log_q_minus_log_p(z, mu.double(), logvar.double(), eps).mean()
    axis = torch.linspace(-6, 10, 801, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    q = torch.distributions.Normal(mu.double(), (0.5 * logvar.double()).exp()).log_prob(grid).sum(1)
    exact = (q.exp() * (q - prior_log_prob("mixture", grid))).sum() * (axis[1] - axis[0]) ** 2
    assert float(mc) == pytest.approx(float(exact), abs=0.02)
    x = synthetic_small.val.x[:20].round()
    with torch.no_grad():
        iw, bound = model.importance_log_weights(x, 50, generator=torch.Generator().manual_seed(0)), model.loss(x)
    log_px = torch.logsumexp(iw, 1) - math.log(50)
    assert float(log_px.mean()) > -float(bound.total) - 5  # the estimate sits above the bound (noise)
    assert model.sample(3).shape == (3, 1, 28, 28)
    with pytest.raises(VaelabError, match="mixture prior is 2-D"):
        vaelab.build("vae-prior", input_shape=[1, 28, 28], latent_dim=3, prior="mixture")
    normal = vaelab.build("vae-prior", input_shape=[1, 28, 28], hidden=[32], latent_dim=2, prior="normal")
    torch.manual_seed(1)
    a = normal.loss(x).total
    torch.manual_seed(1)
    assert torch.equal(a, vaelab.models.vae.VAE.loss(normal, x).total)


def test_cli_trains_a_supervised_aae_and_samples_a_class(tmp_path, capsys):
    from vaelab.cli import main

    run = tmp_path / "sup"
    assert main(["train", "aae", "--data", "digits", "--out", str(run), "--supervised", "--latent-dim", "2",
                 "--hidden", "32", "--epochs", "1", "--threads", "1"]) == 0
    assert main(["sample", str(run), "--label", "3", "-n", "8", "-o", str(tmp_path / "threes.png")]) == 0
    assert (tmp_path / "threes.png").exists()
    capsys.readouterr()
    assert main(["sample", str(run), "--label", "12", "-o", str(tmp_path / "bad.png")]) != 0
    err = capsys.readouterr().err
    assert "label 12 is outside this aae's classes 0..9" in err and "Traceback" not in err
