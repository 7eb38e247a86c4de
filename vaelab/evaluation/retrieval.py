"""Retrieval with binary codes (semantic hashing): how often the nearest codes share a label.

Each query image (the test set) ranks every database image (the training set) by the Hamming
distance between their codes; ``precision_at_k`` is the fraction of the first k that carry the
query's label, averaged over queries. Hamming distances come from one matrix product of ±1
codes, d = (bits − s_q · s_d) / 2, in chunks of queries, so 10,000 × 60,000 pairs take seconds.

Short codes tie often (16 bits: 65,536 codes for 60,000 images). Ties at the k-th distance are
broken neither by index nor at random: the precision is its **expectation under a uniformly
random order of the tied images**, computed exactly (the images closer than the k-th distance
all count, and of the m images at that distance the r relevant ones count (k − closer)·r/m).

Baselines on the same pixels: ``pca_codes`` (the sign of the top principal components of the
centred pixels) and ``random_projection_codes`` (the sign of Gaussian random projections of the
centred pixels; Charikar's sign random projections).
"""
from __future__ import annotations

import torch

from ..errors import VaelabError


def _checked(codes: torch.Tensor, labels: torch.Tensor, what: str) -> None:
    if codes.dim() != 2 or codes.dtype != torch.bool:
        raise VaelabError(f"{what} codes must be a bool tensor (images, bits), got {codes.dtype} of shape "
                          f"{tuple(codes.shape)}")
    if labels.dim() != 1 or len(labels) != len(codes):
        raise VaelabError(f"need one {what} label per code: {len(codes)} codes, labels of shape {tuple(labels.shape)}")


def signs(codes: torch.Tensor) -> torch.Tensor:
    """Bool codes as ±1 float32 entries."""
    return codes.float() * 2 - 1


def hamming(query: torch.Tensor, database: torch.Tensor) -> torch.Tensor:
    """Hamming distances between bool codes (or their :func:`signs`), (Q, N) float32, exact."""
    q = signs(query) if query.dtype == torch.bool else query
    d = signs(database) if database.dtype == torch.bool else database
    return (q.shape[1] - q @ d.t()) / 2


@torch.no_grad()
def precision_at_k(query: torch.Tensor, query_labels: torch.Tensor, database: torch.Tensor,
                   database_labels: torch.Tensor, k: int = 100, chunk: int = 64) -> float:
    """Mean precision of the k database codes nearest each query code (relevant = same label),
    ties at the k-th distance counted at their expected share (module docstring)."""
    _checked(query, query_labels, "query")
    _checked(database, database_labels, "database")
    if query.shape[1] != database.shape[1]:
        raise VaelabError(f"query codes have {query.shape[1]} bits, database codes {database.shape[1]}: "
                          "encode both with the same model")
    if not 1 <= k <= len(database):
        raise VaelabError(f"k must be between 1 and the database size {len(database)}, got {k}")
    total = 0.0
    bits = query.shape[1]
    db_labels, db_signs = database_labels.long(), signs(database)
    classes = int(max(db_labels.max(), query_labels.max())) + 1
    for s in range(0, len(query), chunk):
        dist = hamming(query[s:s + chunk], db_signs).long()
        # per query, the database codes at each (distance 0..bits, label): one scatter
        table = torch.zeros(len(dist), (bits + 1) * classes)
        table.scatter_add_(1, dist * classes + db_labels, torch.ones(1).expand_as(dist))
        table = table.view(len(dist), bits + 1, classes).double()
        count = table.sum(2)
        hits = table.gather(2, query_labels[s:s + chunk].long().view(-1, 1, 1).expand(-1, bits + 1, 1)).squeeze(2)
        reached = count.cumsum(1)
        kth = (reached < k).sum(1, keepdim=True)  # the distance of the k-th nearest code
        n_closer = (reached - count).gather(1, kth).squeeze(1)
        r_closer = (hits.cumsum(1) - hits).gather(1, kth).squeeze(1)
        n_tied, r_tied = count.gather(1, kth).squeeze(1), hits.gather(1, kth).squeeze(1)
        total += float(((r_closer + (k - n_closer) * r_tied / n_tied) / k).sum())
    return total / len(query)


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(len(x), -1).double()


def pca_codes(train: torch.Tensor, test: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sign of the top ``bits`` principal components of the pixels, centred on the training
    mean: bool codes of (train, test)."""
    a, b = _flat(train), _flat(test)
    if not 1 <= bits <= a.shape[1]:
        raise VaelabError(f"bits must be between 1 and the {a.shape[1]} pixels, got {bits}")
    mean = a.mean(0)
    cov = (a - mean).t() @ (a - mean) / len(a)
    _, vectors = torch.linalg.eigh(cov)  # ascending eigenvalues
    top = vectors[:, -bits:].flip(1)
    return (a - mean) @ top > 0, (b - mean) @ top > 0


def random_projection_codes(train: torch.Tensor, test: torch.Tensor, bits: int,
                            seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sign of ``bits`` Gaussian random projections of the centred pixels (seeded): bool
    codes of (train, test)."""
    a, b = _flat(train), _flat(test)
    if bits < 1:
        raise VaelabError(f"bits must be >= 1, got {bits}")
    mean = a.mean(0)
    w = torch.randn(a.shape[1], bits, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (a - mean) @ w > 0, (b - mean) @ w > 0
