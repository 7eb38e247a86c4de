"""Principal component analysis: the linear baseline every autoencoder is compared with.

A linear autoencoder trained with squared error spans the same subspace as the top-k
principal components, so PCA is both the reference for reconstruction error and the
target for subspace checks. Fitted in float64 by an eigen-decomposition of the
covariance accumulated block by block (60000×784 MNIST fits in about two seconds on
two cores); when examples are fewer than dimensions, the thin SVD of the centred data
is used instead.
"""
from __future__ import annotations

import os

import torch

from ..errors import VaelabError, brief
from ._store import read_baseline, require, rows, save_baseline

KIND = "pca"


class PCA:
    """Top-``n_components`` principal subspace of the training data.

    After :meth:`fit`: ``mean`` (D,), ``components`` (D, k) with orthonormal columns in
    order of decreasing variance, ``eigenvalues`` (every variance along a principal axis,
    descending, unbiased: divided by N - 1 like scikit-learn), ``explained_variance`` (the
    first k of them) and ``explained_variance_ratio``. Each component's sign is fixed so
    that its largest-magnitude entry is positive, so refits give identical codes.
    """

    def __init__(self, n_components: int | None = None):
        if n_components is not None and (isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1):
            raise VaelabError(f"n_components must be a positive integer or None (all), got {n_components!r}")
        self.n_components = n_components
        self.mean: torch.Tensor | None = None
        self.components: torch.Tensor | None = None
        self.eigenvalues: torch.Tensor | None = None
        self.shape: tuple[int, ...] | None = None
        self.n_samples = 0

    # --- fitting ------------------------------------------------------------------------

    def fit(self, x, block_size: int = 10000) -> PCA:
        """Fit to ``x`` (N, D) or (N, C, H, W); returns ``self``."""
        data = rows(x)
        n, d = data.shape
        if n < 2:
            raise VaelabError(f"PCA needs at least 2 examples, got {n}")
        k_max = min(n, d)
        k = self.n_components or k_max
        if k > k_max:
            raise VaelabError(f"n_components={k} exceeds min(N, D) = {k_max} for data of shape {tuple(data.shape)}; choose at most {k_max}")
        mean = torch.zeros(d, dtype=torch.float64)
        for i in range(0, n, block_size):
            mean += data[i:i + block_size].to(torch.float64).sum(0)
        mean /= n
        if not torch.isfinite(mean).all():
            raise VaelabError("x holds NaN or infinite values; PCA needs finite data")
        if d <= n:
            cov = torch.zeros(d, d, dtype=torch.float64)
            for i in range(0, n, block_size):
                block = data[i:i + block_size].to(torch.float64) - mean
                cov.addmm_(block.T, block)
            evals, evecs = torch.linalg.eigh(cov / (n - 1))  # ascending
            evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
        else:
            _, s, vh = torch.linalg.svd(data.to(torch.float64) - mean, full_matrices=False)
            evals, evecs = s.square() / (n - 1), vh.T
        comps = evecs[:, :k]
        signs = torch.sign(comps.gather(0, comps.abs().argmax(0, keepdim=True)))
        self.mean, self.components, self.eigenvalues = mean, (comps * signs).contiguous(), evals.contiguous()
        self.shape, self.n_samples, self.n_components = tuple(torch.as_tensor(x).shape[1:]), n, k
        return self

    def _check_fitted(self):
        if self.components is None:
            raise VaelabError("this PCA is not fitted; call fit(x) or PCA.load(directory) first")

    @property
    def explained_variance(self) -> torch.Tensor:
        """Variance of the training data along each kept component (k,)."""
        self._check_fitted()
        return self.eigenvalues[: self.n_components]

    @property
    def explained_variance_ratio(self) -> torch.Tensor:
        """Fraction of the total variance along each kept component (k,)."""
        self._check_fitted()
        return self.explained_variance / self.eigenvalues.sum()

    # --- codes and reconstructions -------------------------------------------------------

    def _k(self, k: int | None) -> int:
        if k is None:
            return self.n_components
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.n_components:
            raise VaelabError(f"k must be an integer in 1..{self.n_components} (the fitted components), got {k!r}")
        return k

    def encode(self, x, k: int | None = None) -> torch.Tensor:
        """Codes (N, k): coordinates of ``x - mean`` on the first ``k`` components (default all).

        Returned as float32 (float64 when ``x`` is float64); computed in float64.
        """
        self._check_fitted()
        data = rows(x)
        if data.shape[1] != self.mean.shape[0]:
            raise VaelabError(f"x has {data.shape[1]} values per example but this PCA was fitted on {self.mean.shape[0]}")
        out = torch.float64 if data.dtype == torch.float64 else torch.float32
        return ((data.to(torch.float64) - self.mean) @ self.components[:, : self._k(k)]).to(out)

    def decode(self, z) -> torch.Tensor:
        """Images (N, *shape) from codes (N, k) for any k up to the fitted number."""
        self._check_fitted()
        z = torch.as_tensor(z)
        if z.ndim != 2 or not 1 <= z.shape[1] <= self.n_components:
            raise VaelabError(f"codes must be (N, k) with k in 1..{self.n_components}, got shape {tuple(z.shape)}")
        out = torch.float64 if z.dtype == torch.float64 else torch.float32
        x = z.to(torch.float64) @ self.components[:, : z.shape[1]].T + self.mean
        return x.reshape((z.shape[0],) + self.shape).to(out)

    def reconstruct(self, x, k: int | None = None) -> torch.Tensor:
        """Projection of ``x`` onto the first ``k`` components, in the input's shape."""
        x = torch.as_tensor(x)
        out = torch.float64 if x.dtype == torch.float64 else torch.float32
        return self.decode(self.encode(x.to(torch.float64), k)).to(out)  # float64 throughout

    # --- persistence ---------------------------------------------------------------------

    def save(self, directory: str | os.PathLike):
        """Write ``baseline.json`` + ``baseline.safetensors`` into ``directory`` (atomically)."""
        self._check_fitted()
        config = {"n_components": self.n_components, "shape": list(self.shape), "n_samples": self.n_samples}
        return save_baseline(directory, KIND, config,
                             {"mean": self.mean, "components": self.components, "eigenvalues": self.eigenvalues})

    @classmethod
    def load(cls, directory: str | os.PathLike) -> PCA:
        _, config, tensors = read_baseline(directory, KIND)
        return cls._from_saved(config, tensors, directory)

    @classmethod
    def _from_saved(cls, config: dict, tensors: dict, where) -> PCA:
        require(tensors, ("mean", "components", "eigenvalues"), where)
        try:
            pca = cls(int(config["n_components"]))
            pca.shape, pca.n_samples = tuple(int(s) for s in config["shape"]), int(config["n_samples"])
        except (KeyError, TypeError, ValueError) as exc:
            raise VaelabError(f"{where}: PCA settings are incomplete ({brief(exc, typed=True)}); re-save the baseline") from None
        pca.mean, pca.components, pca.eigenvalues = (tensors[n].to(torch.float64) for n in ("mean", "components", "eigenvalues"))
        if pca.components.shape != (pca.mean.shape[0], pca.n_components):
            raise VaelabError(f"{where}: components have shape {tuple(pca.components.shape)}, expected ({pca.mean.shape[0]}, {pca.n_components}); re-save the baseline")
        return pca
