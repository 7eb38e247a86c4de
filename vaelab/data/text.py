"""Sentences as rows of word ids: the Penn Treebank (Mikolov's split) and the user's own text.

A sentence of n words becomes the ids of ``w_1 .. w_n <eos>`` followed by ``<pad>`` up to
the front end's fixed ``max_length`` (so every split has one shape), with its true length
n + 1 in ``extras["lengths"]``: what a model predicts and what a perplexity counts is the
words and the ``<eos>`` closing each sentence. The vocabulary is that of PTB's training file
(its 10,000 word types, ``<unk>`` among them, plus ``<eos>``), in front of which stand the
two symbols the models need besides: ``<pad>`` (id 0, never predicted, masked out of every
sum) and ``<bos>`` (id 1, the decoder's first input). The front end (``Dataset.front_end``)
holds the vocabulary, so a loaded model maps words to ids and back without the data.
"""
from __future__ import annotations

import hashlib
import warnings
from collections import Counter
from pathlib import Path

import torch

from ..errors import VaelabError, VaelabWarning

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS)
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
PTB_FILES = {"train": "ptb.train.txt", "val": "ptb.valid.txt", "test": "ptb.test.txt"}
# The md5 values torchtext's PennTreebank loader checks (/work/shared/data/README.md).
PTB_MD5 = {
    "ptb.train.txt": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
    "ptb.valid.txt": "aa0affc06ff7c36e977d7cd49e3839bf",
    "ptb.test.txt": "8b80168b89c18661a38ef683c0dc3721",
}
PTB_MAX_LENGTH = 83  # the longest training sentence (82 words) + <eos>
MAX_FILE_BYTES = 1 << 28


def front_end(vocabulary: list[str], max_length: int, source: str) -> dict:
    """The JSON-able settings that turn words into x and back (saved in a model's config)."""
    return {"kind": "text", "vocabulary": list(vocabulary), "max_length": int(max_length),
            "pad": PAD, "bos": BOS, "eos": EOS, "unk": UNK, "source": source}


def is_text(settings: dict | None) -> bool:
    return bool(settings) and settings.get("kind") == "text"


def read_lines(path: Path, what: str) -> list[str]:
    """The non-blank lines of a UTF-8 text file, refused in one line when it is missing,
    empty, too large or not UTF-8 (naming the line)."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise VaelabError(f"{what} {path} holds {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit; split it")
        data = path.read_bytes()
    except OSError as e:
        raise VaelabError(f"cannot read {what} {path}: {e.strerror}; check the path") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise VaelabError(f"{what} {path} is not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}); "
                          "save it as UTF-8") from None
    lines = [" ".join(line.split()) for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise VaelabError(f"{what} {path} holds no sentences; write one sentence per line")
    return lines


def checked_ptb_file(root: Path, name: str) -> Path:
    """``root/name`` after its md5 matches the value torchtext checks."""
    path = root / name
    if not path.is_file():
        raise VaelabError(f"PTB file {path} is missing; place ptb.train.txt, ptb.valid.txt and ptb.test.txt "
                          f"(Mikolov's split) in {root}")
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    if digest != PTB_MD5[name]:
        raise VaelabError(f"{path} has md5 {digest}, not the published {PTB_MD5[name]}; "
                          "replace it with Mikolov's PTB file")
    return path


def build_vocabulary(lines: list[str]) -> list[str]:
    """The specials, then every word type of ``lines`` by falling count (ties alphabetical)."""
    counts = Counter(w for line in lines for w in line.split())
    for s in SPECIALS:
        counts.pop(s, None)
    return list(SPECIALS) + sorted(counts, key=lambda w: (-counts[w], w))


_VOCABULARY_CACHE: dict[str, list[str]] = {}


def ptb_vocabulary(root: Path) -> list[str]:
    """The vocabulary of PTB's (checked) training file: 10,000 types + <pad>, <bos>, <eos>."""
    key = str(root.resolve())
    if key not in _VOCABULARY_CACHE:
        _VOCABULARY_CACHE[key] = build_vocabulary(read_lines(checked_ptb_file(root, PTB_FILES["train"]), "PTB file"))
    return _VOCABULARY_CACHE[key]


def encode_lines(lines: list[str], settings: dict, where: str) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(x (N, max_length) int64, lengths (N,) int64, counts) for ``lines`` under the front end
    ``settings``. Unknown words become ``<unk>``; a sentence longer than max_length − 1 words is
    cut there. ``counts`` says how many of each happened (the caller says so)."""
    vocabulary, max_length = settings["vocabulary"], int(settings["max_length"])
    index = {w: i for i, w in enumerate(vocabulary)}
    unk = index.get(settings.get("unk", UNK))
    eos = index[settings.get("eos", EOS)]
    x = torch.full((len(lines), max_length), PAD_ID, dtype=torch.int64)
    lengths = torch.empty(len(lines), dtype=torch.int64)
    unknown = truncated = tokens = 0
    for i, line in enumerate(lines):
        words = line.split()
        if len(words) > max_length - 1:
            words, truncated = words[:max_length - 1], truncated + 1
        ids = []
        for w in words:
            j = index.get(w)
            if j is None or j < len(SPECIALS):  # a literal <pad>/<bos>/<eos> in text is a word we do not know
                unknown += 1
                j = unk
            if j is None:
                raise VaelabError(f"{where}: the word {w!r} is not in the vocabulary, which has no {UNK}")
            ids.append(j)
        ids.append(eos)
        x[i, :len(ids)] = torch.tensor(ids)
        lengths[i] = len(ids)
        tokens += len(words)
    return x, lengths, {"unknown": unknown, "truncated": truncated, "words": tokens}


def say_counts(counts: dict, where: str, max_length: int) -> None:
    """One warning line for unknown words and cut sentences, so nothing changes silently."""
    parts = []
    if counts["unknown"]:
        parts.append(f"{counts['unknown']:,} of {counts['words']:,} words are not in the vocabulary and were "
                     f"read as {UNK}")
    if counts["truncated"]:
        parts.append(f"{counts['truncated']:,} sentences longer than {max_length - 1} words were cut to "
                     f"{max_length - 1}")
    if parts:
        warnings.warn(f"{where}: " + "; ".join(parts), VaelabWarning, stacklevel=3)


def decode_ids(ids, settings: dict) -> str:
    """The words of one row of ids, up to its <eos> (pad and bos dropped)."""
    vocabulary = settings["vocabulary"]
    words = []
    for i in (ids.tolist() if hasattr(ids, "tolist") else ids):
        if i == EOS_ID:
            break
        if i >= len(SPECIALS):
            words.append(vocabulary[i])
    return " ".join(words)


def load_ptb(root: Path, split: str):
    """PTB's ``split`` (train, val or test) as a Dataset of word ids, every file md5-checked."""
    from .sources import Dataset

    if split not in PTB_FILES:
        raise VaelabError(f"unknown split {split!r} of ptb; choose one of {', '.join(PTB_FILES)}")
    settings = front_end(ptb_vocabulary(root), PTB_MAX_LENGTH, "ptb.train.txt (md5 " + PTB_MD5["ptb.train.txt"] + ")")
    path = checked_ptb_file(root, PTB_FILES[split])
    x, lengths, counts = encode_lines(read_lines(path, "PTB file"), settings, f"ptb {split}")
    if counts["unknown"] or counts["truncated"]:
        say_counts(counts, f"ptb {split}", PTB_MAX_LENGTH)
    return Dataset("ptb", x, extras={"lengths": lengths}, front_end=settings)


def load_text_file(path: Path, root: Path, settings: dict | None = None):
    """``text:PATH``: one sentence per line, read with ``settings``'s vocabulary (a run's), else
    PTB's training vocabulary; unknown words become <unk> (counted), long lines are cut (counted)."""
    from .sources import Dataset

    settings = settings or front_end(ptb_vocabulary(root), PTB_MAX_LENGTH, "ptb.train.txt (md5 " +
                                     PTB_MD5["ptb.train.txt"] + ")")
    lines = read_lines(path, "text file")
    x, lengths, counts = encode_lines(lines, settings, f"text:{path}")
    say_counts(counts, f"text:{path}", int(settings["max_length"]))
    return Dataset(f"text:{path}", x, extras={"lengths": lengths}, front_end=settings)


def sentence_batch(sentences: list[str], settings: dict, what: str = "--text"):
    """The Batch of ``sentences`` a text model reads (a word outside the vocabulary is tried in
    lower case, as PTB is written); refused when a sentence holds no known word (the model
    would read only <unk>s: nothing of the sentence)."""
    from .batch import Batch

    known = set(settings["vocabulary"])
    lines = [" ".join(w if w in known else w.lower() for w in s.split()) for s in sentences]
    for s, line in zip(sentences, lines):
        if not line:
            raise VaelabError(f"{what} is empty; give a sentence")
    x, lengths, counts = encode_lines(lines, settings, what)
    unk = settings["vocabulary"].index(settings.get("unk", UNK)) if settings.get("unk", UNK) in settings["vocabulary"] \
        else -1
    for s, row, n in zip(sentences, x, lengths):
        words = row[:int(n) - 1]
        if len(words) and bool((words == unk).all()):
            raise VaelabError(f"{what} {s!r} holds only words outside the model's "
                              f"{len(settings['vocabulary']):,}-word vocabulary; use words it knows "
                              "(lower case, numbers as N)")
    say_counts(counts, what, int(settings["max_length"]))
    return Batch(x, extras={"lengths": lengths})

