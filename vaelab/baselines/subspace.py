"""Principal angles between subspaces: does a linear autoencoder span the PCA subspace?

A linear autoencoder trained with squared error learns *some* basis of the top-k
principal subspace, not the principal axes themselves, so its weights are compared with
PCA by the angles between the spanned subspaces (all near 0° when they agree), never
column by column.
"""
from __future__ import annotations

import math

import torch

from ..errors import VaelabError


def _orthonormal_basis(m, name: str) -> torch.Tensor:
    m = torch.as_tensor(m).detach().to("cpu", torch.float64)
    if m.ndim != 2 or m.shape[1] == 0 or m.shape[0] < m.shape[1]:
        raise VaelabError(f"{name} must be a (d, k) matrix with 1 <= k <= d whose columns span the subspace, got shape {tuple(m.shape)}")
    if not torch.isfinite(m).all():
        raise VaelabError(f"{name} holds NaN or infinite values; pass finite basis vectors")
    q, r = torch.linalg.qr(m)
    diag = r.diagonal().abs()
    if diag.min() <= 1e-10 * max(float(diag.max()), 1e-300):
        raise VaelabError(f"the columns of {name} are linearly dependent (rank < {m.shape[1]}); pass independent columns")
    return q


def principal_angles(A, B) -> torch.Tensor:
    """Principal angles in degrees, ascending, between span(A) and span(B).

    ``A`` (d, k1) and ``B`` (d, k2) need not be orthonormal: each is orthonormalised by QR
    first. The cosines are the singular values of Qa^T Qb; min(k1, k2) angles are returned.
    Angles below 45° are taken from the sines (singular values of Qb - Qa Qa^T Qb) instead,
    because arccos loses precision near 0° (Knyazev & Argentati, 2002).
    """
    qa, qb = _orthonormal_basis(A, "A"), _orthonormal_basis(B, "B")
    if qa.shape[0] != qb.shape[0]:
        raise VaelabError(f"A and B must live in the same space: A has {qa.shape[0]} rows, B has {qb.shape[0]}")
    if qa.shape[1] < qb.shape[1]:  # angles are symmetric; project the smaller basis
        qa, qb = qb, qa
    cos = torch.linalg.svdvals(qa.T @ qb).clamp(-1.0, 1.0)  # descending -> angles ascending
    sin = torch.linalg.svdvals(qb - qa @ (qa.T @ qb)).clamp(0.0, 1.0).flip(0)  # ascending
    angles = torch.where(cos > math.sqrt(0.5), torch.arcsin(sin), torch.arccos(cos))
    return torch.rad2deg(angles).sort().values
