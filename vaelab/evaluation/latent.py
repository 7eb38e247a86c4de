"""Latent-space diagnostics: active units and KL per latent dimension."""
from __future__ import annotations

import torch

ACTIVE_THRESHOLD = 1e-2


@torch.inference_mode()
def posterior_stats(model, data, batch_size: int = 1000) -> dict:
    """Active units (Burda et al. 2016: Cov_x(E_q[z_j]) > 0.01) and mean KL per dimension.
    ``data``: images, a Batch or a Dataset (a conditional encoder reads the labels)."""
    from .likelihood import as_rows, on_device

    rows = as_rows(data)
    device = next(model.parameters()).device
    means, kls = [], []
    for i in range(0, len(rows), batch_size):
        b = on_device(rows[i:i + batch_size], device)
        means.append(model.posterior_params(b)[0].double().cpu())
        kls.append(model.kl_per_dim(b).double().sum(0).cpu())
    mu = torch.cat(means)
    activity = mu.var(0, unbiased=True) if mu.shape[0] > 1 else torch.zeros(mu.shape[1], dtype=torch.float64)
    return {
        "active_units": int((activity > ACTIVE_THRESHOLD).sum()),
        "unit_activity": activity.tolist(),
        "kl_per_dim": (torch.stack(kls).sum(0) / len(rows)).tolist(),
    }
