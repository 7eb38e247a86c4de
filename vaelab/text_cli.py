"""The command-line face of :mod:`vaelab.text_outputs`: ``vaelab sample``, ``reconstruct`` and
``interpolate`` on a sentence model print text (the CLI sends a model here when it reads text,
whatever its family)."""
from __future__ import annotations

from .errors import VaelabError


def reads_text(model) -> bool:
    return getattr(model, "reads", "images") == "text"


def print_samples(model, n: int, seed: int) -> None:
    from .text_outputs import sample_text

    for kind, sentences in sample_text(model, n, seed).items():
        print(f"# {kind}")
        for s in sentences:
            print(s)


def print_reconstructions(model, sentences: list[str] | None, data=None, n: int = 5, seed: int = 0) -> None:
    """Each sentence, its greedy decode from the posterior mean and one sampled decode; without
    ``--text``, the first ``n`` sentences of the split."""
    from .data.text import decode_ids
    from .text_outputs import reconstruct_text

    if not sentences:
        if data is None:
            raise VaelabError("give --text \"A SENTENCE\" (repeatable), or --data SPEC to reconstruct its sentences")
        sentences = [decode_ids(row, model.front_end) for row in data.x[:n]]
    for r in reconstruct_text(model, sentences, seed):
        print(f"   input: {r['input']}\n  greedy: {r['greedy']}\n sampled: {r['sampled']}\n")


def print_interpolation(model, start: str | None, end: str | None, steps: int) -> None:
    from .text_outputs import interpolate_text

    if not start or not end:
        raise VaelabError("give both ends as sentences: --from \"...\" --to \"...\"")
    for t, sentence in enumerate(interpolate_text(model, start, end, steps)):
        print(f"{t / (steps - 1):4.2f}  {sentence}")
