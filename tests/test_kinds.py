"""A model given data of another kind (images, sentences, speech) is refused in one line that
names both kinds and the data to use, before any family-specific check."""
from __future__ import annotations

import pytest
import torch

from vaelab.data import Dataset
from vaelab.data.kinds import check_reads, data_kind
from vaelab.errors import VaelabError
from vaelab.models import model_class

DATA = {"images": Dataset("pictures", torch.zeros(2, 1, 4, 4)),
        "text": Dataset("sentences", torch.zeros(2, 5, dtype=torch.long), front_end={"kind": "text"}),
        "audio": Dataset("clips", torch.zeros(2, 8, 16), front_end={"kind": "log-mel"})}
MODEL = {"images": "vae", "text": "text-vae", "audio": "adain-vc"}
WORD = {"images": "images", "text": "sentences", "audio": "speech"}


def test_each_dataset_has_its_kind():
    assert {kind: data_kind(ds) for kind, ds in DATA.items()} == {k: k for k in DATA}


@pytest.mark.parametrize("wants", sorted(MODEL))
@pytest.mark.parametrize("has", sorted(DATA))
def test_a_model_reads_only_its_own_kind(wants, has):
    model = model_class(MODEL[wants])
    if wants == has:
        check_reads(model, DATA[has], MODEL[wants])
        return
    with pytest.raises(VaelabError) as err:
        check_reads(model, DATA[has], MODEL[wants])
    message = str(err.value)
    assert "\n" not in message
    assert f"'{MODEL[wants]}' reads {WORD[wants]}, but {DATA[has].name} holds {WORD[has]}" in message
