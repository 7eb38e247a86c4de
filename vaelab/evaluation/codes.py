"""Figures of a model's discrete codes against labelled reference images (the training set):
the clustering error of a one-hot code and the retrieval precision of a binary code.

Asked of any model by capability, never by name:

- ``cluster_probs(batch) -> (B, C)``, q(y|x) over C clusters: ``cluster_error`` (each cluster
  named by the majority label of the reference images assigned to it),
  ``cluster_error_most_confident`` (named by the label of its most confident reference image,
  Makhzani et al. 2015), ``clusters_used`` (clusters that are some evaluated image's argmax)
  and ``clusters`` (C); see :mod:`vaelab.evaluation.clustering`.
- ``binary_codes(batch) -> bool (B, bits)``: ``precision_at_100``, the precision of the 100
  reference images nearest in Hamming distance (relevant = same label), and ``code_bits``;
  see :mod:`vaelab.evaluation.retrieval`.

Codes are computed from the images as given (grey pixels, not a binarization of them), so
they are deterministic and the pixel baselines of ``benchmarks/retrieval.py`` see the same
inputs.
"""
from __future__ import annotations

import torch

from .clustering import cluster_error, cluster_labels, clusters_used
from .likelihood import as_rows, on_device
from .retrieval import precision_at_k

RETRIEVED = 100


def has_codes(model) -> bool:
    """True when the model clusters or hashes, so its figures need labelled reference images."""
    return hasattr(model, "cluster_probs") or hasattr(model, "binary_codes")


@torch.inference_mode()
def _apply(fn, rows, batch_size: int, device) -> torch.Tensor:
    return torch.cat([fn(on_device(rows[i:i + batch_size], device)).cpu() for i in range(0, len(rows), batch_size)])


def code_metrics(model, data, reference, batch_size: int = 500) -> dict:
    """The clustering and retrieval figures ``model``'s capabilities allow, for the labelled
    images ``data`` against the labelled ``reference`` images; {} where either lacks labels."""
    rows, ref = as_rows(data), as_rows(reference)
    if rows.y is None or ref.y is None or not has_codes(model):
        return {}
    model.eval()
    device = next(model.parameters()).device
    result: dict = {}
    if hasattr(model, "cluster_probs"):
        probs, ref_probs = (_apply(model.cluster_probs, r, batch_size, device).float() for r in (rows, ref))
        labels, ref_labels = rows.y.long().cpu(), ref.y.long().cpu()
        result.update(
            cluster_error=cluster_error(probs, labels, cluster_labels(ref_probs, ref_labels, "majority")),
            cluster_error_most_confident=cluster_error(probs, labels,
                                                       cluster_labels(ref_probs, ref_labels, "most-confident")),
            clusters_used=clusters_used(probs), clusters=int(probs.shape[1]))
    if hasattr(model, "binary_codes"):
        codes, ref_codes = (_apply(model.binary_codes, r, batch_size, device).bool() for r in (rows, ref))
        result.update(precision_at_100=precision_at_k(codes, rows.y.cpu(), ref_codes, ref.y.cpu(),
                                                      k=min(RETRIEVED, len(ref))),
                      code_bits=int(codes.shape[1]))
    return result
