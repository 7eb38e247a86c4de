"""The Gaussian Parzen-window log-likelihood (Breuleux et al. 2011), the estimator the GAN and
adversarial-autoencoder papers report on MNIST.

A model's samples s_1..s_N (decoded images) define a density: a Gaussian of width σ on each,

    log p̂(x) = logsumexp_i(−‖x − s_i‖² / (2σ²)) − log N − (D/2)·log(2πσ²),

σ is chosen from a grid as the one whose mean log p̂ on a validation set is highest, and the
figure is the mean log p̂ of the test images (nats per image).

**Its weakness** (Theis, van den Oord & Bethge 2016): it is not the model's log-likelihood and
is not even a bound on it. In 784 dimensions it needs far more than 10,000 samples to converge;
it rewards samples near training images (a model that stores the training set scores well)
and can rank models opposite to their true likelihood. Read it as the papers' comparison
figure, nothing more.

The sums run in blocks of test rows × samples, so 10,000 × 10,000 × 784 fits in memory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import VaelabError

SIGMA_GRID = tuple(round(0.05 + 0.01 * i, 2) for i in range(26))  # 0.05 .. 0.30
BLOCK = 1000


@dataclass(frozen=True)
class ParzenResult:
    log_likelihood: float  # mean log p̂ over the test rows (nats per image)
    stderr: float          # its standard error over the test rows
    sigma: float           # the window chosen on the validation set
    validation: dict       # σ -> mean log p̂ on the validation set
    n_samples: int
    n_test: int

    def to_dict(self) -> dict:
        return {"parzen_log_likelihood": self.log_likelihood, "stderr": self.stderr, "sigma": self.sigma,
                "n_samples": self.n_samples, "n_test": self.n_test,
                "validation": {str(k): v for k, v in self.validation.items()}}


def check_sigmas(sigmas) -> tuple[float, ...]:
    """The σ grid as floats; refused in one line when empty or not all positive and finite."""
    values = tuple(float(s) for s in sigmas)
    if not values:
        raise VaelabError("the Parzen σ grid is empty; give at least one window width, e.g. 0.1,0.2")
    bad = [s for s in values if not (s > 0 and math.isfinite(s))]
    if bad:
        raise VaelabError(f"the Parzen σ grid holds {bad[0]}, but every window width must be a positive number; "
                          "e.g. 0.05,0.1,0.2")
    return values


@torch.no_grad()
def parzen_log_densities(x: torch.Tensor, samples: torch.Tensor, sigmas) -> dict[float, torch.Tensor]:
    """log p̂(x_j) of every row of ``x`` for each window width in ``sigmas`` (σ -> tensor): the
    squared distances are computed once per block of rows and samples, for the whole grid."""
    sigmas = check_sigmas(sigmas)
    x, samples = x.flatten(1).double(), samples.flatten(1).double()
    n, d = samples.shape
    if x.shape[1] != d:
        raise VaelabError(f"Parzen: the samples have {d} dimensions, the data {x.shape[1]}; they must agree")
    out: dict[float, list] = {s: [] for s in sigmas}
    for i in range(0, len(x), BLOCK):
        dist = torch.cat([torch.cdist(x[i:i + BLOCK], samples[j:j + BLOCK]).square_()
                          for j in range(0, n, BLOCK)], 1)
        for s in sigmas:
            out[s].append(torch.logsumexp(dist * (-0.5 / s ** 2), 1))
    return {s: torch.cat(v) - math.log(n) - 0.5 * d * math.log(2 * math.pi * s ** 2) for s, v in out.items()}


def parzen_log_density(x: torch.Tensor, samples: torch.Tensor, sigma: float) -> torch.Tensor:
    """log p̂(x_j) of every row of ``x`` under Gaussian windows of width ``sigma`` on ``samples``."""
    return parzen_log_densities(x, samples, [sigma])[float(sigma)]


def parzen(samples: torch.Tensor, test: torch.Tensor, validation: torch.Tensor,
           sigmas=SIGMA_GRID) -> ParzenResult:
    """σ from ``sigmas`` by the mean log p̂ of ``validation``, then the mean log p̂ of ``test``."""
    sigmas = check_sigmas(sigmas)
    if len(samples) == 0 or len(test) == 0 or len(validation) == 0:
        raise VaelabError("the Parzen estimate needs samples, validation images and test images (one is empty)")
    scores = {s: float(v.mean()) for s, v in parzen_log_densities(validation, samples, sigmas).items()}
    best = max(scores, key=scores.get)
    log_p = parzen_log_density(test, samples, best)
    stderr = float(log_p.std() / math.sqrt(len(log_p))) if len(log_p) > 1 else 0.0
    return ParzenResult(float(log_p.mean()), stderr, best, scores, len(samples), len(test))
