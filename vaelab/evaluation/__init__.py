"""Measure a trained model the way the papers did, choosing each figure by what the model
can do and naming it for what it is.

| capability | figures |
|---|---|
| ``loss`` | its terms (``recon``, ``kl``, ...) and, with ``recon`` + ``kl``, the bound ``elbo`` |
| ``reconstruct`` | ``mse``, ``psnr`` |
| ``posterior_params`` | ``active_units``, ``unit_activity``, ``kl_per_dim`` |
| ``importance_log_weights`` | ``nll`` = −log p(x) of an unconditional model, ``bits_per_dim`` |
| ``exact_log_likelihood`` | ``nll`` computed exactly (an autoregressive model such as pixelcnn), ``nll_method`` = exact |
| the same, ``conditional`` | ``cnll`` = −log p(x given y), ``cbits_per_dim``; the bound is ``celbo`` |
| ``classify`` (q(y|x)) | ``classification_error`` over the labelled rows |
| ``complete`` | ``target_cnll`` = −log p(hidden pixels given visible), ``target_bits_per_dim``, ``target_mse`` |
| ``completion_nelbo`` | ``target_nelbo``: the negative ELBO over the hidden pixels, a bound ≥ ``target_cnll`` |
| ``codebook_usage`` | ``codebook_usage`` (fraction of the K codes chosen for these images), ``code_perplexity`` |
| ``bounds_likelihood`` (true) | ``nll_bound`` ≥ −log p(x) from the model's ``log_likelihood_bound`` (a VQ-VAE with its prior: −log p(x|z_q) − log p(z_q)), ``bits_per_dim_bound`` |
| ``cluster_probs`` (q(y|x) over clusters), with labelled ``reference`` images | ``cluster_error``, ``cluster_error_most_confident``, ``clusters_used`` (see :mod:`.codes`) |
| ``binary_codes``, with labelled ``reference`` images | ``precision_at_100`` of Hamming ranking, ``code_bits`` (see :mod:`.codes`) |
| ``count_tokens`` (sentence models) | ``tokens_per_sentence``, ``ppl`` from ``nll``, ``nelbo`` and ``ppl_bound`` from the ELBO (words + ``<eos>``), ``mutual_information`` I(x; z) with ``posterior_params`` (see :mod:`.text`) |
| ``objective_name`` | the negated loss under that name (a training objective that is no ELBO, e.g. ``dvae_objective``) |

Never a figure called ``nll`` that is anything but −log p(x): importance-sampled, or exact where
the model has ``exact_log_likelihood(batch)`` (per-row log p(x); its ``loss`` is then −log p(x)
itself, so its terms are not computed twice).
"""
from __future__ import annotations

import math
import time

import torch

from ..data import Dataset, binarize_static
from ..errors import VaelabError
from .classification import can_classify, misclassified
from .codes import code_metrics, has_codes
from .conditional import can_complete, completion_metrics, target_squared_error
from .latent import posterior_stats
from .likelihood import as_rows, log_likelihood, on_device
from .text import counts_tokens, mutual_information, token_figures

TEST_BINARIZATION_SEED = 123


def binarization(binarize: str) -> str:
    """What evaluation did to the images, for its result: one fixed draw, whatever the run's
    binarization (``dynamic, drawn once (seed 123)``), or nothing (``none``)."""
    return binarize if binarize == "none" else f"{binarize}, drawn once (seed {TEST_BINARIZATION_SEED})"


def evaluate(model, data, *, nll_samples: int = 0, binarize: str = "none",
             batch_size: int = 500, seed: int = 0, max_rows: int | None = None,
             progress: bool = False, reference=None) -> dict:
    """Evaluate ``model`` on ``data`` (images as a float tensor in [0, 1], a
    :class:`~vaelab.data.batch.Batch` or a Dataset, whose labels and extras reach the model);
    returns a JSON-ready dict of the figures the model's capabilities allow (module docstring).

    ``binarize="dynamic"`` or ``"static"`` draws one fixed binarization of x (seed 123, as
    the IWAE code does for its test set), and the result says so (``binarize``: ``dynamic,
    drawn once (seed 123)``). ``elbo`` (a lower bound on log p(x)), ``recon``,
    ``kl`` are nats per example from one seeded posterior sample each; ``nll`` is the
    importance-sampled estimate with exactly ``nll_samples`` samples (omitted when 0), and
    ``bits_per_dim`` is it over the modelled dimensions (those of x). A label-conditional
    model's figures are of p(x|y) and say so: ``celbo``, ``cnll``, ``cbits_per_dim``. ``mse``
    is Σ_pixels (x − x̂)² per example for the deterministic reconstruction x̂, and ``psnr``
    = 10·log10(1 / per-pixel MSE) in dB for [0, 1] images (at most 100). ``progress``
    reports the importance-sampled estimate's progress on stderr (minutes for thousands of
    samples). ``reference``: labelled images (the training split) that name a clustering
    model's clusters and form a binary-code model's retrieval database (:mod:`.codes`).
    """
    condition = getattr(model, "condition_data", None)  # attribute models: y as they condition on it
    rows = as_rows(condition(data) if condition is not None and isinstance(data, Dataset) else data)
    exact = hasattr(model, "exact_log_likelihood")
    if not exact:
        _check_density(model, nll_samples)
    model.eval()
    device = next(model.parameters()).device
    codes = code_metrics(model, rows, reference, batch_size) if reference is not None else {}
    if binarize != "none":
        rows = rows.with_x(binarize_static(rows.x, TEST_BINARIZATION_SEED))
    if hasattr(model, "as_completion"):  # whole images -> the completion task, after binarizing them
        rows = model.as_completion(rows)
    n = len(rows)
    result: dict = {"n": n, "k": nll_samples, "binarize": binarization(binarize), **codes}
    prefix = "c" if getattr(model, "conditional", False) else ""
    if exact:  # an exact density: no samples to choose, the figure is the same for any k
        result.update(k=0, **_exact_likelihood(model, rows, batch_size, prefix, device))
        return _with_tokens(model, rows, result)
    result.update(_per_example(model, rows, batch_size, seed, device))
    if hasattr(model, "codebook_usage"):
        with torch.inference_mode():
            result.update(model.codebook_usage(on_device(rows, device).x, batch_size))
    if getattr(model, "bounds_likelihood", False):
        result.update(_bound(model, rows, batch_size, device))
    if "recon" in result and "kl" in result:
        result[f"{prefix}elbo"] = -(result["recon"] + result["kl"])
    if "mse" in result:
        pixel_mse = max(result["mse"] / rows.x[0].numel(), 1e-10)  # a perfect reconstruction reads 100 dB
        result["psnr"] = 10 * math.log10(1.0 / pixel_mse)
    if hasattr(model, "posterior_params"):
        result.update(posterior_stats(model, rows, batch_size))
    if nll_samples > 0:
        kwargs = {} if max_rows is None else {"max_rows": max_rows}
        if hasattr(model, "importance_log_weights"):
            result.update(_likelihood(model, rows, nll_samples, prefix, seed, progress, kwargs))
        if can_complete(model):
            result.update(completion_metrics(model, rows, nll_samples, seed=seed, progress=progress, **kwargs))
    return _with_tokens(model, rows, result)


def _with_tokens(model, rows, result: dict) -> dict:
    """A sentence model's per-token figures: perplexities instead of bits per (padded) position,
    and I(x; z) for a latent one."""
    if not counts_tokens(model):
        return result
    result = {k: v for k, v in result.items() if "bits_per_dim" not in k and k not in ("mse", "psnr")}
    result.update(token_figures(model, rows, result))
    if hasattr(model, "posterior_params"):
        result["mutual_information"] = mutual_information(model, rows)
    return result


def _check_density(model, nll_samples: int) -> None:
    if nll_samples > 0 and not (hasattr(model, "importance_log_weights") or can_complete(model)):
        what = "is a deterministic autoencoder" if hasattr(model, "code") else "has none"
        raise VaelabError(f"the log-likelihood (NLL) needs a VAE-family model with a latent density; "
                          f"'{getattr(model, 'name', type(model).__name__)}' {what}: evaluate it without --nll-samples")


def _per_example(model, rows, batch_size: int, seed: int, device) -> dict:
    """Loss terms, ``mse`` and ``classification_error`` per example, from one seeded pass."""
    sums: dict[str, float] = {}

    def add(key: str, value: float) -> None:
        sums[key] = sums.get(key, 0.0) + value

    labelled = wrong = 0
    objective = getattr(model, "objective_name", None)  # a model's own objective, named by the model
    model.schedule(math.inf)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.inference_mode():
        torch.manual_seed(seed)
        for i in range(0, len(rows), batch_size):
            b = on_device(rows[i:i + batch_size], device)
            loss = model.loss(b)
            for k, v in loss.terms.items():
                add(k, float(v) * len(b))
            if objective:
                add(objective, -float(loss.total) * len(b))
            if hasattr(model, "reconstruct") and "lengths" not in b.extras:  # clips: their losses mask padding
                add("mse", float((model.reconstruct(b).float() - b.x).square().sum()))
            if can_complete(model):
                add("target_mse", float(target_squared_error(model, b).sum()))
            if can_classify(model):
                w, m = misclassified(model, b)
                wrong, labelled = wrong + w, labelled + m
    result = {k: v / len(rows) for k, v in sums.items()}
    if labelled:
        result["classification_error"] = wrong / labelled
    return result


def _exact_likelihood(model, rows, batch_size: int, prefix: str, device) -> dict:
    """``nll`` (``cnll`` for p(x|y)) from the model's exact per-row log p(x), its standard
    error over the rows and bits per modelled dimension."""
    t0 = time.perf_counter()
    with torch.inference_mode():
        log_p = torch.cat([model.exact_log_likelihood(on_device(rows[i:i + batch_size], device)).double().cpu()
                           for i in range(0, len(rows), batch_size)])
    n = len(rows)
    nll = float(-log_p.mean())
    return {f"{prefix}nll": nll, f"{prefix}nll_method": "exact",
            f"{prefix}nll_stderr": float(log_p.std() / math.sqrt(n)) if n > 1 else 0.0,
            f"{prefix}nll_seconds": round(time.perf_counter() - t0, 2),
            f"{prefix}bits_per_dim": nll / (rows.x[0].numel() * math.log(2))}


def _bound(model, rows, batch_size: int, device) -> dict:
    """``nll_bound``: −(a lower bound on log p(x)) per example, an upper bound on the NLL and
    never called one; its standard error over the rows and bits per dimension."""
    with torch.inference_mode():
        log_b = torch.cat([model.log_likelihood_bound(on_device(rows[i:i + batch_size], device)).double().cpu()
                           for i in range(0, len(rows), batch_size)])
    n, bound = len(rows), float(-log_b.mean())
    return {"nll_bound": bound, "nll_bound_stderr": float(log_b.std() / math.sqrt(n)) if n > 1 else 0.0,
            "bits_per_dim_bound": bound / (rows.x[0].numel() * math.log(2))}


def _likelihood(model, rows, k: int, prefix: str, seed: int, progress: bool, kwargs: dict) -> dict:
    """``nll`` (or ``cnll`` for p(x|y)) ± stderr, its time and bits per modelled dimension."""
    t0 = time.perf_counter()
    log_p = log_likelihood(model, rows, k, seed=seed, progress=progress, **kwargs)
    n = len(rows)
    nll = float(-log_p.mean())
    return {f"{prefix}nll": nll,
            f"{prefix}nll_stderr": float(log_p.std() / math.sqrt(n)) if n > 1 else 0.0,
            f"{prefix}nll_seconds": round(time.perf_counter() - t0, 2),
            f"{prefix}bits_per_dim": nll / (rows.x[0].numel() * math.log(2))}


__all__ = ["evaluate", "has_codes", "log_likelihood", "posterior_stats"]
