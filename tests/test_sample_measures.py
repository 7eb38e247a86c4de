"""The sample-based measures of the adversarial-autoencoder comparison against closed forms on
tiny cases: MMD² with a Gaussian kernel (unbiased estimator, median-heuristic bandwidth) and
the Gaussian Parzen-window log-likelihood with σ chosen on a validation set."""
from __future__ import annotations

import math

import pytest
import torch

from vaelab.errors import VaelabError
from vaelab.evaluation.mmd import median_bandwidth, mmd2
from vaelab.evaluation.parzen import check_sigmas, parzen, parzen_log_density


def test_mmd2_matches_the_closed_form_on_two_points_each():
    x, y = torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0], [2.0]])
    k = lambda a, b: math.exp(-(a - b) ** 2 / 2)  # noqa: E731  h = 1
    expected = k(0, 1) + k(0, 2) - 2 * (k(0, 0) + k(0, 2) + k(1, 0) + k(1, 2)) / 4
    result = mmd2(x, y, bandwidth=1.0)
    assert result.mmd2 == pytest.approx(expected, abs=1e-12)
    assert result.bandwidth_rule == "given"


def test_mmd2_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3000, 2, generator=g), torch.randn(3000, 2, generator=g)
    same = mmd2(a, b)
    assert same.bandwidth_rule == "median heuristic" and same.bandwidth > 0
    assert abs(same.mmd2) < 2e-3
    shifted = [mmd2(a, b + shift, bandwidth=same.bandwidth).mmd2 for shift in (0.25, 0.5, 1.0)]
    assert shifted[0] > 10 * abs(same.mmd2) and shifted == sorted(shifted)


def test_median_bandwidth_is_the_median_pairwise_distance():
    x, y = torch.tensor([[0.0], [1.0]]), torch.tensor([[3.0]] * 2)
    # pooled distances: 1, 3, 3, 2, 2, 0 -> median of (0, 1, 2, 2, 3, 3) = 2
    assert median_bandwidth(x, y) == pytest.approx(2.0)


def test_mmd2_refuses_what_it_cannot_measure():
    with pytest.raises(VaelabError, match="at least 2 points"):
        mmd2(torch.zeros(1, 2), torch.zeros(5, 2))
    with pytest.raises(VaelabError, match="pass a bandwidth"):
        mmd2(torch.zeros(3, 2), torch.zeros(3, 2))


def test_parzen_with_one_sample_is_the_gaussian_log_density():
    s = torch.rand(1, 1, 4, 4)
    x = torch.rand(3, 1, 4, 4)
    expected = torch.distributions.Normal(s.flatten(1).double(), 0.2).log_prob(x.flatten(1).double()).sum(1)
    assert torch.allclose(parzen_log_density(x, s, 0.2), expected)


def test_parzen_is_the_mean_of_the_windows_and_sigma_comes_from_validation():
    g = torch.Generator().manual_seed(1)
    samples, val, test = (torch.randn(n, 3, generator=g) * 0.5 for n in (2500, 200, 300))
    # two samples: the log of the mean of the two Gaussian densities
    two = samples[:2].double()
    dens = torch.distributions.Normal(two, 0.3).log_prob(test[:5].double().unsqueeze(1)).sum(-1)
    assert torch.allclose(parzen_log_density(test[:5], two, 0.3), torch.logsumexp(dens, 1) - math.log(2))
    result = parzen(samples, test, val, sigmas=(0.01, 0.2, 3.0))
    assert result.sigma == max(result.validation, key=result.validation.get) == 0.2
    assert result.log_likelihood == pytest.approx(float(parzen_log_density(test, samples, 0.2).mean()))
    assert result.n_samples == 2500 and result.n_test == 300 and result.stderr > 0


def test_parzen_blocks_agree_with_one_pass(monkeypatch):
    import vaelab.evaluation.parzen as module

    g = torch.Generator().manual_seed(2)
    samples, x = torch.rand(50, 6, generator=g), torch.rand(30, 6, generator=g)
    whole = parzen_log_density(x, samples, 0.1)
    monkeypatch.setattr(module, "BLOCK", 7)
    assert torch.allclose(parzen_log_density(x, samples, 0.1), whole)


@pytest.mark.parametrize("grid, message", [
    ((), r"the Parzen σ grid is empty"),
    ((0.1, -0.2), r"the Parzen σ grid holds -0.2, but every window width must be a positive number"),
    ((0.0,), r"holds 0.0"),
    ((float("nan"),), r"holds nan"),
])
def test_bad_sigma_grids_are_refused_in_one_line(grid, message):
    with pytest.raises(VaelabError, match=message) as info:
        check_sigmas(grid)
    assert "\n" not in str(info.value)
    with pytest.raises(VaelabError, match=message):
        parzen(torch.rand(4, 2), torch.rand(3, 2), torch.rand(3, 2), sigmas=grid)
