"""The VQ-VAE: its quantizer (search, gradient, EMA, k-means start, revival), the model's code
interface, training with usage figures, saving and resuming, and each bad input in one line."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import vaelab
from vaelab.errors import VaelabError
from vaelab.nn.likelihoods import DiscretizedLogistic
from vaelab.nn.quantizer import VectorQuantizer, kmeans, nearest, squared_distances

TINY = {"channels": (8, 8), "residual_channels": 4, "codebook_size": 16, "code_dim": 4}
FAST = {"threads": 1, "batch_size": 100, "val_size": 0}


def _binary(n=8, seed=0):
    return torch.bernoulli(torch.full((n, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(seed))


# -- the quantizer ------------------------------------------------------------------------------
def test_gemm_search_equals_brute_force():
    g = torch.Generator().manual_seed(0)
    z, codebook = torch.randn(1000, 16, generator=g), torch.randn(300, 16, generator=g)
    brute = (z[:, None, :] - codebook[None]).square().sum(-1)
    assert torch.allclose(squared_distances(z, codebook), brute, atol=1e-3)
    assert torch.equal(nearest(z, codebook, block=128), brute.argmin(1))


def test_straight_through_gradient_reaches_the_encoder():
    q = VectorQuantizer(8, 3)
    z_e = torch.randn(2, 3, 4, 4, requires_grad=True)
    w = torch.randn(2, 3, 4, 4)
    (q(z_e).z_q * w).sum().backward()
    assert torch.equal(z_e.grad, w)  # dz_q/dz_e = I: the decoder's gradient passes unchanged
    model = vaelab.build("vqvae", **TINY)
    model.loss(_binary()).terms["recon"].backward()
    first = model.encoder[0].weight.grad
    assert first is not None and first.abs().sum() > 0


def test_terms_follow_the_one_reduction_and_their_gradients():
    q = VectorQuantizer(4, 2)
    z_e = torch.randn(3, 2, 5, 5, requires_grad=True)
    out = q(z_e)
    e = q.codebook.detach()[out.codes].permute(0, 3, 1, 2)
    per_image = (z_e.detach() - e).square().sum((1, 2, 3))  # summed over positions × D, per image
    assert torch.allclose(out.codebook, per_image) and torch.allclose(out.commitment.detach(), per_image)
    out.commitment.sum().backward()
    assert q.codebook.grad is None  # the commitment term moves the encoder only
    out.codebook.sum().backward()
    assert q.codebook.grad.abs().sum() > 0  # the codebook term moves the codes only


def test_ema_update_matches_the_papers_formula():
    q = VectorQuantizer(2, 1, ema=True, decay=0.5, eps=0.0)
    q.codebook.copy_(torch.tensor([[0.0], [10.0]]))
    q.ema_sum.copy_(q.codebook)
    z = torch.tensor([1.0, 2.0, 9.0]).view(3, 1, 1, 1)  # codes 0, 0, 1
    q.train()
    q(z.requires_grad_())
    # N = 0.5·1 + 0.5·(2, 1) = (1.5, 1); m = 0.5·(0, 10) + 0.5·(3, 9) = (1.5, 9.5); e = m / N
    assert torch.allclose(q.ema_count, torch.tensor([1.5, 1.0]))
    assert torch.allclose(q.codebook.squeeze(1), torch.tensor([1.0, 9.5]))


def test_ema_laplace_smoothing_keeps_an_unused_code_finite():
    q = VectorQuantizer(2, 1, ema=True, decay=0.5)
    q.codebook.copy_(torch.tensor([[0.0], [100.0]]))
    q.ema_sum.copy_(q.codebook)
    q.train()
    for _ in range(60):  # code 1 is never chosen: its count decays towards 0
        q(torch.zeros(4, 1, 1, 1, requires_grad=True))
    assert torch.isfinite(q.codebook).all() and q.ema_count[1] < 1e-15


def test_revival_moves_a_dead_code_onto_an_encoder_output():
    torch.manual_seed(0)
    q = VectorQuantizer(3, 2, revive_after=2)
    with torch.no_grad():
        q.codebook.copy_(torch.tensor([[0.0, 0.0], [0.1, 0.0], [50.0, 50.0]]))
    z = torch.randn(2, 2, 3, 3, requires_grad=True)
    q.train()
    q(z)
    q(z)
    assert torch.equal(q.codebook[2].detach(), torch.tensor([50.0, 50.0]))  # idle 2 steps: revived next step
    q(z)
    rows = z.detach().permute(0, 2, 3, 1).reshape(-1, 2)
    assert (rows == q.codebook[2].detach()).all(1).any()  # now one of the batch's encoder outputs
    assert q.usage()["codes_revived"] >= 1


def test_no_revival_and_no_updates_in_eval_mode():
    q = VectorQuantizer(3, 2, revive_after=1, ema=True)
    before = {k: v.clone() for k, v in q.state_dict().items()}
    q.eval()
    for _ in range(3):
        q(torch.randn(2, 2, 3, 3))
    assert all(torch.equal(before[k], v) for k, v in q.state_dict().items())


def test_kmeans_initialisation_from_the_first_batch():
    torch.manual_seed(0)
    centres = torch.tensor([[5.0, 5.0], [-5.0, 5.0], [0.0, -5.0]])
    x = (centres.repeat(40, 1) + 0.1 * torch.randn(120, 2))
    found = kmeans(x, 3, iters=10)
    assert torch.cdist(found, centres).min(1).values.max() < 0.2
    q = VectorQuantizer(3, 2, kmeans_init=True)
    q.train()
    q(x.view(120, 2, 1, 1).requires_grad_())
    assert bool(q.initialised) and torch.cdist(q.codebook.detach(), centres).min(1).values.max() < 0.2


def test_usage_and_perplexity():
    q = VectorQuantizer(4, 1)
    q.counts.copy_(torch.tensor([5, 5, 0, 0]))
    figures = q.epoch_figures()
    assert figures["codebook_usage"] == 0.5 and math.isclose(figures["code_perplexity"], 2.0)
    assert int(q.counts.sum()) == 0  # reset for the next epoch


# -- the likelihood -----------------------------------------------------------------------------
def test_discretized_logistic_is_a_distribution_over_256_levels():
    levels = torch.arange(256).float().div(255).view(256, 1, 1, 1)
    for mu, log_s in ((0.3, -3.0), (0.0, -6.0), (1.2, 0.5), (0.5, -7.0)):
        out = torch.tensor([mu, log_s]).view(1, 2, 1, 1).expand(256, 2, 1, 1)
        total = DiscretizedLogistic().log_prob(out, levels).exp().sum()
        assert abs(float(total) - 1.0) < 1e-4, (mu, log_s, float(total))


# -- the model's interface ------------------------------------------------------------------------
def test_code_interface_shapes_and_values():
    model = vaelab.build("vqvae", **TINY).eval()
    x = _binary(5)
    idx = model.codes(x)
    assert model.code_shape == (7, 7) and idx.shape == (5, 7, 7) and idx.dtype == torch.long
    images = model.decode_codes(idx)
    assert images.shape == (5, 1, 28, 28) and 0 <= float(images.min()) and float(images.max()) <= 1
    assert torch.equal(model.reconstruct(x), images)
    ll = model.code_log_likelihood(x, idx)
    recon = model.loss(x).terms["recon"]
    assert ll.shape == (5,) and torch.allclose(-ll.mean(), recon, rtol=1e-5)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 20), (1, 9, 7)])
def test_any_image_size_round_trips(shape):
    model = vaelab.build("vqvae", **TINY, input_shape=shape, likelihood="discretized-logistic").eval()
    x = torch.randint(0, 256, (2, *shape)).float() / 255
    assert model.reconstruct(x).shape == x.shape
    assert model.codes(x).shape == (2, *model.code_shape)
    assert torch.isfinite(model.code_log_likelihood(x, model.codes(x))).all()


def test_the_prior_is_held_beside_the_model():
    model = vaelab.build("vqvae", **TINY).eval()
    keys = set(model.state_dict())

    class Prior(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        conditional = False

        def sample(self, n, y=None, generator=None):
            return torch.randint(0, 16, (n, 7, 7), generator=generator)

    assert not model.can_sample
    model.prior = Prior()
    assert set(model.state_dict()) == keys and model.can_sample
    assert model.sample(3, generator=torch.Generator().manual_seed(0)).shape == (3, 1, 28, 28)


def test_dead_codes_are_revived_unless_asked_not_to():
    assert vaelab.build("vqvae").quantizer.revive_after == 50
    assert vaelab.build("vqvae", revive=False).quantizer.revive_after == 0


# -- bad input: one line each ---------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 0, -3])
def test_codebook_size_below_two_is_refused(size):
    with pytest.raises(VaelabError, match="codebook_size must be at least 2") as exc:
        vaelab.build("vqvae", codebook_size=size)
    assert "\n" not in str(exc.value)


def test_codebook_size_below_two_on_the_command_line(capsys, tmp_path):
    from vaelab.cli import main

    code = main(["train", "vqvae", "--data", "digits", "--codebook-size", "1", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and "--codebook-size must be at least 2" in err


def test_a_code_dimension_that_does_not_match_the_encoder_is_refused():
    q = VectorQuantizer(8, 4)
    with pytest.raises(VaelabError, match=r"code dimension D = 4.*got \[2, 3, 5, 5\]"):
        q(torch.randn(2, 3, 5, 5))


@pytest.mark.parametrize("idx, words", [
    (torch.zeros(2, 6, 7, dtype=torch.long), r"shape \(B, 7, 7\), got \[2, 6, 7\]"),
    (torch.zeros(2, 1, 7, 7, dtype=torch.long), r"shape \(B, 7, 7\), got \[2, 1, 7, 7\]"),
    (torch.full((2, 7, 7), 16, dtype=torch.long), r"code index 16 is outside .* 0\.\.15"),
    (torch.full((2, 7, 7), -1, dtype=torch.long), r"code index -1 is outside"),
    (torch.zeros(2, 7, 7), r"integer code maps .* got torch.float32"),
])
def test_bad_code_maps_are_refused(idx, words):
    model = vaelab.build("vqvae", **TINY)
    with pytest.raises(VaelabError, match=words) as exc:
        model.decode_codes(idx)
    assert "\n" not in str(exc.value)


def test_sampling_without_a_prior_says_how_to_train_one():
    model = vaelab.build("vqvae", **TINY)
    with pytest.raises(VaelabError, match=r"has no prior over its codes: train one with `vaelab train-prior RUN`"):
        model.sample(4)


def test_no_likelihood_of_8bit_data_from_a_density():
    model = vaelab.build("vqvae", **TINY, likelihood="gaussian")
    x = torch.randint(0, 256, (2, 1, 28, 28)).float() / 255
    with pytest.raises(VaelabError, match="no likelihood of 8-bit images"):
        model.code_log_likelihood(x, model.codes(x))
    grey = vaelab.build("vqvae", **TINY)
    with pytest.raises(VaelabError, match="binary images"):
        grey.code_log_likelihood(x, grey.codes(x))
    logistic = vaelab.build("vqvae", **TINY, likelihood="discretized-logistic")
    with pytest.raises(VaelabError, match="8-bit"):
        logistic.code_log_likelihood(torch.rand(2, 1, 28, 28), logistic.codes(x))


def test_images_of_the_wrong_shape_are_refused():
    with pytest.raises(VaelabError, match=r"images of shape \[1, 32, 32\] given, this model takes \[1, 28, 28\]"):
        vaelab.build("vqvae", **TINY).codes(torch.zeros(2, 1, 32, 32))


# -- training, saving, resuming ---------------------------------------------------------------------
def _train(data, out, epochs, resume=False, **model):
    return vaelab.train("vqvae", data, out, model_config={**TINY, "revive": True, "revive_after": 5, **model},
                        config={**FAST, "epochs": epochs}, resume=resume, progress=False)


def test_training_logs_usage_every_epoch_and_writes_reconstructions(mnist_small, tmp_path):
    data = mnist_small.train.subset(slice(0, 500))
    result = _train(data, tmp_path / "run", 2, ema=True, kmeans_init=True)
    lines = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    for line in lines:
        assert {"recon", "codebook", "commitment", "codebook_usage", "code_perplexity"} <= set(line["train"])
        used = line["train"]["codebook_usage"] * 16  # the share of the 16 codes used in the epoch
        assert used == pytest.approx(round(used)) and round(used) >= 2
        assert 1.5 < line["train"]["code_perplexity"] <= used + 1e-6  # no more than the codes in use
    assert (tmp_path / "run" / "reconstructions.png").is_file()
    assert not (tmp_path / "run" / "samples.png").exists()  # no prior yet: nothing to sample
    again = _train(data, tmp_path / "run", 2, resume=True, ema=True, kmeans_init=True)  # finished: no crash
    assert again.already_finished
    loaded = vaelab.load(tmp_path / "run")
    assert loaded.config.ema and loaded.quantizer.ema_count.shape == (16,)
    x = mnist_small.val.x[:20]
    assert torch.equal(loaded.codes(x), result.model.codes(x))


def test_save_load_round_trip(tmp_path):
    model = vaelab.build("vqvae", **TINY, ema=True, revive=True, kmeans_init=True)
    model.train()
    model.loss(_binary(20))
    model.eval()
    vaelab.save(model, tmp_path / "m")
    loaded = vaelab.load(tmp_path / "m")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    x = _binary(4, seed=1)
    assert torch.equal(model.codes(x), loaded.codes(x))
    assert torch.equal(model.reconstruct(x), loaded.reconstruct(x))


def test_resume_is_bit_identical(synthetic_small, tmp_path):
    """Stopped by Ctrl-C in the middle of epoch 2 (EMA, k-means start, revival, half an epoch's
    usage counts all in the checkpoint), then resumed: the same weights and figures."""
    import os
    import signal

    from vaelab.training.signals import TrainingInterrupted

    data = synthetic_small.train.subset(slice(0, 300))  # 3 steps an epoch
    settings = {"ema": True, "kmeans_init": True, "revive_after": 2}
    whole = _train(data, tmp_path / "whole", 2, **settings).model
    torch.manual_seed(0)  # what vaelab.train does before building (the run's seed)
    model = vaelab.build("vqvae", input_shape=[1, 28, 28], **{**TINY, "revive": True, **settings})
    original, steps = model.loss, []

    def loss(batch):
        result = original(batch)
        if model.training:
            steps.append(1)
            if len(steps) == 5:
                os.kill(os.getpid(), signal.SIGINT)
        return result

    model.loss = loss
    with pytest.raises(TrainingInterrupted, match="at epoch 2, step 5"):
        vaelab.train(model, data, tmp_path / "parts", config={**FAST, "epochs": 2}, progress=False)
    parts = vaelab.train("vqvae", data, tmp_path / "parts", resume=True, progress=False).model
    for k, v in whole.state_dict().items():
        assert torch.equal(v, parts.state_dict()[k]), k
    lines = [(tmp_path / run / "metrics.jsonl").read_text().splitlines()[-1] for run in ("whole", "parts")]
    assert json.loads(lines[0])["train"] == json.loads(lines[1])["train"]


def test_command_line_train_then_sample_without_a_prior(capsys, tmp_path):
    from vaelab.cli import main

    out = tmp_path / "run"
    code = main(["train", "vqvae", "--data", "digits", "--out", str(out), "--epochs", "1", "--channels", "8,8",
                 "--residual-channels", "4", "--codebook-size", "16", "--code-dim", "4", "--revive", "--threads", "1",
                 "--no-progress"])
    printed = capsys.readouterr().out
    assert code in (0, None) and "reconstructions.png" in printed and "samples.png" not in printed
    code = main(["sample", str(out), "-n", "4", "-o", str(tmp_path / "s.png")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "train one with `vaelab train-prior RUN`" in err
    assert not (tmp_path / "s.png").exists()


def test_the_logistic_refuses_training_images_that_are_not_8bit(tmp_path):
    x = torch.rand(50, 1, 28, 28)
    with pytest.raises(VaelabError, match="8-bit training images"):
        vaelab.train("vqvae", vaelab.Dataset("noise", x), tmp_path / "run", model_config={**TINY, "likelihood": "discretized-logistic"},
                     config={**FAST, "epochs": 1}, progress=False)
