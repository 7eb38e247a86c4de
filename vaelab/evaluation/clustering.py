"""Unsupervised classification: the error of a model's clusters once each is given a label.

A model clusters when it assigns each image a distribution over C clusters (a one-hot code
q(y|x) of a Gumbel-softmax VAE, the categorical head of a clustering AAE). Its clusters carry
no labels, so a mapping learned on labelled *reference* images (the training set) names each
cluster; the error is then measured on test images the mapping never saw. Two mappings:

- ``most-confident`` (Makhzani et al. 2015, §6): cluster i takes the label of the reference
  image x that maximises q(y = i | x). One labelled image per cluster: the harder protocol.
- ``majority``: cluster i takes the most frequent label among the reference images assigned
  to it (argmax q(y|x) = i); an empty cluster falls back to its most confident image.

With C ≥ the number of classes, several clusters may share a label; that is the point of 16
or 30 clusters for 10 digits.
"""
from __future__ import annotations

import torch

from ..errors import VaelabError

MAPPINGS = ("most-confident", "majority")


def _checked(probs: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    if probs.dim() != 2 or probs.shape[1] < 2:
        raise VaelabError(f"cluster probabilities must be (images, clusters ≥ 2), got shape {tuple(probs.shape)}")
    if labels is not None and (labels.dim() != 1 or len(labels) != len(probs)):
        raise VaelabError(f"need one label per image: {len(probs)} images, labels of shape {tuple(labels.shape)}")
    return probs.float()


def cluster_labels(probs: torch.Tensor, labels: torch.Tensor, mapping: str = "most-confident") -> torch.Tensor:
    """The label of each of the C clusters, (C,) int64, from reference images' cluster
    probabilities ``probs`` (N, C) and their true ``labels`` (N,)."""
    if mapping not in MAPPINGS:
        raise VaelabError(f"unknown cluster mapping {mapping!r}; choose one of {', '.join(MAPPINGS)}")
    probs = _checked(probs, labels)
    labels = labels.long()
    confident = labels[probs.argmax(0)]  # per cluster: the label of its most confident image
    if mapping == "most-confident":
        return confident
    assigned = probs.argmax(1)
    n_classes = int(labels.max()) + 1
    counts = torch.zeros(probs.shape[1], n_classes, dtype=torch.long)
    counts.index_put_((assigned, labels), torch.ones_like(labels), accumulate=True)
    return torch.where(counts.sum(1) > 0, counts.argmax(1), confident)


def cluster_error(probs: torch.Tensor, labels: torch.Tensor, names: torch.Tensor) -> float:
    """The fraction of images whose cluster's label (``names``, from :func:`cluster_labels`)
    differs from their own label."""
    probs = _checked(probs, labels)
    if len(names) != probs.shape[1]:
        raise VaelabError(f"{len(names)} cluster labels for {probs.shape[1]} clusters; map the same model's clusters")
    predicted = names[probs.argmax(1)]
    return float((predicted != labels.long()).float().mean())


def clusters_used(probs: torch.Tensor) -> int:
    """How many clusters are the argmax of at least one image (collapse shows as few)."""
    return int(torch.unique(_checked(probs).argmax(1)).numel())
