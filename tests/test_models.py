"""The model contract: losses that read like the math, distributions that agree with
torch.distributions, shapes for any image size, determinism, and config checking."""
from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as td

import vaelab
from vaelab.errors import VaelabError


def _images(n=16, shape=(1, 28, 28), seed=0, binary=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g)
    return torch.bernoulli(x, generator=g) if binary else x


def _tiny(**settings):
    torch.manual_seed(settings.pop("seed", 0))
    return vaelab.build("vae", **{"hidden": [32], "latent_dim": 4, **settings})


# --- the loss ----------------------------------------------------------------------------


def test_analytic_kl_matches_monte_carlo_kl():
    model = _tiny(latent_dim=3)
    with torch.no_grad():  # a posterior far from the prior, so the check is not trivially 0 ≈ 0
        model.encoder[-1][-1].bias[:3] += torch.tensor([1.0, -2.0, 0.5])
        model.encoder[-1][-1].bias[3:] += torch.tensor([-1.0, 0.7, -2.5])
    x = _images(8)
    with torch.no_grad():
        kl = model.loss(x).terms["kl"]
        q, p = model.encode(x), model.prior()
        z = q.sample((100_000,))  # (S, B, L)
        mc = (q.log_prob(z) - p.log_prob(z)).mean(0)  # per example
        exact = td.kl_divergence(q, p)
    assert kl.item() > 1.0
    assert kl.item() == pytest.approx(mc.mean().item(), rel=0.02, abs=0.02)
    assert kl.item() == pytest.approx(exact.mean().item(), rel=1e-5)  # and sum-over-dims / mean-over-batch


def test_total_is_weighted_sum_of_terms_and_beta_weights_kl():
    x = _images(8)
    for beta in (0.0, 1.0, 4.0):
        model = _tiny(beta=beta)
        torch.manual_seed(1)
        loss = model.loss(x)
        assert set(loss.terms) == set(loss.weights) == {"recon", "kl"}
        assert loss.weights == {"recon": 1.0, "kl": beta}
        expected = sum(loss.weights[k] * loss.terms[k] for k in loss.terms)
        torch.testing.assert_close(loss.total, expected)
        assert loss.total.dim() == 0 and loss.terms["kl"] >= 0
    # the terms themselves do not depend on beta (same weights, same noise)
    a, b = _tiny(beta=1.0), _tiny(beta=4.0)
    torch.manual_seed(1)
    la = a.loss(x)
    torch.manual_seed(1)
    lb = b.loss(x)
    torch.testing.assert_close(la.terms["kl"], lb.terms["kl"])
    torch.testing.assert_close(lb.total - la.total, 3.0 * la.terms["kl"], rtol=1e-4, atol=1e-3)


def test_kl_warmup_schedule():
    model = _tiny(beta=2.0, kl_warmup_epochs=4.0)
    x = _images(4)
    for epoch, weight in [(0.0, 0.0), (1.0, 0.5), (2.0, 1.0), (3.0, 1.5), (4.0, 2.0), (10.0, 2.0), (math.inf, 2.0)]:
        model.schedule(epoch)
        loss = model.loss(x)
        assert loss.weights["kl"] == pytest.approx(weight)
        torch.testing.assert_close(loss.total, loss.terms["recon"] + weight * loss.terms["kl"])
    plain = _tiny(beta=2.0)
    plain.schedule(0.0)
    assert plain.loss(x).weights["kl"] == 2.0


def test_recon_term_is_decoder_log_prob_with_reparameterised_sample():
    """recon = −E_q[log p(x|z)] with z = μ + σ·ε, one ε per example, mean over the batch."""
    model = _tiny()
    x = _images(8)
    torch.manual_seed(5)
    loss = model.loss(x)
    q = model.encode(x)
    torch.manual_seed(5)
    z = q.mean + q.stddev * torch.randn_like(q.mean)
    torch.testing.assert_close(loss.terms["recon"], -model.decode(z).log_prob(x).mean())


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "gaussian-learned", "gaussian-real"])
def test_likelihood_log_prob_matches_torch_distributions(likelihood):
    shape = (1, 28, 28) if not likelihood.startswith("gaussian-") else (3, 8, 6)
    model = _tiny(likelihood=likelihood, sigma=0.3, input_shape=list(shape))
    x = _images(6, shape, binary=likelihood == "bernoulli")
    z = torch.randn(6, 4)
    with torch.no_grad():
        dist = model.decode(z)
        assert dist.event_shape == torch.Size(shape)
        reference = dist.log_prob(x)
        fast = model.likelihood.log_prob(model.decoder(z), x)
        torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-3)
        # the importance weights use the same density, plus log p(z) − log q(z|x)
        g = torch.Generator().manual_seed(3)
        w = model.importance_log_weights(x, 5, generator=g)
        g = torch.Generator().manual_seed(3)
        q = model.encode(x)
        eps = torch.randn(6, 5, 4, generator=g)
        zs = q.mean.unsqueeze(1) + q.stddev.unsqueeze(1) * eps  # (B, k, L)
        ref = torch.stack([model.decode(zs[:, i]).log_prob(x) + model.prior().log_prob(zs[:, i])
                           - q.log_prob(zs[:, i]) for i in range(5)], dim=1)
        torch.testing.assert_close(w, ref, rtol=1e-5, atol=1e-3)


def test_gaussian_real_reaches_values_outside_the_unit_interval_and_starts_at_the_data_mean():
    """Codes are real numbers: the mean is the decoder's output itself, not its sigmoid, and
    the output bias starts at the data's mean (a logit would not)."""
    model = _tiny(likelihood="gaussian-real", input_shape=[1, 1, 6], output_bias_from_data=True)
    codes = torch.randn(50, 1, 1, 6) * 2 - 3
    model.prepare(codes)
    last = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    torch.testing.assert_close(last.bias[:6], codes.mean(0).flatten())
    with torch.no_grad():
        out = model.decoder(torch.randn(4, 4))
        mu = model.decode(torch.randn(4, 4)).mean
    assert float(mu.min()) < 0
    m, log_sigma = out.chunk(2, dim=-3)
    x = codes[:4]
    expected = torch.distributions.Normal(m, log_sigma.clamp(-7, 2).exp()).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(model.likelihood.log_prob(out, x), expected)


def test_gaussian_likelihood_is_normalised_mse():
    """Fixed-σ Gaussian: −log p = ‖x − μ‖²/(2σ²) + D·log(σ√(2π)), constant kept."""
    model = _tiny(likelihood="gaussian", sigma=0.5)
    x = _images(3, binary=False)
    z = torch.randn(3, 4)
    with torch.no_grad():
        mu = model.decode(z).mean
        nll = -model.likelihood.log_prob(model.decoder(z), x)
    d = 28 * 28
    expected = (x - mu).square().sum((1, 2, 3)) / (2 * 0.25) + d * math.log(0.5 * math.sqrt(2 * math.pi))
    torch.testing.assert_close(nll, expected, rtol=1e-5, atol=1e-3)


# --- shapes -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 28, 20), (3, 32, 32), (1, 13, 7), (2, 1, 1), (1, 5, 30)])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian-learned"])
def test_conv_backbone_returns_exact_input_shape(shape, likelihood):
    model = _tiny(backbone="conv", channels=[8, 16], hidden=[16], input_shape=list(shape), likelihood=likelihood)
    x = _images(5, shape, binary=likelihood == "bernoulli")
    assert model.reconstruct(x).shape == x.shape
    assert model.sample(3).shape == (3, *shape)
    assert model.decode(torch.randn(5, 4)).event_shape == torch.Size(shape)
    loss = model.loss(x)
    assert torch.isfinite(loss.total)
    loss.total.backward()


def test_mlp_backbone_any_shape():
    model = _tiny(input_shape=[3, 5, 7], hidden=[16, 8])
    x = _images(4, (3, 5, 7))
    assert model.reconstruct(x).shape == x.shape
    assert model.sample(2).shape == (2, 3, 5, 7)


# --- encode / decode / determinism ------------------------------------------------------


def test_encode_mean_is_the_deterministic_code():
    model = _tiny()
    x = _images(8)
    q = model.encode(x)
    assert isinstance(q, td.Distribution) and q.event_shape == torch.Size([4])
    assert q.batch_shape == torch.Size([8])
    # the code used by reconstruct is q's mean, decoded to the mean of p(x|z)
    torch.testing.assert_close(model.reconstruct(x), model.decode(q.mean).mean)
    torch.testing.assert_close(model.encode(x).mean, q.mean)  # no sampling in encode
    assert (q.stddev > 0).all()


def test_reconstruct_and_sample_are_deterministic():
    model = _tiny()
    x = _images(8)
    torch.manual_seed(0)
    r1 = model.reconstruct(x)
    torch.manual_seed(1)
    r2 = model.reconstruct(x)
    assert torch.equal(r1, r2)
    assert ((r1 >= 0) & (r1 <= 1)).all()
    s1 = model.sample(10, generator=torch.Generator().manual_seed(7))
    torch.manual_seed(123)  # the global RNG must not matter when a generator is given
    s2 = model.sample(10, generator=torch.Generator().manual_seed(7))
    s3 = model.sample(10, generator=torch.Generator().manual_seed(8))
    assert torch.equal(s1, s2)
    assert not torch.equal(s1, s3)
    assert not r1.requires_grad and not s1.requires_grad


def test_posterior_logvar_is_clamped():
    """Extreme encoder outputs give a finite, positive σ (diffusers-style clamp)."""
    model = _tiny()
    with torch.no_grad():
        model.encoder[-1][-1].bias[4:] = 1e4
    q = model.encode(_images(2))
    assert torch.isfinite(q.stddev).all()
    with torch.no_grad():
        model.encoder[-1][-1].bias[4:] = -1e4
    q = model.encode(_images(2))
    assert (q.stddev > 0).all()
    assert torch.isfinite(model.loss(_images(2)).total)


def test_glorot_init_and_output_bias_from_data():
    model = _tiny(init="glorot")
    linear = model.encoder[-1][0]
    assert torch.equal(linear.bias, torch.zeros_like(linear.bias))
    bound = math.sqrt(6 / (linear.in_features + linear.out_features))
    assert linear.weight.abs().max() <= bound
    x = torch.full((10, 1, 28, 28), 0.25)
    x[:, :, 0, 0] = 0.0  # clipped to 1e-3 before the logit
    model.prepare(x)
    bias = model.decoder[0][-1].bias.view(1, 28, 28)
    assert bias[0, 1, 1].item() == pytest.approx(math.log(0.25 / 0.75), abs=1e-5)
    assert bias[0, 0, 0].item() == pytest.approx(math.log(1e-3 / (1 - 1e-3)), abs=1e-4)
    untouched = _tiny(output_bias_from_data=False, seed=0)
    before = untouched.decoder[0][-1].bias.clone()
    untouched.prepare(x)
    assert torch.equal(before, untouched.decoder[0][-1].bias)


# --- configs ------------------------------------------------------------------------------


@pytest.mark.parametrize("settings, message", [
    ({"latent_dim": -1}, r"latent_dim must be positive, got -1"),
    ({"latent_dim": 0}, r"latent_dim must be positive"),
    ({"hidden": [64, 0]}, r"hidden layer sizes must be positive, got \[64, 0\]"),
    ({"likelihood": "poisson"}, r"unknown likelihood 'poisson'; choose one of: bernoulli, gaussian, gaussian-learned, gaussian-real"),
    ({"beta": -0.5}, r"beta must be >= 0"),
    ({"activation": "swish"}, r"unknown activation 'swish'; choose one of: .*relu.*tanh"),
    ({"backbone": "resnet"}, r"unknown backbone 'resnet'; choose one of: mlp, conv"),
    ({"sigma": 0}, r"sigma must be > 0"),
    ({"kl_warmup_epochs": -1}, r"kl_warmup_epochs must be >= 0"),
    ({"input_shape": [1, 0, 28]}, r"input_shape must be positive"),
    ({"input_shape": [28, 28]}, r"'input_shape' must be a list of 3 values"),
    ({"latent_dim": "8"}, r"'latent_dim' must be an integer, got '8'"),
    ({"latent_dim": 2.5}, r"'latent_dim' must be an integer"),
    ({"latent_dim": True}, r"'latent_dim' must be an integer"),
    ({"hidden": "400"}, r"'hidden' must be a list of an integer"),
    ({"backbone": "conv", "channels": []}, r"conv channels must be a non-empty list"),
    ({"latent_dims": 8}, r"unknown setting\(s\) latent_dims; valid: .*latent_dim"),
])
def test_invalid_config_raises_helpful_error(settings, message):
    with pytest.raises(VaelabError, match=message):
        vaelab.build("vae", **settings)


def test_config_round_trips_and_is_frozen():
    model = _tiny(hidden=[16, 8], beta=2)
    cfg = model.config
    assert cfg.hidden == (16, 8) and cfg.beta == 2.0 and isinstance(cfg.beta, float)
    assert type(cfg).from_dict(cfg.to_dict()) == cfg
    with pytest.raises(Exception):
        cfg.latent_dim = 3


def test_unknown_model_lists_valid_names():
    with pytest.raises(VaelabError, match=r"unknown model 'nope'; choose one of: .*\bvae\b"):
        vaelab.build("nope")
    assert "vae" in vaelab.model_names()


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "gaussian-learned"])
@pytest.mark.parametrize("grey", [False, True])
def test_loss_gradients_match_the_reference_formula(likelihood, grey):
    """The training loss (which may use a fused fast path) has the same value and the same
    gradients as −E[log p(x|z)] + KL written with torch.distributions."""
    model = _tiny(likelihood=likelihood, beta=1.5)
    x = _images(8, binary=not grey)
    torch.manual_seed(2)
    loss = model.loss(x)
    grads = torch.autograd.grad(loss.total, list(model.parameters()))
    torch.manual_seed(2)
    q = model.encode(x)
    z = q.mean + q.stddev * torch.randn_like(q.mean)
    if likelihood == "bernoulli":  # td.Bernoulli accepts only 0/1; grey levels use the same formula
        logits = model.decoder(z)
        log_px = (x * logits - torch.nn.functional.softplus(logits)).sum((1, 2, 3))
    else:
        log_px = model.decode(z).log_prob(x)
    reference = -log_px.mean() + 1.5 * td.kl_divergence(q, model.prior()).mean()
    ref_grads = torch.autograd.grad(reference, list(model.parameters()))
    torch.testing.assert_close(loss.total, reference, rtol=1e-5, atol=1e-3)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cols", [784, 97, 3 * 32 * 32])
def test_softplus_row_sums_match_softplus(cols):
    from vaelab.nn.likelihoods import _softplus_row_sums

    torch.manual_seed(0)
    v = torch.randn(64, cols) * 15  # includes values far beyond softplus's linear regime
    expected = torch.nn.functional.softplus(v.double()).sum(-1)
    torch.testing.assert_close(_softplus_row_sums(v.clone(), torch.empty_like(v)).double(), expected, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("binary,dead", [(True, False), (False, False), (True, True)])
def test_linear_fast_path_equals_the_generic_bernoulli_log_prob(binary, dead):
    from vaelab.nn.likelihoods import Bernoulli

    torch.manual_seed(0)
    h = torch.relu(torch.randn(3, 1500, 32))  # more rows than one block
    if dead:  # units off for every sample are skipped; an image with all units off too
        h[:, :, 5:17] = 0
        h[1] = 0
    weight, bias = torch.randn(784, 32), torch.randn(784)
    x = torch.rand(3, 1, 28, 28)
    x = torch.bernoulli(x) if binary else x
    logits = torch.nn.functional.linear(h, weight, bias).view(3, 1500, 1, 28, 28)
    expected = Bernoulli().log_prob(logits, x.unsqueeze(1))
    torch.testing.assert_close(Bernoulli().log_prob_linear(h, weight, bias, x), expected, rtol=1e-5, atol=2e-3)
