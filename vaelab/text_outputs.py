"""Looking inside a sentence model, in words: samples (greedy and drawn), reconstructions,
Bowman et al.'s homotopies (decoding points on the line between two sentences' codes) and the
training sentences nearest a code. Each asks what the model can do (``generate``,
``posterior_params``, ``decode_text``), never which model it is.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .data.batch import Batch
from .data.text import decode_ids, sentence_batch
from .errors import VaelabError
from .files import atomic_write_bytes


def words(model, batch: Batch) -> list[str]:
    return [decode_ids(row, model.front_end) for row in batch.x]


def sample_text(model, n: int = 10, seed: int = 0) -> dict[str, list[str]]:
    """``greedy`` and ``sampled`` sentences (a latent model: one z per row, shared by both)."""
    if not hasattr(model, "generate"):
        raise VaelabError(f"'{model.name}' cannot generate sentences")
    model.eval()
    out = {}
    for greedy in (True, False):
        g = torch.Generator().manual_seed(seed)
        out["greedy" if greedy else "sampled"] = words(model, model.generate(n, greedy=greedy, generator=g))
    return out


def _codes(model, sentences: list[str] | Batch) -> torch.Tensor:
    if not hasattr(model, "posterior_params"):
        raise VaelabError(f"'{model.name}' has no code for a sentence (no encoder); use a text-vae run")
    batch = sentences if isinstance(sentences, Batch) else sentence_batch(sentences, model.front_end)
    with torch.no_grad():
        return model.posterior_params(batch.to(next(model.parameters()).device))[0]


def reconstruct_text(model, sentences: list[str], seed: int = 0) -> list[dict]:
    """Each sentence as read (unknown words as <unk>), then decoded from its posterior mean:
    greedily, and once sampled word by word."""
    model.eval()
    batch = sentence_batch(sentences, model.front_end)
    z = _codes(model, batch)
    read = words(model, batch)
    greedy = words(model, model.decode_text(z, greedy=True))
    sampled = words(model, model.decode_text(z, greedy=False, generator=torch.Generator().manual_seed(seed)))
    return [{"input": r, "greedy": g, "sampled": s} for r, g, s in zip(read, greedy, sampled)]


def interpolate_text(model, start: str, end: str, steps: int = 7) -> list[str]:
    """Bowman et al.'s homotopy: greedy decodes of z = (1 − t)·z_start + t·z_end, t in [0, 1]."""
    if steps < 2:
        raise VaelabError(f"--steps must be at least 2, got {steps}")
    model.eval()
    za, zb = _codes(model, [start, end])
    t = torch.linspace(0, 1, steps, device=za.device).unsqueeze(1)
    return words(model, model.decode_text((1 - t) * za + t * zb, greedy=True))


def nearest_sentences(model, z: torch.Tensor, data: Batch, k: int = 3, batch_size: int = 1000) -> list[list[str]]:
    """For each code in ``z`` (B, L), the ``k`` sentences of ``data`` whose posterior means lie
    nearest (Euclidean)."""
    model.eval()
    means = []
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            means.append(model.posterior_params(data[i:i + batch_size])[0])
    index = torch.cdist(z, torch.cat(means)).topk(min(k, len(data)), largest=False).indices
    return [[decode_ids(data.x[j], model.front_end) for j in row] for row in index]


def text_report(model, data: Batch | None, seed: int = 0, n: int = 8) -> str:
    """The text a run writes when training ends: samples, and for a latent model
    reconstructions of a few sentences of ``data`` with a homotopy between two of them."""
    lines = []
    if hasattr(model, "generate"):
        for kind, sentences in sample_text(model, n, seed).items():
            lines.append(f"# samples ({kind})")
            lines += sentences + [""]
    if hasattr(model, "middle") and data is not None:  # a sequence code (seq3): input, middle, rebuilt
        part = data[:n]
        lines.append("# input / middle sequence / reconstruction from it")
        for x, y, r in zip(words(model, part), words(model, model.middle(part)),
                           words(model, model.reconstruct_from_middle(part))):
            lines += [f"   input: {x}", f"  middle: {y}", f" rebuilt: {r}", ""]
    if hasattr(model, "decode_text") and data is not None and len(data) >= 2:
        originals = [decode_ids(row, model.front_end) for row in data.x[:n]]
        lines.append("# reconstructions (input / greedy / sampled)")
        for r in reconstruct_text(model, originals, seed):
            lines += [f"  in: {r['input']}", f" out: {r['greedy']}", f"samp: {r['sampled']}", ""]
        lines.append(f"# homotopy: {originals[0]!r} -> {originals[1]!r}")
        lines += interpolate_text(model, originals[0], originals[1]) + [""]
        z = torch.randn(3, model.config.latent_dim, generator=torch.Generator().manual_seed(seed))
        decoded = words(model, model.decode_text(z.to(next(model.parameters()).device)))
        near = nearest_sentences(model, z.to(next(model.parameters()).device), data, k=2)
        lines.append("# codes z ~ N(0, I): greedy decode, then the nearest sentences of the data")
        for d, nn_ in zip(decoded, near):
            lines += [f"   z: {d}"] + [f"near: {s}" for s in nn_] + [""]
    return "\n".join(lines)


def write_text_outputs(model, run_dir, data: Batch, seed: int = 0) -> list[str]:
    """``text.txt`` in the run directory (what :func:`text_report` says)."""
    data = data[:1000].to(next(model.parameters()).device) if data is not None else None
    atomic_write_bytes(Path(run_dir) / "text.txt", (text_report(model, data, seed) + "\n").encode())
    return ["text.txt"]
