"""Latent-space diagnostics: active units and KL per latent dimension."""
from __future__ import annotations

import torch

ACTIVE_THRESHOLD = 1e-2


@torch.inference_mode()
def posterior_stats(model, x: torch.Tensor, batch_size: int = 1000) -> dict:
    """Active units (Burda et al. 2016: Cov_x(E_q[z_j]) > 0.01) and mean KL per dimension."""
    device = next(model.parameters()).device
    means, kls = [], []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size].to(device, torch.float32)
        means.append(model.posterior_params(xb)[0].double().cpu())
        kls.append(model.kl_per_dim(xb).double().sum(0).cpu())
    mu = torch.cat(means)
    activity = mu.var(0, unbiased=True) if mu.shape[0] > 1 else torch.zeros(mu.shape[1], dtype=torch.float64)
    return {
        "active_units": int((activity > ACTIVE_THRESHOLD).sum()),
        "unit_activity": activity.tolist(),
        "kl_per_dim": (torch.stack(kls).sum(0) / x.shape[0]).tolist(),
    }
