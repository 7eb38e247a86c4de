"""Classical baselines: PCA, Bernoulli and Gaussian mixtures, metrics, principal angles and
the digit classifier. Exact identities are checked on synthetic data against independent
brute-force computations; real MNIST / Frey Face subsets check that each runs on real images."""
from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
import torch

import vaelab
from vaelab.baselines import (PCA, BernoulliMixture, DigitClassifier, GaussianMixture, load_baseline,
                              mse_per_example, principal_angles, psnr, sse_per_example, train_classifier)
from vaelab.data import binarize_static
from vaelab.errors import VaelabError


def _correlated(n: int, d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.randn(d, d, generator=g, dtype=torch.float64) + 3.0


# --- PCA -----------------------------------------------------------------------------------


def test_pca_reconstruction_error_is_the_sum_of_discarded_eigenvalues():
    x = _correlated(400, 12)
    pca = PCA(5).fit(x)
    sse = sse_per_example(x, pca.reconstruct(x)).mean()
    # eigenvalues are unbiased variances (divided by N - 1); the mean SSE divides by N
    discarded = pca.eigenvalues[5:].sum() * (len(x) - 1) / len(x)
    assert torch.isclose(sse, discarded, rtol=1e-10)
    assert torch.allclose(pca.components.T @ pca.components, torch.eye(5, dtype=torch.float64), atol=1e-12)
    assert torch.isclose(pca.explained_variance_ratio.sum(), pca.eigenvalues[:5].sum() / pca.eigenvalues.sum())
    # fewer components at use time: the identity holds for every k
    for k in (1, 3):
        assert torch.isclose(sse_per_example(x, pca.reconstruct(x, k)).mean(),
                             pca.eigenvalues[k:].sum() * (len(x) - 1) / len(x), rtol=1e-10)


@pytest.mark.parametrize("n,d,k", [(200, 10, 4), (20, 50, 6)])  # covariance path and thin-SVD path
def test_pca_matches_scikit_learn(n, d, k):
    from sklearn.decomposition import PCA as SkPCA

    x = _correlated(n, d, seed=1)
    ours, sk = PCA(k).fit(x), SkPCA(k, svd_solver="full").fit(x.numpy())
    assert np.allclose(ours.explained_variance.numpy(), sk.explained_variance_, rtol=1e-8)
    assert np.allclose(ours.mean.numpy(), sk.mean_)
    signs = np.sign(np.sum(ours.components.numpy() * sk.components_.T, axis=0))
    assert np.allclose(ours.components.numpy() * signs, sk.components_.T, atol=1e-8)
    assert np.allclose(ours.encode(x).numpy() * signs, sk.transform(x.numpy()), atol=1e-8)
    assert np.allclose(ours.reconstruct(x).numpy(), sk.inverse_transform(sk.transform(x.numpy())), atol=1e-8)


def test_pca_images_roundtrip_save_load(tmp_path):
    x = torch.rand(60, 1, 4, 5)
    pca = PCA(3).fit(x)
    codes = pca.encode(x)
    assert codes.shape == (60, 3) and codes.dtype == torch.float32
    assert pca.decode(codes).shape == (60, 1, 4, 5) and pca.decode(codes[:, :2]).shape == (60, 1, 4, 5)
    pca.save(tmp_path / "pca")
    for loaded in (PCA.load(tmp_path / "pca"), load_baseline(tmp_path / "pca")):
        assert isinstance(loaded, PCA)
        assert torch.equal(loaded.encode(x), codes)
    assert sorted(p.name for p in (tmp_path / "pca").iterdir()) == ["baseline.json", "baseline.safetensors"]


def test_pca_errors_are_one_line():
    with pytest.raises(VaelabError, match="exceeds"):
        PCA(11).fit(torch.rand(30, 10))
    with pytest.raises(VaelabError, match="not fitted"):
        PCA(2).encode(torch.rand(3, 4))
    with pytest.raises(VaelabError, match="fitted on 4"):
        PCA(2).fit(torch.rand(10, 4)).encode(torch.rand(3, 5))
    with pytest.raises(VaelabError, match="n_components"):
        PCA(0)


def test_pca_on_real_mnist(mnist_small):
    pca = PCA(20).fit(mnist_small.train.x[:1000])
    ratio = float(pca.explained_variance_ratio.sum())
    assert 0.5 < ratio < 0.8  # 20 components keep about 2/3 of MNIST's variance
    assert float(psnr(mnist_small.test.x[:100], pca.reconstruct(mnist_small.test.x[:100]), reduction="mean")) > 15


# --- principal angles -----------------------------------------------------------------------


def test_principal_angles_known_cases():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(8, 3, generator=g, dtype=torch.float64)
    mixed = a @ torch.randn(3, 3, generator=g, dtype=torch.float64)  # same span, non-orthonormal basis
    assert torch.allclose(principal_angles(a, mixed), torch.zeros(3, dtype=torch.float64), atol=1e-6)
    e = torch.eye(4, dtype=torch.float64)
    assert torch.allclose(principal_angles(e[:, :2], e[:, 2:]), torch.full((2,), 90.0, dtype=torch.float64))
    for theta in (1e-6, 0.3, 37.0, 89.0):  # small angles stay accurate (sine branch)
        r = math.radians(theta)
        b = torch.stack([e[:, 0], math.cos(r) * e[:, 1] + math.sin(r) * e[:, 2]], 1)
        angles = principal_angles(e[:, :2] * 5.0, b)
        assert torch.allclose(angles, torch.tensor([0.0, theta], dtype=torch.float64), atol=1e-9, rtol=1e-9)
    assert principal_angles(e[:, :1], e[:, :3]).shape == (1,)  # min(k1, k2) angles, either order


def test_principal_angles_rejects_bad_input():
    with pytest.raises(VaelabError, match="linearly dependent"):
        principal_angles(torch.ones(5, 2), torch.eye(5)[:, :2])
    with pytest.raises(VaelabError, match="same space"):
        principal_angles(torch.eye(5)[:, :2], torch.eye(4)[:, :2])


# --- Bernoulli mixture --------------------------------------------------------------------

TINY_WEIGHTS = [0.5, 0.3, 0.2]
TINY_MEANS = [[0.9, 0.8, 0.1, 0.2], [0.1, 0.2, 0.9, 0.7], [0.5, 0.05, 0.5, 0.95]]
PATTERNS = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)))


def _tiny_mixture() -> BernoulliMixture:
    m = BernoulliMixture(3)
    m.weights, m.means, m.shape = torch.tensor(TINY_WEIGHTS, dtype=torch.float64), torch.tensor(TINY_MEANS, dtype=torch.float64), (4,)
    return m


def _brute_log_prob(weights, means, x) -> float:
    """log sum_k pi_k prod_d mu^x (1 - mu)^(1 - x), one example, plain Python floats."""
    total = 0.0
    for w, mu in zip(weights, means):
        p = w
        for xd, md in zip(x, mu):
            p *= md if xd else 1 - md
        total += p
    return math.log(total)


def test_bernoulli_log_prob_matches_brute_force_and_normalises():
    m = _tiny_mixture()
    got = m.log_prob(PATTERNS)
    want = torch.tensor([_brute_log_prob(TINY_WEIGHTS, TINY_MEANS, p.tolist()) for p in PATTERNS], dtype=torch.float64)
    assert torch.allclose(got, want, atol=1e-12)
    assert math.isclose(float(got.exp().sum()), 1.0, abs_tol=1e-12)


def test_bernoulli_samples_follow_the_model():
    m = _tiny_mixture()
    x, comp = m.sample(20000, seed=3, return_components=True)
    assert x.shape == (20000, 4) and set(x.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(x, m.sample(20000, seed=3))  # seeded
    codes = (x * torch.tensor([8.0, 4.0, 2.0, 1.0])).sum(1).long()  # pattern index as in PATTERNS
    freq = torch.bincount(codes, minlength=16).double() / len(x)
    assert (freq - m.log_prob(PATTERNS).exp()).abs().max() < 0.015  # sd of each frequency <= 0.0035
    assert (torch.bincount(comp, minlength=3).double() / len(x) - m.weights).abs().max() < 0.015


def _tiny_data(n: int = 600) -> torch.Tensor:
    return _tiny_mixture().sample(n, seed=11)


def _map_objective(weights: np.ndarray, means: np.ndarray, x: np.ndarray, prior: float, weight_prior: float) -> float:
    """(sum_n log p(x_n) + c sum log mu(1 - mu) + a sum log pi) / N, computed independently."""
    lik = np.exp(x @ np.log(means).T + (1 - x) @ np.log1p(-means).T) @ weights
    return (np.log(lik).sum() + prior * np.sum(np.log(means) + np.log1p(-means)) + weight_prior * np.log(weights).sum()) / len(x)


def test_em_never_decreases_the_log_likelihood_when_the_priors_vanish():
    """With (almost) no prior, EM is maximum likelihood: the data log-likelihood itself never drops."""
    x = binarize_static(torch.rand(400, 40) ** 2, 3)
    m = BernoulliMixture(8, prior=1e-9, weight_prior=0.0, init="random", seed=2).fit(x, max_iter=60, tol=-math.inf)
    ll = [r["log_likelihood"] for r in m.history]
    assert ll[-1] > ll[0] + 0.1  # it learned something
    assert all(b >= a - 1e-9 * abs(a) for a, b in zip(ll, ll[1:]))


@pytest.mark.parametrize("init", ["kmeans++", "random"])
def test_em_never_decreases_the_map_objective(init):
    x = binarize_static(torch.rand(300, 30) ** 2, 0)
    seen = []
    m = BernoulliMixture(6, prior=0.5, weight_prior=1.0, init=init, seed=1).fit(x, max_iter=40, tol=-math.inf, callback=seen.append)
    objective = [r["objective"] for r in m.history]
    assert seen == m.history
    assert len(objective) == 41 and not m.converged
    assert all(b >= a - 1e-12 * abs(a) for a, b in zip(objective, objective[1:]))
    last = _map_objective(m.weights.numpy(), m.means.numpy(), x.double().numpy(), 0.5, 1.0)
    assert math.isclose(objective[-1], last, rel_tol=1e-12)  # the recorded objective is the stated one
    assert math.isclose(m.history[-1]["log_likelihood"], float(m.log_prob(x).mean()), rel_tol=1e-12)


def test_em_fixed_point_is_a_map_optimum():
    x = _tiny_data()
    prior, weight_prior = 1.0, 1.0
    m = BernoulliMixture(3, prior=prior, weight_prior=weight_prior, seed=0).fit(x, max_iter=3000, tol=1e-13)
    assert m.converged
    w, mu, xn = m.weights.numpy(), m.means.numpy(), x.double().numpy()
    # One EM step written out by hand leaves the parameters where they are.
    joint = np.array([[math.log(w[k]) + sum(math.log(mu[k, d]) if xn[n, d] else math.log(1 - mu[k, d]) for d in range(4))
                       for k in range(3)] for n in range(len(xn))])
    resp = np.exp(joint - joint.max(1, keepdims=True))
    resp /= resp.sum(1, keepdims=True)
    nk = resp.sum(0)
    assert np.allclose((resp.T @ xn + prior) / (nk[:, None] + 2 * prior), mu, atol=1e-6)
    assert np.allclose((nk + weight_prior) / (len(xn) + 3 * weight_prior), w, atol=1e-6)
    # No nearby parameters (perturbed in logit / log-weight space) score higher.
    best = _map_objective(w, mu, xn, prior, weight_prior)
    rng = np.random.default_rng(0)
    for _ in range(50):
        mu2 = 1 / (1 + np.exp(-(np.log(mu / (1 - mu)) + 1e-3 * rng.standard_normal(mu.shape))))
        w2 = np.exp(np.log(w) + 1e-3 * rng.standard_normal(3))
        assert _map_objective(w2 / w2.sum(), mu2, xn, prior, weight_prior) <= best + 1e-12


def test_em_recovers_a_well_separated_mixture():
    x = _tiny_mixture().sample(6000, seed=5)
    m = BernoulliMixture(3, prior=0.01, weight_prior=0.0, seed=0).fit(x, max_iter=500, tol=1e-10)
    order = m.weights.argsort(descending=True)
    assert torch.allclose(m.weights[order], torch.tensor(TINY_WEIGHTS, dtype=torch.float64), atol=0.05)
    assert torch.allclose(m.means[order], torch.tensor(TINY_MEANS, dtype=torch.float64), atol=0.08)


def test_bernoulli_mixture_on_real_mnist(mnist_small, tmp_path):
    x = binarize_static(mnist_small.train.x[:1000], 0)
    test = binarize_static(mnist_small.test.x[:200], 123)
    m = BernoulliMixture(10, seed=0, block_size=300).fit(x, max_iter=15)
    assert m.means.min() > 0 and m.means.max() < 1
    ll = m.log_prob(test)
    assert ll.shape == (200,) and torch.isfinite(ll).all()
    assert -260 < float(ll.mean()) < -130  # 10 components: well below the 500-component -137.6
    assert m.sample(4, seed=0).shape == (4, 1, 28, 28) and m.mean_images.shape == (10, 1, 28, 28)
    assert torch.allclose(m.responsibilities(test[:5]).sum(1), torch.ones(5, dtype=torch.float64))
    m.save(tmp_path / "bmm")
    loaded = load_baseline(tmp_path / "bmm")
    assert isinstance(loaded, BernoulliMixture) and loaded.history == m.history
    assert torch.equal(loaded.log_prob(test), ll)


def test_bernoulli_mixture_errors():
    with pytest.raises(VaelabError, match="binary"):
        BernoulliMixture(2).fit(torch.rand(10, 4))
    with pytest.raises(VaelabError, match="prior"):
        BernoulliMixture(2, prior=0.0)
    with pytest.raises(VaelabError, match="cannot fit"):
        BernoulliMixture(20).fit(torch.ones(5, 4))
    with pytest.raises(VaelabError, match="not fitted"):
        BernoulliMixture(2).log_prob(torch.ones(2, 4))


def test_loading_the_wrong_kind_is_refused(tmp_path):
    _tiny_mixture().save(tmp_path / "m")
    with pytest.raises(VaelabError, match="not 'pca'"):
        PCA.load(tmp_path / "m")
    with pytest.raises(VaelabError, match="no baseline.json"):
        load_baseline(tmp_path)


# --- Gaussian mixture ---------------------------------------------------------------------


def _brute_gaussian_mixture(weights, means, covs, x) -> np.ndarray:
    out = []
    for row in x:
        total = 0.0
        for w, mu, cov in zip(weights, means, covs):
            cov = np.diag(cov) if cov.ndim == 1 else cov
            diff = row - mu
            total += w * math.exp(-0.5 * diff @ np.linalg.inv(cov) @ diff) / math.sqrt(np.linalg.det(2 * math.pi * cov))
        out.append(math.log(total))
    return np.array(out)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_gaussian_mixture_log_prob_matches_brute_force(covariance_type, tmp_path):
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal([0, 0, 0], [1, 0.5, 0.2], (150, 3)), rng.normal([4, 1, -2], [0.3, 1, 1], (100, 3))])
    x[:, 1] += 0.8 * x[:, 0]  # correlated, so full and diagonal differ
    m = GaussianMixture(2, covariance_type, reg_covar=1e-6, seed=0).fit(torch.from_numpy(x))
    got = m.log_prob(torch.from_numpy(x)).numpy()
    want = _brute_gaussian_mixture(m.weights.numpy(), m.means.numpy(), m.covariances.numpy(), x)
    assert np.allclose(got, want, atol=1e-10)
    sk = SkGaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(x)  # same seed, same fit
    assert np.allclose(got, sk.score_samples(x), atol=1e-8)
    draws = m.sample(4000, seed=1)
    assert draws.shape == (4000, 3) and torch.equal(draws, m.sample(4000, seed=1))
    assert np.allclose(draws.double().mean(0).numpy(), (m.weights[:, None] * m.means).sum(0).numpy(), atol=0.1)
    m.save(tmp_path / "gmm")
    loaded = load_baseline(tmp_path / "gmm")
    assert isinstance(loaded, GaussianMixture) and torch.equal(loaded.log_prob(torch.from_numpy(x)), m.log_prob(torch.from_numpy(x)))


def test_gaussian_mixture_errors():
    with pytest.raises(VaelabError, match="covariance_type"):
        GaussianMixture(2, "spherical")
    with pytest.raises(VaelabError, match="tol"):
        GaussianMixture(2, tol=-1.0)
    with pytest.raises(VaelabError, match="NaN"):
        GaussianMixture(1).fit(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))
    with pytest.raises(VaelabError, match="not fitted"):
        GaussianMixture(1).log_prob(torch.zeros(2, 2))


def test_gaussian_mixture_on_frey_faces(data_dir):
    if not (data_dir / "frey-faces").is_dir():
        pytest.skip("Frey Face not present in the shared data directory")
    train = vaelab.load_dataset("frey-faces", "train", data_dir=data_dir).x[:600]
    test = vaelab.load_dataset("frey-faces", "test", data_dir=data_dir).x[:50]
    m = GaussianMixture(3, "diag", reg_covar=1e-3, seed=0, max_iter=30).fit(train)
    ll = m.log_prob(test)
    assert ll.shape == (50,) and torch.isfinite(ll).all()
    assert m.sample(2, seed=0).shape == (2, 1, 28, 20)


# --- metrics ------------------------------------------------------------------------------


def test_psnr_and_squared_errors():
    x, y = torch.zeros(3, 1, 2, 2), torch.full((3, 1, 2, 2), 0.1)
    y[2] = 0.0
    assert torch.allclose(sse_per_example(x, y), torch.tensor([0.04, 0.04, 0.0], dtype=torch.float64))
    assert torch.allclose(mse_per_example(x, y), torch.tensor([0.01, 0.01, 0.0], dtype=torch.float64))
    values = psnr(x, y)
    assert torch.allclose(values[:2], torch.tensor([20.0, 20.0], dtype=torch.float64)) and math.isinf(values[2])
    assert torch.isclose(psnr(x[:2] * 255, y[:2] * 255, data_range=255.0, reduction="mean"), torch.tensor(20.0, dtype=torch.float64))
    with pytest.raises(VaelabError, match="same shape"):
        psnr(x, y[:2])
    with pytest.raises(VaelabError, match="reduction"):
        psnr(x, y, reduction="sum")


# --- digit classifier ---------------------------------------------------------------------


def test_classifier_learns_digits_and_saves(mnist_small, tmp_path):
    train, test = mnist_small.train, mnist_small.test
    clf = train_classifier(train.x, train.y, epochs=4, hidden=(64,), lr=3e-3, seed=0)
    accuracy = clf.accuracy(test.x, test.y)
    assert accuracy > 0.7  # chance is 0.1; 2000 images and 4 epochs give about 0.85
    report = clf.confidence(test.x)
    assert sum(report["histogram"]) == len(test.x) and len(report["histogram"]) == 10
    assert report["mean_max_prob"] > 0.6 and 1.0 <= report["score"] <= 10.0
    clf.save(tmp_path / "clf")
    loaded = DigitClassifier.load(tmp_path / "clf")
    assert torch.equal(loaded.predict_proba(test.x[:20]), clf.predict_proba(test.x[:20]))
    assert loaded.history == clf.history
    again = train_classifier(train.x[:300], train.y[:300], epochs=1, hidden=(16,), seed=4)
    same = train_classifier(train.x[:300], train.y[:300], epochs=1, hidden=(16,), seed=4)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), same.state_dict().values()))


def test_classifier_trains_through_the_trainer_and_leaves_the_callers_random_streams(mnist_small):
    def draws():
        return float(torch.rand(())), float(np.random.rand()), random.random()

    train = mnist_small.train
    for seed_all in (torch.manual_seed, np.random.seed, random.seed):
        seed_all(1)
    expected = draws()
    for seed_all in (torch.manual_seed, np.random.seed, random.seed):
        seed_all(1)
    clf = train_classifier(train.x[:400], train.y[:400], epochs=3, hidden=(32,), lr=3e-3, seed=3)
    assert draws() == expected  # the trainer seeded every stream; the caller's came back
    assert [h["epoch"] for h in clf.history] == [1, 2, 3]
    assert clf.history[-1]["loss"] < clf.history[0]["loss"] and all(h["seconds"] > 0 for h in clf.history)
    assert not clf.training and next(clf.parameters()).device.type == "cpu"


def test_confidence_of_a_clueless_classifier_is_exact():
    clf = DigitClassifier((1, 4, 4), hidden=(3,))
    with torch.no_grad():
        for p in clf.parameters():
            p.zero_()  # every logit 0: uniform predictions
    report = clf.confidence(torch.rand(7, 1, 4, 4))
    assert math.isclose(report["mean_max_prob"], 0.1, rel_tol=1e-6)
    assert math.isclose(report["mean_entropy"], math.log(10), rel_tol=1e-6)
    assert math.isclose(report["score"], 1.0, rel_tol=1e-6)
    with pytest.raises(VaelabError, match="images must be"):
        clf.confidence(torch.rand(2, 1, 5, 5))
