"""Mixture models: the classical density baselines for binary and continuous images.

:class:`BernoulliMixture` is the reference density model for binarized MNIST (the NADE
paper reports about -137.6 nats on the test set for 500 components); it is fitted by EM
in torch, float64 throughout, one pass over the data per iteration in blocks of examples
with two matrix products per block, so 60000×784 with 500 components fits on a laptop.
:class:`GaussianMixture` fits with scikit-learn and evaluates densities in torch from the
fitted parameters, for continuous pixels such as Frey Face.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

import torch

from ..errors import VaelabError, brief
from ..words import count
from ._store import read_baseline, require, rows, save_baseline

_F64 = torch.float64


def _check_int(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise VaelabError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


class BernoulliMixture:
    """Mixture of factorised Bernoullis, p(x) = sum_k pi_k prod_d mu_kd^x_d (1 - mu_kd)^(1 - x_d).

    Fitted by EM with conjugate priors (MAP, not maximum likelihood), which is what keeps
    every log mu and log(1 - mu) finite on pixels that one component never sees switched on:

    - ``prior`` c > 0: a Beta(1 + c, 1 + c) prior on every mean, so the M-step is
      mu_kd = (sum_n r_nk x_nd + c) / (N_k + 2c). The default c = 1 is Laplace's add-one
      rule: no mean is ever 0 or 1, and a component with no data falls back to 0.5.
    - ``weight_prior`` a >= 0: a Dirichlet(1 + a) prior on the weights,
      pi_k = (N_k + a) / (N + K a); with a > 0 no weight is ever 0 either.

    EM never decreases the MAP objective ``log p(X | theta) + log p(theta)`` (up to the
    priors' constants); ``history`` records it and the plain log-likelihood per iteration,
    both as nats per example. The log-likelihood alone may dip slightly when the prior
    pulls the means. Responsibilities are computed in log space with log-sum-exp.

    ``init="kmeans++"`` (default) picks K centres by k-means++ seeding on a random subset of
    ``init_subset`` examples, assigns every example to its nearest centre and starts from
    that M-step; ``init="random"`` starts from Dirichlet(1) random responsibilities (slow
    to break symmetry, kept for comparison). Both draw from a generator seeded by ``seed``.
    """

    KIND = "bernoulli-mixture"
    INITS = ("kmeans++", "random")

    def __init__(self, n_components: int = 500, prior: float = 1.0, weight_prior: float = 1.0,
                 init: str = "kmeans++", seed: int = 0, block_size: int = 10000, init_subset: int = 10000):
        self.n_components = _check_int("n_components", n_components)
        if not (isinstance(prior, (int, float)) and not isinstance(prior, bool) and math.isfinite(prior) and prior > 0):
            raise VaelabError(f"prior must be a positive number of pseudo-counts (1.0 = Laplace smoothing), got {prior!r}")
        if not (isinstance(weight_prior, (int, float)) and not isinstance(weight_prior, bool) and math.isfinite(weight_prior) and weight_prior >= 0):
            raise VaelabError(f"weight_prior must be a number >= 0 (0 = maximum-likelihood weights), got {weight_prior!r}")
        if init not in self.INITS:
            raise VaelabError(f"unknown init {init!r}; choose one of {', '.join(self.INITS)}")
        self.prior, self.weight_prior, self.init = float(prior), float(weight_prior), init
        self.seed = _check_int("seed", seed, 0)
        self.block_size = _check_int("block_size", block_size)
        self.init_subset = _check_int("init_subset", init_subset)
        self.weights: torch.Tensor | None = None  # (K,) float64
        self.means: torch.Tensor | None = None  # (K, D) float64, strictly inside (0, 1)
        self.shape: tuple[int, ...] | None = None
        self.history: list[dict] = []
        self.converged = False
        self.fit_seconds = 0.0
        self.n_samples = 0

    # --- fitting ------------------------------------------------------------------------

    def fit(self, x, max_iter: int = 100, tol: float = 1e-3, callback: Callable[[dict], None] | None = None) -> BernoulliMixture:
        """Run EM on binary ``x`` (N, D) or (N, C, H, W) until the MAP objective gains less
        than ``tol`` nats per example in one iteration, or ``max_iter`` M-steps.

        ``history`` gets one record per E-step (``iteration``, ``log_likelihood``,
        ``objective``, ``seconds``), the last one for the returned parameters; ``callback``
        is called with each record (e.g. to print progress).
        """
        data = rows(x)
        max_iter = _check_int("max_iter", max_iter, 0)
        if not isinstance(tol, (int, float)) or isinstance(tol, bool) or math.isnan(tol):
            raise VaelabError(f"tol must be a number of nats per example (e.g. 1e-3), got {tol!r}")
        n, d = data.shape
        if n < self.n_components:
            raise VaelabError(f"{count(n, 'example')} cannot fit {count(self.n_components, 'component')}; use fewer components or more data")
        self._check_binary(data)
        self.shape, self.n_samples, self.history = tuple(torch.as_tensor(x).shape[1:]), n, []
        start = time.perf_counter()
        generator = torch.Generator().manual_seed(self.seed)
        self._m_step(*(self._init_kmeanspp(data, generator) if self.init == "kmeans++" else self._init_random(data, generator)))
        previous = -math.inf
        for iteration in range(max_iter + 1):
            total, counts, sums = self._e_step(data)
            objective = (total + self._log_prior()) / n
            record = {"iteration": iteration, "log_likelihood": total / n, "objective": objective,
                      "seconds": time.perf_counter() - start}
            self.history.append(record)
            if callback is not None:
                callback(record)
            self.converged = objective - previous < tol
            if self.converged or iteration == max_iter:
                break
            previous = objective
            self._m_step(counts, sums)
        self.fit_seconds = time.perf_counter() - start
        return self

    def _check_binary(self, data: torch.Tensor) -> None:
        for i in range(0, data.shape[0], self.block_size):
            block = data[i:i + self.block_size]
            if ((block != 0) & (block != 1)).any():
                raise VaelabError("the Bernoulli mixture needs binary (0/1) pixels; binarize first, "
                                  "e.g. vaelab.data.binarize_static(x, seed)")

    def _blocks(self, data: torch.Tensor):
        for i in range(0, data.shape[0], self.block_size):
            yield data[i:i + self.block_size].to(_F64)

    def _log_joint(self, block: torch.Tensor) -> torch.Tensor:
        """log pi_k + log p(x | k) for a block (B, K): x·logit(mu)^T + sum_d log(1 - mu)."""
        log_not = torch.log1p(-self.means)
        logit = torch.log(self.means) - log_not
        return torch.addmm(torch.log(self.weights) + log_not.sum(1), block, logit.T)

    def _e_step(self, data: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        """Total log-likelihood, and the expected counts N_k and sums S_k = sum_n r_nk x_n."""
        k, d = self.means.shape
        counts, sums, total = torch.zeros(k, dtype=_F64), torch.zeros(k, d, dtype=_F64), 0.0
        for block in self._blocks(data):
            joint = self._log_joint(block)
            lse = torch.logsumexp(joint, 1, keepdim=True)
            resp = joint.sub_(lse).exp_()
            counts += resp.sum(0)
            sums.addmm_(resp.T, block)
            total += float(lse.sum())
        return total, counts, sums

    def _m_step(self, counts: torch.Tensor, sums: torch.Tensor) -> None:
        a, c = self.weight_prior, self.prior
        self.weights = (counts + a) / (counts.sum() + a * counts.shape[0])
        self.means = (sums + c) / (counts[:, None] + 2 * c)

    def _log_prior(self) -> float:
        """log p(theta) up to a constant: c sum log mu (1 - mu) + a sum log pi."""
        value = self.prior * float((torch.log(self.means) + torch.log1p(-self.means)).sum())
        if self.weight_prior > 0:
            value += self.weight_prior * float(torch.log(self.weights).sum())
        return value

    def _init_kmeanspp(self, data: torch.Tensor, generator: torch.Generator):
        """k-means++ seeding on a subset, then a hard assignment of every example to its
        nearest centre. For binary pixels the squared distance is the Hamming distance
        |x| + |c| - 2 x·c, and x·c only reads the subset's rows for the centre's on-pixels
        (kept transposed), a fraction of a full matrix-vector product."""
        n, k = data.shape[0], self.n_components
        subset = data[torch.randperm(n, generator=generator)[: max(k, min(n, self.init_subset))]].to(torch.float32)
        by_pixel, ones = subset.T.contiguous(), subset.sum(1)

        def distance(centre: torch.Tensor) -> torch.Tensor:
            on = centre.bool()
            return ones + float(on.sum()) - 2 * by_pixel[on].sum(0)

        centres = torch.empty(k, subset.shape[1], dtype=torch.float32)
        centres[0] = subset[int(torch.randint(len(subset), (1,), generator=generator))]
        dist = distance(centres[0])
        for j in range(1, k):
            if float(dist.sum()) > 0:
                pick = int(torch.multinomial(dist, 1, generator=generator))
            else:  # fewer distinct examples than components: repeat a random one
                pick = int(torch.randint(len(subset), (1,), generator=generator))
            centres[j] = subset[pick]
            torch.minimum(dist, distance(centres[j]), out=dist)
        counts, sums = torch.zeros(k, dtype=_F64), torch.zeros(k, subset.shape[1], dtype=_F64)
        centre_ones = centres.sum(1)
        for block in self._blocks(data):
            nearest = (centre_ones - 2 * block.to(torch.float32) @ centres.T).argmin(1)
            counts += torch.bincount(nearest, minlength=k).to(_F64)
            sums.index_add_(0, nearest, block)
        return counts, sums

    def _init_random(self, data: torch.Tensor, generator: torch.Generator):
        """Dirichlet(1) responsibilities per example (normalised exponentials)."""
        k, d = self.n_components, data.shape[1]
        counts, sums = torch.zeros(k, dtype=_F64), torch.zeros(k, d, dtype=_F64)
        for block in self._blocks(data):
            resp = -torch.log(torch.rand(block.shape[0], k, dtype=_F64, generator=generator).clamp_min_(1e-300))
            resp /= resp.sum(1, keepdim=True)
            counts += resp.sum(0)
            sums.addmm_(resp.T, block)
        return counts, sums

    # --- using a fitted mixture ---------------------------------------------------------

    def _check_fitted(self):
        if self.means is None:
            raise VaelabError("this mixture is not fitted; call fit(x) or load a saved one first")

    def log_prob(self, x) -> torch.Tensor:
        """Exact log p(x) in nats for each binary example (N,), float64."""
        self._check_fitted()
        data = rows(x)
        if data.shape[1] != self.means.shape[1]:
            raise VaelabError(f"x has {data.shape[1]} pixels per example but the mixture was fitted on {self.means.shape[1]}")
        self._check_binary(data)
        return torch.cat([torch.logsumexp(self._log_joint(block), 1) for block in self._blocks(data)])

    def responsibilities(self, x) -> torch.Tensor:
        """Posterior p(k | x) for each binary example (N, K), float64."""
        self._check_fitted()
        data = rows(x)
        self._check_binary(data)
        return torch.cat([torch.softmax(self._log_joint(block), 1) for block in self._blocks(data)])

    def sample(self, n: int, seed: int = 0, return_components: bool = False):
        """``n`` binary images (n, *shape) float32, drawn with a generator seeded by ``seed``;
        with ``return_components`` also the component index of each draw."""
        self._check_fitted()
        n = _check_int("n", n)
        generator = torch.Generator().manual_seed(_check_int("seed", seed, 0))
        components = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        images = torch.bernoulli(self.means[components], generator=generator).to(torch.float32).reshape((n,) + self.shape)
        return (images, components) if return_components else images

    @property
    def mean_images(self) -> torch.Tensor:
        """Component means as images (K, *shape), float32, for plotting."""
        self._check_fitted()
        return self.means.to(torch.float32).reshape((-1,) + self.shape)

    # --- persistence ---------------------------------------------------------------------

    def save(self, directory: str | os.PathLike):
        """Write ``baseline.json`` + ``baseline.safetensors`` into ``directory`` (atomically)."""
        self._check_fitted()
        config = {"n_components": self.n_components, "prior": self.prior, "weight_prior": self.weight_prior,
                  "init": self.init, "seed": self.seed, "block_size": self.block_size, "init_subset": self.init_subset,
                  "shape": list(self.shape), "n_samples": self.n_samples, "converged": self.converged,
                  "fit_seconds": self.fit_seconds, "history": self.history}
        return save_baseline(directory, self.KIND, config, {"weights": self.weights, "means": self.means})

    @classmethod
    def load(cls, directory: str | os.PathLike) -> BernoulliMixture:
        _, config, tensors = read_baseline(directory, cls.KIND)
        return cls._from_saved(config, tensors, directory)

    @classmethod
    def _from_saved(cls, config: dict, tensors: dict, where) -> BernoulliMixture:
        require(tensors, ("weights", "means"), where)
        try:
            model = cls(**{k: config[k] for k in ("n_components", "prior", "weight_prior", "init", "seed", "block_size", "init_subset")})
            model.shape, model.n_samples = tuple(int(s) for s in config["shape"]), int(config["n_samples"])
            model.converged, model.fit_seconds = bool(config["converged"]), float(config["fit_seconds"])
            model.history = list(config["history"])
        except (KeyError, TypeError, ValueError) as exc:
            raise VaelabError(f"{where}: Bernoulli mixture settings are incomplete ({brief(exc, typed=True)}); re-save the baseline") from None
        model.weights, model.means = tensors["weights"].to(_F64), tensors["means"].to(_F64)
        if model.means.shape != (model.n_components, math.prod(model.shape)) or model.weights.shape != (model.n_components,):
            raise VaelabError(f"{where}: arrays do not match the settings (means {tuple(model.means.shape)}); re-save the baseline")
        return model


class GaussianMixture:
    """Gaussian mixture for continuous data (e.g. Frey Face pixels in [0, 1]).

    Fitted by scikit-learn's EM (``covariance_type`` "full" or "diag", ``reg_covar`` added
    to every variance so no covariance is singular, ``seed`` fixes k-means init); densities
    and samples are computed in torch from the fitted parameters, so a saved mixture loads
    without scikit-learn objects or pickles. ``log_prob`` is a log *density* in nats per
    example: it can be positive, and for 8-bit pixels it is not a discrete likelihood.
    """

    KIND = "gaussian-mixture"
    COVARIANCE_TYPES = ("full", "diag")

    def __init__(self, n_components: int = 10, covariance_type: str = "full", reg_covar: float = 1e-6,
                 seed: int = 0, max_iter: int = 100, tol: float = 1e-3, n_init: int = 1):
        self.n_components = _check_int("n_components", n_components)
        if covariance_type not in self.COVARIANCE_TYPES:
            raise VaelabError(f"unknown covariance_type {covariance_type!r}; choose one of {', '.join(self.COVARIANCE_TYPES)}")
        if not (isinstance(reg_covar, (int, float)) and not isinstance(reg_covar, bool) and reg_covar >= 0):
            raise VaelabError(f"reg_covar must be a number >= 0 added to each variance, got {reg_covar!r}")
        self.covariance_type, self.reg_covar = covariance_type, float(reg_covar)
        self.seed = _check_int("seed", seed, 0)
        self.max_iter, self.n_init = _check_int("max_iter", max_iter), _check_int("n_init", n_init)
        if not (isinstance(tol, (int, float)) and not isinstance(tol, bool) and tol >= 0):
            raise VaelabError(f"tol must be a number >= 0 (the lower-bound gain that stops EM), got {tol!r}")
        self.tol = float(tol)
        self.weights: torch.Tensor | None = None  # (K,)
        self.means: torch.Tensor | None = None  # (K, D)
        self.covariances: torch.Tensor | None = None  # (K, D, D) full or (K, D) diag
        self.shape: tuple[int, ...] | None = None
        self.converged, self.n_iter, self.fit_seconds, self.n_samples = False, 0, 0.0, 0

    def fit(self, x) -> GaussianMixture:
        """Fit to ``x`` (N, D) or (N, C, H, W); returns ``self``."""
        from sklearn.mixture import GaussianMixture as SkGaussianMixture

        data = rows(x).to(_F64)
        if data.shape[0] < self.n_components:
            raise VaelabError(f"{count(data.shape[0], 'example')} cannot fit {count(self.n_components, 'component')}; use fewer components or more data")
        if not torch.isfinite(data).all():
            raise VaelabError("x holds NaN or infinite values; the Gaussian mixture needs finite data")
        start = time.perf_counter()
        sk = SkGaussianMixture(self.n_components, covariance_type=self.covariance_type, reg_covar=self.reg_covar,
                               max_iter=self.max_iter, tol=self.tol, n_init=self.n_init, random_state=self.seed)
        try:
            sk.fit(data.numpy())
        except ValueError as exc:  # scikit-learn's ill-defined covariance: a collapsed component
            raise VaelabError(f"Gaussian mixture fit failed ({brief(exc)}); increase reg_covar "
                              f"(now {self.reg_covar:g}) or use fewer components") from None
        self.fit_seconds = time.perf_counter() - start
        self.weights, self.means = torch.from_numpy(sk.weights_).to(_F64), torch.from_numpy(sk.means_).to(_F64)
        self.covariances = torch.from_numpy(sk.covariances_).to(_F64)
        self.converged, self.n_iter = bool(sk.converged_), int(sk.n_iter_)
        self.shape, self.n_samples = tuple(torch.as_tensor(x).shape[1:]), data.shape[0]
        self._prepare()
        return self

    def _prepare(self):
        """Cholesky factors of the covariances, used for both densities and samples."""
        if self.covariance_type == "full":
            chol, info = torch.linalg.cholesky_ex(self.covariances)
            if int(info.max()) > 0:
                raise VaelabError(f"a covariance is not positive definite; refit with a larger reg_covar (now {self.reg_covar:g})")
            self._chol = chol
        else:
            if float(self.covariances.min()) <= 0:
                raise VaelabError(f"a variance is not positive; refit with a larger reg_covar (now {self.reg_covar:g})")
            self._chol = self.covariances.sqrt()

    def _check_fitted(self):
        if self.means is None:
            raise VaelabError("this mixture is not fitted; call fit(x) or load a saved one first")

    def log_prob(self, x, block_size: int = 4096) -> torch.Tensor:
        """log p(x) in nats for each example (N,), float64."""
        self._check_fitted()
        data = rows(x)
        d = self.means.shape[1]
        if data.shape[1] != d:
            raise VaelabError(f"x has {data.shape[1]} values per example but the mixture was fitted on {d}")
        out = []
        log_2pi = d * math.log(2 * math.pi)
        for i in range(0, data.shape[0], block_size):
            block = data[i:i + block_size].to(_F64)
            joint = torch.empty(block.shape[0], self.n_components, dtype=_F64)
            for k in range(self.n_components):
                diff = block - self.means[k]
                if self.covariance_type == "full":
                    white = torch.linalg.solve_triangular(self._chol[k], diff.T, upper=False)  # L^-1 (x - mu)
                    maha, log_det = white.square().sum(0), 2 * self._chol[k].diagonal().log().sum()
                else:
                    maha, log_det = (diff / self._chol[k]).square().sum(1), 2 * self._chol[k].log().sum()
                joint[:, k] = torch.log(self.weights[k]) - 0.5 * (log_2pi + log_det + maha)
            out.append(torch.logsumexp(joint, 1))
        return torch.cat(out)

    def sample(self, n: int, seed: int = 0, return_components: bool = False):
        """``n`` draws (n, *shape) float32 (not clipped to the data range), seeded by ``seed``."""
        self._check_fitted()
        n = _check_int("n", n)
        generator = torch.Generator().manual_seed(_check_int("seed", seed, 0))
        components = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.means.shape[1], dtype=_F64, generator=generator)
        if self.covariance_type == "full":
            draws = self.means[components] + torch.einsum("nij,nj->ni", self._chol[components], noise)
        else:
            draws = self.means[components] + self._chol[components] * noise
        images = draws.to(torch.float32).reshape((n,) + self.shape)
        return (images, components) if return_components else images

    def save(self, directory: str | os.PathLike):
        """Write ``baseline.json`` + ``baseline.safetensors`` into ``directory`` (atomically)."""
        self._check_fitted()
        config = {"n_components": self.n_components, "covariance_type": self.covariance_type, "reg_covar": self.reg_covar,
                  "seed": self.seed, "max_iter": self.max_iter, "tol": self.tol, "n_init": self.n_init,
                  "shape": list(self.shape), "n_samples": self.n_samples, "converged": self.converged,
                  "n_iter": self.n_iter, "fit_seconds": self.fit_seconds}
        return save_baseline(directory, self.KIND, config,
                             {"weights": self.weights, "means": self.means, "covariances": self.covariances})

    @classmethod
    def load(cls, directory: str | os.PathLike) -> GaussianMixture:
        _, config, tensors = read_baseline(directory, cls.KIND)
        return cls._from_saved(config, tensors, directory)

    @classmethod
    def _from_saved(cls, config: dict, tensors: dict, where) -> GaussianMixture:
        require(tensors, ("weights", "means", "covariances"), where)
        try:
            model = cls(**{k: config[k] for k in ("n_components", "covariance_type", "reg_covar", "seed", "max_iter", "tol", "n_init")})
            model.shape, model.n_samples = tuple(int(s) for s in config["shape"]), int(config["n_samples"])
            model.converged, model.n_iter = bool(config["converged"]), int(config["n_iter"])
            model.fit_seconds = float(config["fit_seconds"])
        except (KeyError, TypeError, ValueError) as exc:
            raise VaelabError(f"{where}: Gaussian mixture settings are incomplete ({brief(exc, typed=True)}); re-save the baseline") from None
        model.weights, model.means, model.covariances = (tensors[k].to(_F64) for k in ("weights", "means", "covariances"))
        k, d = model.n_components, math.prod(model.shape)
        cov_shape = (k, d, d) if model.covariance_type == "full" else (k, d)
        if model.means.shape != (k, d) or model.covariances.shape != cov_shape or model.weights.shape != (k,):
            raise VaelabError(f"{where}: arrays do not match the settings (means {tuple(model.means.shape)}); re-save the baseline")
        model._prepare()
        return model
