"""What every sentence model shares: it reads text (word ids with their lengths), keeps the
vocabulary of its data in its config (so a loaded model maps words to ids and back), and
counts the tokens its per-sentence figures are over (words + ``<eos>``)."""
from __future__ import annotations

from dataclasses import field

import torch

from ..data.text import front_end
from ..errors import VaelabError
from ..nn.text import lengths_of
from .base import Model


def input_shape_field():
    return field(default=(83,), metadata={"option": False,
                                          "help": "fixed padded sentence length (words + <eos>); set from the data"})


def vocabulary_field():
    return field(default=(), metadata={"option": False,
                                       "help": "the words behind the ids (<pad>, <bos>, <eos>, then the training "
                                               "file's types); set from the data"})


class TextModel(Model):
    """Base of the sentence families: ``reads = "text"`` (refused on images and vice versa)."""

    reads = "text"

    @classmethod
    def data_settings(cls, ds, settings: dict) -> dict:
        """``settings`` with the data's vocabulary and fixed length filled in."""
        fe = getattr(ds, "front_end", {}) or {}
        if fe.get("kind") != "text":
            raise VaelabError(f"'{cls.name}' reads sentences, but {ds.name} holds no text; use --data ptb or text:PATH")
        return {**settings, "vocabulary": list(fe["vocabulary"]), "input_shape": [int(fe["max_length"])]}

    @property
    def vocab_size(self) -> int:
        return len(self.config.vocabulary)

    @property
    def front_end(self) -> dict:
        """The settings that turn words into this model's x and back."""
        return front_end(list(self.config.vocabulary), self.config.input_shape[0], "the run's training data")

    @property
    def unk_id(self) -> int:
        try:
            return self.config.vocabulary.index("<unk>")
        except ValueError:
            return 2

    def count_tokens(self, batch) -> torch.Tensor:
        """Predicted tokens per sentence: its words and the <eos> that ends it."""
        return lengths_of(batch)

    def check_vocabulary(self) -> None:
        if len(self.config.vocabulary) < 4:
            raise VaelabError(f"a {self.name} needs the vocabulary of its data; train it with vaelab.train or "
                              "`vaelab train`, which fill it from the data")
