"""seq3 --point: a compressor that chooses each middle word among the input's words by its
attention over the sentence (a pointer network; beyond SEQ³'s own), with the prior then
KL(q_t ‖ p_LM); off, the model is the one without it."""
from __future__ import annotations

import pytest
import torch

from vaelab.errors import VaelabError
from vaelab.models.registry import build
from vaelab.models.seq3 import BANNED, pointer_logits

from test_seq3_copy import KEYS, compare_with_and_without
from test_text import TINY_TEXT, tiny_dataset


def _model(ds, **extra):
    torch.manual_seed(0)
    return build("seq3", input_shape=[ds.shape[0]], vocabulary=ds.front_end["vocabulary"], **TINY_TEXT, **extra)


def _inside(batch, middle) -> bool:
    return all(set(y[:int(k) - 1].tolist()) <= set(x[:int(n) - 1].tolist())
               for x, y, n, k in zip(batch.x, middle.x, batch.extras["lengths"], middle.extras["lengths"]))


def test_point_adds_no_parameter():
    assert list(_model(tiny_dataset(8), point=True).state_dict()) == KEYS


def test_every_middle_word_is_a_word_of_its_sentence_and_the_attention_learns_from_the_reconstruction():
    ds = tiny_dataset(16)
    model = _model(ds, point=True)
    batch = ds.batch()
    assert _inside(batch, model.eval().middle(batch))
    assert not _inside(batch, _model(ds).eval().middle(batch))  # the vocabulary compressor: any word
    model.train()
    onehots, logq, m = model.compress(batch)
    ids = onehots.argmax(-1)
    for x, y, n, k in zip(batch.x, ids, batch.extras["lengths"], m):
        assert set(y[:int(k)].tolist()) <= set(x[:int(n) - 1].tolist())  # training draws too
    assert torch.allclose(logq.exp().sum(-1), torch.ones(logq.shape[:2]), atol=1e-4)
    model.reconstruction_nll(batch, onehots, m).sum().backward()
    assert model.compressor.score.weight.grad.abs().sum() > 0  # the pointer's attention


def test_the_pointer_gathers_the_attention_onto_the_words_and_never_onto_eos():
    x = torch.tensor([[5, 7, 5, 2, 0]])  # a, b, a, <eos>, <pad>
    scores = torch.tensor([[0.0, 1.0, 0.0, 9.0, -1e9]])
    q = pointer_logits(scores, x, 10).exp()[0]
    a = torch.tensor([1.0, torch.e, 1.0]) / (2 + torch.e)
    assert torch.allclose(q[[5, 7]], torch.stack([a[0] + a[2], a[1]]))
    assert float(q[:BANNED].sum()) < 1e-20 and abs(float(q.sum()) - 1) < 1e-6


def test_the_pointers_prior_is_kl_from_the_compressor_to_the_language_model():
    ds = tiny_dataset(8)
    model = _model(ds, point=True, lm_embedding_dim=8, lm_hidden_dim=8).eval()
    onehots, logq, m = model.compress(ds.batch(), hard=True)
    ids = onehots.argmax(-1)
    inputs = torch.cat([torch.ones_like(ids[:, :1]), ids[:, :-1]], 1)
    out, _ = model.lm.lstm(model.lm.embed(inputs))
    logp = model.lm.output(out)[..., BANNED:].log_softmax(-1)
    mask = torch.arange(ids.shape[1]).unsqueeze(0) < m.unsqueeze(1)
    q = logq[..., BANNED:].exp()
    expected = ((q * (logq[..., BANNED:] - logp)).sum(-1) * mask).sum(1)
    assert torch.allclose(model.lm_prior(onehots, logq, m), expected, rtol=1e-4)
    assert bool(torch.isfinite(expected).all()) and bool((expected > 0).all())


def test_point_without_attention_is_refused_in_one_line():
    with pytest.raises(VaelabError, match=r"needs attention: drop --no-attention, or drop --point") as err:
        _model(tiny_dataset(8), point=True, attention=False)
    assert "\n" not in str(err.value)


def test_the_command_line_offers_point(parsed):
    assert parsed("seq3")[0].point is False
    assert parsed("seq3", "--point")[0].point is True


def test_compare_secret_code_passes_point_and_records_it_only_when_on(monkeypatch, tmp_path):
    _, plain, pointed = compare_with_and_without(monkeypatch, tmp_path, "point")
    assert pointed.rows[0]["copied"] == 1.0  # every middle word is the input's
    assert "pointer compressor" in pointed.notes[0] and "pointer compressor" not in plain.notes[0]
