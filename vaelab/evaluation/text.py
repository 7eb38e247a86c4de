"""Figures of sentence models, for models that count their tokens (``count_tokens``).

Every per-sentence figure (nats per sentence) has a perplexity beside it, over the tokens a
model predicts: the words of each sentence and its ``<eos>`` (``tokens_per_sentence``):

    perplexity = exp(Σ_x −log p(x) / Σ_x (n_x + 1))

``ppl`` comes from ``nll`` (importance-sampled or exact), ``ppl_bound`` from the −ELBO (an
upper bound on the perplexity). ``mutual_information`` is I(x; z) under q(z|x) and the
aggregate posterior q(z) = mean_x q(z|x) of the evaluated sentences (He et al. 2019's estimate:
E_x E_q(z|x)[log q(z|x) − log q(z)], one z per sentence).
"""
from __future__ import annotations

import math

import torch

from .likelihood import on_device

LOG_2PI = math.log(2 * math.pi)


def counts_tokens(model) -> bool:
    return hasattr(model, "count_tokens")


def token_figures(model, rows, result: dict) -> dict:
    """``tokens_per_sentence`` and the perplexities of ``result``'s per-sentence figures."""
    per = float(model.count_tokens(rows).double().mean())
    out = {"tokens_per_sentence": per, "perplexity_counts": "words + <eos>"}
    for key, name in (("nll", "ppl"), ("cnll", "cppl")):
        if key in result:
            out[name] = math.exp(result[key] / per)
    if "elbo" in result:
        out["nelbo"] = -result["elbo"]
        out["ppl_bound"] = math.exp(-result["elbo"] / per)
    return out


@torch.inference_mode()
def mutual_information(model, rows, batch_size: int = 500, seed: int = 0) -> float:
    """I(x; z) in nats, estimated over ``rows`` (see the module docstring)."""
    device = next(model.parameters()).device
    mus, logvars = [], []
    for i in range(0, len(rows), batch_size):
        mu, logvar = model.posterior_params(on_device(rows[i:i + batch_size], device))
        mus.append(mu.double().cpu())
        logvars.append(logvar.double().cpu())
    mu, logvar = torch.cat(mus), torch.cat(logvars)
    n, d = mu.shape
    eps = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    z = mu + torch.exp(0.5 * logvar) * eps
    neg_entropy = (-0.5 * (LOG_2PI + logvar + eps.square())).sum(1).mean()
    log_q = []
    for i in range(0, n, batch_size):  # log q(z_i) = logsumexp_j log q(z_i | x_j) − log n
        diff = z[i:i + batch_size].unsqueeze(1) - mu.unsqueeze(0)
        log_qij = (-0.5 * (LOG_2PI + logvar.unsqueeze(0) + diff.square() / logvar.exp().unsqueeze(0))).sum(-1)
        log_q.append(torch.logsumexp(log_qij, 1) - math.log(n))
    return float(neg_entropy - torch.cat(log_q).mean())
