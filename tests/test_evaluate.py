"""Measuring models as the papers did: the importance-sampled log-likelihood uses exactly
k samples with gradients off and tightens the ELBO; evaluate() reports consistent numbers;
active units count only dimensions the encoder uses.

The estimator's own tests run on synthetic data with a known answer: a linear-Gaussian VAE,
whose log p(x) and true posterior are Gaussian in closed form, and a VAE whose decoder
ignores z; the tests of evaluate() on a trained model use real MNIST."""
from __future__ import annotations

import math

import pytest
import torch

import vaelab
from vaelab.data.batch import Batch


@pytest.fixture(scope="module")
def test_x():
    """200 synthetic binary 28×28 images: strokes of a few bright rows and columns, each pixel
    flipped on with its own probability (seeded)."""
    g = torch.Generator().manual_seed(123)
    p = torch.full((200, 1, 28, 28), 0.05)
    rows, cols = torch.randint(4, 24, (200, 2), generator=g).unbind(1)
    for i in range(200):
        p[i, 0, rows[i], 4:24] = 0.9
        p[i, 0, 4:24, cols[i]] = 0.9
    return torch.bernoulli(p, generator=g)


class LinearGaussian:
    """A VAE with p(z) = N(0, I), p(x|z) = N(Wz + b, σ²I) on 6 values and a linear q(z|x) a
    little off the true posterior: log p(x) = log N(x; b, WWᵀ + σ²I) and p(z|x) are known in
    closed form, so the estimator has an exact answer and its k = 1 gap is KL(q ‖ p(z|x))."""

    def __init__(self, sigma: float = 0.5, n: int = 100):
        torch.manual_seed(0)
        self.model = vaelab.build("vae", input_shape=[1, 2, 3], hidden=[], latent_dim=2,
                                  likelihood="gaussian-real", output_bias_from_data=False).eval()
        g = torch.Generator().manual_seed(0)
        w, b = torch.randn(6, 2, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
        self.post_cov = torch.linalg.inv(torch.eye(2, dtype=torch.float64) + w.T @ w / sigma ** 2)
        self.post_map = self.post_cov @ w.T / sigma ** 2  # E[z|x] = post_map (x − b)
        self.q_map, self.q_var = 0.8 * self.post_map, 2.0 * self.post_cov.diagonal()  # q: off, and wider
        dec, enc = self.model.decoder[0][-1], self.model.encoder[-1][-1]
        with torch.no_grad():
            for layer in (dec, enc):
                layer.weight.zero_()
                layer.bias.zero_()
            dec.weight[:6], dec.bias[:6], dec.bias[6:] = w, b, math.log(sigma)  # means, then log σ
            enc.weight[:2], enc.bias[:2], enc.bias[2:] = self.q_map, -self.q_map @ b, self.q_var.log()
        self.b = b
        self.marginal = torch.distributions.MultivariateNormal(b, w @ w.T + sigma ** 2 * torch.eye(6, dtype=torch.float64))
        self.x = self.draw(n, seed=1)

    def draw(self, n: int, seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return self.marginal.sample((n,)).float().reshape(n, 1, 2, 3)

    def log_p(self, x: torch.Tensor) -> torch.Tensor:
        return self.marginal.log_prob(x.reshape(len(x), 6).double())

    def kl_to_posterior(self, x: torch.Tensor) -> torch.Tensor:
        centred = x.reshape(len(x), 6).double() - self.b
        mvn = torch.distributions.MultivariateNormal
        return torch.distributions.kl_divergence(mvn(centred @ self.q_map.T, torch.diag(self.q_var)),
                                                 mvn(centred @ self.post_map.T, self.post_cov))


@pytest.fixture(scope="module")
def lg():
    return LinearGaussian()


def test_importance_sampled_ll_tightens_to_the_closed_form_log_likelihood(lg):
    exact = lg.log_p(lg.x)
    ll = {k: vaelab.log_likelihood(lg.model, lg.x, k, seed=1) for k in (1, 10, 100, 1000)}
    for values in ll.values():
        assert values.shape == (100,) and values.dtype == torch.float64 and torch.isfinite(values).all()
    gap = {k: (v - exact).mean().item() for k, v in ll.items()}
    assert gap[1] < gap[10] < gap[100] and gap[10] < -0.05  # k = 1 is the ELBO, below log p(x)
    assert abs(gap[100]) < 0.05 and abs(gap[1000]) < 0.05  # and the bound closes on log p(x)
    # k = 1: an unbiased estimate of the ELBO, log p(x) − KL(q(z|x) ‖ p(z|x)), on more images
    x = lg.draw(2000, seed=2)
    elbo_gap = (vaelab.log_likelihood(lg.model, x, 1, seed=1) - lg.log_p(x)).mean().item()
    assert elbo_gap == pytest.approx(-lg.kl_to_posterior(x).mean().item(), abs=0.15)


def _constant_decoder_model(mu, var):
    """A VAE whose decoder ignores z and whose posterior is the same Gaussian for every x:
    then p(x) = p(x|z) for any z exactly, and KL(q||p) is known in closed form."""
    torch.manual_seed(0)
    model = vaelab.build("vae", hidden=[8], latent_dim=2)
    head = model.encoder[-1][-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([*mu, *(math.log(v) for v in var)]))
        for m in model.decoder.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.zero_()
        model.decoder[0][-1].bias.uniform_(-2, 2, generator=torch.Generator().manual_seed(1))
    return model.eval()


@pytest.mark.parametrize("k", [1, 7, 100])
def test_estimator_is_exact_when_the_posterior_is_the_prior(test_x, k):
    model = _constant_decoder_model((0.0, 0.0), (1.0, 1.0))
    x = test_x[:20]
    with torch.no_grad():
        exact = model.decode(torch.zeros(20, 2)).log_prob(x).double()
    torch.testing.assert_close(vaelab.log_likelihood(model, x, k), exact, rtol=0, atol=1e-3)


def test_estimator_converges_to_the_true_likelihood(test_x):
    mu, var = (0.4, -0.3), (1.5, 2.0)  # q wider than p: bounded importance weights
    model = _constant_decoder_model(mu, var)
    x = test_x
    with torch.no_grad():
        exact = model.decode(torch.zeros(len(x), 2)).log_prob(x).double()
    kl = sum(0.5 * (m * m + v - 1 - math.log(v)) for m, v in zip(mu, var))
    ll1 = vaelab.log_likelihood(model, x, 1, max_rows=64)
    assert (ll1 - exact).mean().item() == pytest.approx(-kl, abs=0.2)  # k = 1: the ELBO, log p(x) − KL
    ll = vaelab.log_likelihood(model, x[:20], 5000, max_rows=4096)
    torch.testing.assert_close(ll, exact[:20], rtol=0, atol=0.06)
    assert abs((ll - exact[:20]).mean().item()) < 0.01


class Spy:
    """Wraps ``model.importance_log_weights``: records the samples per point batch and
    checks that no autograd graph is being recorded."""

    def __init__(self, model):
        self.original = model.importance_log_weights
        self.calls: list[tuple[int, int, int]] = []  # (id of the point batch, points, k)
        self.seen: list[torch.Tensor] = []
        model.importance_log_weights = self

    def __call__(self, x, k, generator=None):
        assert isinstance(generator, list) and len(generator) == len(x)  # one stream per image
        assert not torch.is_grad_enabled(), "the estimator runs with gradients on"
        self.seen.append(x)  # keeps each batch alive, so its id cannot be reused by the next
        self.calls.append((id(x), len(x), k))
        out = self.original(x, k, generator=generator)
        assert not out.requires_grad
        return out

    def samples_per_batch(self) -> list[tuple[int, int]]:
        """(points, total samples) for each run of consecutive calls on one point batch."""
        groups: list[list] = []
        for ident, points, k in self.calls:
            if groups and groups[-1][0] == ident:
                assert groups[-1][1] == points
                groups[-1][2] += k
            else:
                groups.append([ident, points, k])
        return [(points, total) for _, points, total in groups]


@pytest.mark.parametrize("k, max_rows, n", [
    (7, 1000, 50),     # k below the chunk size: one call per point batch
    (1000, 64, 3),     # k far above max_rows: one point at a time, 16 chunks (15×64 + 40)
    (5, 3, 4),         # k not a multiple of the chunk size (3 + 2)
    (10, 25, 9),       # several points per batch, last batch short
    (1, 16384, 20),
])
def test_estimator_uses_exactly_k_samples(k, max_rows, n):
    torch.manual_seed(0)
    model = vaelab.build("vae", hidden=[16], latent_dim=3)
    x = torch.bernoulli(torch.full((n, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(0))
    spy = Spy(model)
    model.train()  # the estimator must not depend on the caller's mode either
    with torch.enable_grad():
        out = vaelab.log_likelihood(model, x, k, max_rows=max_rows)
    assert out.shape == (n,) and not out.requires_grad and torch.isfinite(out).all()
    batches = spy.samples_per_batch()
    assert all(total == k for _, total in batches), batches
    assert sum(points for points, _ in batches) == n
    assert all(points * m <= max_rows for _, points, m in spy.calls)  # memory stays bounded


def test_chunking_does_not_change_the_estimate(lg):
    """One seeded stream of samples per point: the chunk size only changes memory use."""
    x = lg.x[:3]
    a = vaelab.log_likelihood(lg.model, x, 1000, max_rows=64, seed=3)
    b = vaelab.log_likelihood(lg.model, x, 1000, max_rows=16384, seed=3)
    c = vaelab.log_likelihood(lg.model, x, 1000, max_rows=64, seed=4)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-3)
    assert not torch.equal(a, c)
    assert (a - c).abs().max() < 3.0  # k = 1000: a low-variance estimate


def test_k_must_be_positive(lg):
    with pytest.raises(vaelab.VaelabError, match="importance samples must be at least 1"):
        vaelab.log_likelihood(lg.model, lg.x[:2], 0)


def test_evaluate_reports_consistent_numbers(trained_vae, mnist_small):
    x = mnist_small.test.x[:200]
    result = vaelab.evaluate(trained_vae, x, nll_samples=10, binarize="dynamic")
    for key in ("elbo", "nll", "recon", "kl", "active_units", "n", "k"):
        assert key in result, key
    assert result["n"] == 200 and result["k"] == 10 and result["binarize"] == "dynamic, drawn once (seed 123)"
    assert result["elbo"] == -(result["recon"] + result["kl"])
    assert result["kl"] > 0 and result["recon"] > 0
    assert result["nll"] < -result["elbo"] + 1.0  # the IS estimate is the tighter bound
    assert result["nll"] > 0
    assert result["active_units"] == 8  # four epochs on MNIST use all eight units (activities ≈ 1 to 2)
    assert result["active_units"] == sum(a > 0.01 for a in result["unit_activity"])
    assert len(result["kl_per_dim"]) == 8
    assert sum(result["kl_per_dim"]) == pytest.approx(result["kl"], rel=1e-4)
    assert result["bits_per_dim"] == pytest.approx(result["nll"] / (784 * math.log(2)))

    without = vaelab.evaluate(trained_vae, x, binarize="dynamic")
    assert "nll" not in without and without["k"] == 0
    # the ELBO terms do not depend on whether the NLL was estimated
    assert without["elbo"] == result["elbo"]


def test_units_whose_posterior_mean_ignores_x_are_not_active(synthetic_vae, synthetic_small):
    """A known answer: silence the mean of three of the eight units (their rows of the
    encoder's last layer set to 0) and exactly those three stop counting."""
    import copy

    model = copy.deepcopy(synthetic_vae)
    last = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight[[1, 4, 6]] = 0.0  # rows 0..7 are the means, 8..15 the log-variances
    result = vaelab.evaluate(model, synthetic_small.test.x[:200], binarize="dynamic")
    assert result["active_units"] == 5
    assert [i for i, a in enumerate(result["unit_activity"]) if a < 1e-8] == [1, 4, 6]


def test_evaluate_k1_nll_is_the_elbo(synthetic_vae, synthetic_small):
    result = vaelab.evaluate(synthetic_vae, synthetic_small.test.x[:500], nll_samples=1, binarize="dynamic")
    assert -result["nll"] == pytest.approx(result["elbo"], abs=1.5)


@pytest.fixture
def small_vae():
    """An untrained VAE: what these tests check does not depend on training."""
    torch.manual_seed(0)
    return vaelab.build("vae", hidden=[16], latent_dim=3).eval()


def test_evaluate_is_deterministic_for_a_seed_and_leaves_global_rng_alone(small_vae, test_x):
    model, x = small_vae, 0.15 + 0.7 * test_x[:100]  # grey levels, so binarizing changes them
    torch.manual_seed(42)
    state = torch.get_rng_state()
    a = vaelab.evaluate(model, x, nll_samples=5, binarize="dynamic", seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(7)
    b = vaelab.evaluate(model, x, nll_samples=5, binarize="dynamic", seed=3)
    c = vaelab.evaluate(model, x, nll_samples=5, binarize="dynamic", seed=4)
    a.pop("nll_seconds"), b.pop("nll_seconds"), c.pop("nll_seconds")
    assert a == b
    assert a["elbo"] != c["elbo"] and a["nll"] != c["nll"]
    grey = vaelab.evaluate(model, x, nll_samples=5, binarize="none", seed=3)
    assert grey["elbo"] != a["elbo"]


def test_active_units_counts_only_dimensions_the_encoder_uses(test_x):
    torch.manual_seed(0)
    model = vaelab.build("vae", hidden=[32], latent_dim=6)
    head = model.encoder[-1][-1]  # Linear(32, 2 * latent): means first, then log-variances
    with torch.no_grad():
        for j in (0, 2, 4):  # these means ignore the input
            head.weight[j] = 0.0
            head.bias[j] = 0.5
        for j in (1, 3, 5):  # these vary strongly with the input
            head.weight[j] *= 20.0
    result = vaelab.evaluate(model, test_x)
    assert result["active_units"] == 3
    activity = result["unit_activity"]
    assert [activity[j] for j in (0, 2, 4)] == [0.0, 0.0, 0.0]
    assert all(activity[j] > 0.01 for j in (1, 3, 5))


def test_evaluate_runs_without_gradients(small_vae, test_x):
    model, seen = small_vae, []
    original = model.loss

    def loss(batch):
        seen.append(torch.is_grad_enabled())
        return original(batch)

    model.loss = loss
    for p in model.parameters():
        p.grad = None
    try:
        vaelab.evaluate(model, test_x[:50], batch_size=20)
    finally:
        del model.loss
    assert seen == [False, False, False]
    assert all(p.grad is None for p in model.parameters())


def test_estimate_does_not_depend_on_threads_or_chunking(lg):
    """Each image has its own seeded stream, so threads and chunk sizes change only speed."""
    x = lg.x[:6]
    one = vaelab.log_likelihood(lg.model, x, 300, max_rows=64, seed=5)
    torch.set_num_threads(2)  # point batches then run concurrently
    two = vaelab.log_likelihood(lg.model, x, 300, max_rows=64, seed=5)
    assert torch.get_num_threads() == 2  # the caller's setting is restored
    batched = vaelab.log_likelihood(lg.model, x, 300, max_rows=4096, seed=5)
    torch.testing.assert_close(one, two, rtol=0, atol=0)
    torch.testing.assert_close(one, batched, rtol=0, atol=1e-3)
    first = vaelab.log_likelihood(lg.model, x[:2], 300, max_rows=64, seed=5)
    torch.testing.assert_close(first, one[:2], rtol=0, atol=0)  # more images leave these unchanged


@pytest.mark.parametrize("threads", [1, 2])
def test_progress_reports_lines_without_changing_the_estimate(lg, capsys, threads):
    """Off a terminal: a line every 5 % with rate and ETA; the estimates stay bit-identical."""
    x = lg.x[:40]
    torch.set_num_threads(threads)
    quiet = vaelab.log_likelihood(lg.model, x, 200, max_rows=200, seed=7)
    assert capsys.readouterr().err == ""
    shown = vaelab.log_likelihood(lg.model, x, 200, max_rows=200, seed=7, progress=True)
    torch.testing.assert_close(shown, quiet, rtol=0, atol=0)
    lines = capsys.readouterr().err.splitlines()
    assert 10 <= len(lines) <= 21, lines  # one image per point batch here: 40 updates, ~20 marks
    assert lines[-1].startswith("log-likelihood (k = 200): 40/40 images (100%)")
    assert all("images/s, ETA" in line for line in lines)


def test_progress_on_a_terminal_is_a_bar_with_rate_and_eta():
    import io

    from vaelab.evaluation.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    with Progress(10, "nll", stream=stream) as bar:
        for _ in range(10):
            bar.update(1)
    text = stream.getvalue()
    assert text.startswith("\rnll:") and "0/10 [00:00<?, ?img/s]" in text, text  # tqdm: count, ETA, rate


# --- figures chosen by capability ---------------------------------------------------------


class _Completer(vaelab.Model):
    """A stand-in completion model: every hidden pixel is Bernoulli(σ(logit)) whatever is
    visible, so log p(y[target] | x) is known exactly and the estimator must return it."""

    name = "stand-in completer"

    def __init__(self):
        super().__init__(None)
        self.logit = torch.nn.Parameter(torch.tensor(-1.0))

    def _exact(self, batch):
        from vaelab.evaluation.conditional import target_mask

        log_p = torch.distributions.Bernoulli(logits=self.logit).log_prob(batch.y.round())
        return (log_p * target_mask(batch)).flatten(1).sum(1)

    def loss(self, batch):
        nll = -self._exact(batch).mean()
        return vaelab.Loss(nll, {"target_nll": nll}, {"target_nll": 1.0})

    def complete(self, batch):
        from vaelab.evaluation.conditional import target_mask

        return torch.where(target_mask(batch), torch.sigmoid(self.logit), batch.y)

    def completion_log_weights(self, batch, k, generator=None):
        assert isinstance(generator, list) and len(generator) == len(batch)
        return self._exact(batch).unsqueeze(1).expand(-1, k)


def test_completion_is_scored_on_target_pixels_only(test_x):
    from vaelab.data.derive import quadrant_mask

    images = vaelab.Dataset("synthetic", test_x[:20], torch.arange(20) % 10)
    data = quadrant_mask(images, visible=2)  # the right half is hidden
    model = _Completer()
    result = vaelab.evaluate(model, data, nll_samples=3)
    exact = model._exact(data.batch()).detach().double()
    assert result["target_cnll"] == pytest.approx(-exact.mean().item())
    assert result["target_pixels"] == 28 * 14
    assert result["target_bits_per_dim"] == pytest.approx(result["target_cnll"] / (28 * 14 * math.log(2)))
    assert result["target_mse"] > 0
    assert not {"nll", "cnll", "elbo", "celbo", "bits_per_dim", "mse"} & set(result)  # no p(x) figure
    # the given pixels are never scored: changing them changes nothing
    given = ~data.extras["target_mask"]
    changed = data.batch()
    changed = Batch(changed.x, torch.where(given, 1 - changed.y, changed.y), None, changed.extras)
    again = vaelab.evaluate(model, changed, nll_samples=3)
    assert again["target_cnll"] == pytest.approx(result["target_cnll"])
    assert again["target_mse"] == pytest.approx(result["target_mse"])


class _Classifier(vaelab.Model):
    """A stand-in q(y|x): class 1 when the image has more than 100 bright pixels, else 0."""

    name = "stand-in classifier"

    def __init__(self):
        super().__init__(None)
        self.unused = torch.nn.Parameter(torch.zeros(()))

    def loss(self, batch):
        return vaelab.Loss(self.unused * 0, {})

    def classify(self, batch):
        ink = (batch.x > 0.5).flatten(1).sum(1) > 100
        return torch.nn.functional.one_hot(ink.long(), 2).float()


def test_classification_error_counts_labelled_rows_only():
    x = torch.zeros(6, 1, 28, 28)
    x[:3, :, :, :10] = 1.0  # 280 bright pixels: class 1
    y = torch.tensor([1, 0, 1, 0, 0, 1])  # rows 1 and 5 are misclassified
    both = Batch(x, y)
    assert vaelab.evaluate(_Classifier(), both)["classification_error"] == pytest.approx(2 / 6)
    only = Batch(x, y, torch.tensor([True, False, True, True, True, False]))
    assert vaelab.evaluate(_Classifier(), only)["classification_error"] == 0.0
    assert "classification_error" not in vaelab.evaluate(_Classifier(), x)  # no labels, no error


def test_evaluate_passes_the_labels_to_the_model(small_vae, test_x):
    """A Dataset's or Batch's labels reach loss, reconstruct and the estimator; a VAE ignores
    them, so its figures are those of the bare images."""
    model, seen = small_vae, []
    original = model.importance_log_weights

    def spy(batch, k, generator=None):
        seen.append(batch.y)
        return original(batch, k, generator=generator)

    model.importance_log_weights = spy
    try:
        data = vaelab.Dataset("synthetic", test_x[:30], torch.arange(30) % 10)
        with_labels = vaelab.evaluate(model, data, nll_samples=5, binarize="dynamic")
    finally:
        del model.importance_log_weights
    assert seen and all(torch.equal(y, data.y[: len(y)]) for y in seen[:1])
    bare = vaelab.evaluate(model, data.x, nll_samples=5, binarize="dynamic")
    with_labels.pop("nll_seconds"), bare.pop("nll_seconds")
    assert with_labels == bare
