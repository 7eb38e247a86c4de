"""seq3's shallow fusion with the language model (--lm-fusion β): the reconstructor's logits plus
β · log p_LM given the true prefix, in training, token accuracy and greedy reconstructions alike;
and the comparison's lm_accuracy, the language model alone on the same measure."""
from __future__ import annotations

import pytest
import torch

import vaelab
from vaelab.compare.secret_code import lm_accuracy
from vaelab.errors import VaelabError
from vaelab.models.registry import build

from test_text import TINY_TEXT, tiny_dataset


def fused_pair(ds, beta=1.0):
    """A trained-looking LM (random but fixed) and a seq3 fused with it, its own reconstructor logits silenced."""
    torch.manual_seed(0)
    lm = build("lstm-lm", input_shape=[ds.shape[0]], vocabulary=ds.front_end["vocabulary"], **TINY_TEXT).eval()
    model = build("seq3", input_shape=[ds.shape[0]], vocabulary=ds.front_end["vocabulary"],
                  **{**TINY_TEXT, "lm_run": "unused", "lm_embedding_dim": 16, "lm_hidden_dim": 16, "lm_fusion": beta})
    model.lm.load_state_dict(lm.decoder.state_dict())
    with torch.no_grad():
        model.to_embedding.weight.zero_()
        model.to_embedding.bias.zero_()
        model.output_bias.zero_()  # the reconstructor now says nothing: only the fused language model speaks
    return lm, model.eval()


def test_a_silent_reconstructor_fused_with_the_lm_is_the_lm():
    ds = tiny_dataset(40)
    batch = ds.batch()
    lm, model = fused_pair(ds)
    accuracy = model.token_accuracy(batch)
    assert float(accuracy.mean()) == pytest.approx(lm_accuracy(lm, batch), abs=1e-9) and float(accuracy.mean()) > 0
    # −log p_rec(x | y) is then the language model's −log p(x), whatever the middle sequence
    onehots, _, m = model.compress(batch, hard=True)
    assert torch.allclose(model.reconstruction_nll(batch, onehots, m), lm.sentence_nll(batch), atol=1e-4)
    # and the greedy reconstruction, stepping the LM's state, its greedy sentence
    greedy = model.reconstruct_from_middle(batch[:5]).x
    expected = lm.decoder.generate(5, ds.shape[0], greedy=True)
    n = int((expected[0] != 0).sum())
    assert torch.equal(greedy[0, :n], expected[0, :n])


def test_beta_weighs_the_lm_and_zero_leaves_the_reconstructor_alone():
    """With silent reconstructor logits the fused distribution is p_LM^β renormalised:
    −log p = −β log p_LM(x_t | x_<t) + log Σ_w p_LM(w | x_<t)^β at each token."""
    from vaelab.nn.text import decoder_inputs, length_mask, lengths_of, run_lstm, trimmed
    ds = tiny_dataset(20)
    batch = ds.batch()
    lm, half = fused_pair(ds, beta=0.5)
    lengths = lengths_of(batch)
    x = trimmed(batch.x, lengths)
    out, _ = run_lstm(lm.decoder.lstm, lm.decoder.embed(decoder_inputs(x)), lengths)
    normaliser = (0.5 * lm.decoder.output(out).log_softmax(-1)).logsumexp(-1)
    expected = 0.5 * lm.sentence_nll(batch) + (normaliser * length_mask(lengths, x.shape[1])).sum(1)
    onehots, _, m = half.compress(batch, hard=True)
    assert torch.allclose(half.reconstruction_nll(batch, onehots, m), expected.detach(), atol=1e-3)
    _, off = fused_pair(ds, beta=0.0)
    assert off.fusion(x, lengths) is None and off.fusion_step(x[:, 0], None) == (None, None)


def test_fusion_without_a_language_model_is_one_clear_error(tmp_path):
    ds = tiny_dataset(20)
    with pytest.raises(VaelabError, match="--lm-fusion above 0 fuses the reconstructor with a language model"):
        vaelab.train("seq3", ds, tmp_path / "bad", model_config={**TINY_TEXT, "lm_fusion": 1.0},
                     config={"epochs": 1, "threads": 1, "val_size": 0}, progress=False)
    with pytest.raises(VaelabError, match="lm_fusion must be >= 0"):
        build("seq3", input_shape=[ds.shape[0]], vocabulary=ds.front_end["vocabulary"], **TINY_TEXT, lm_fusion=-1.0)


def test_a_fused_run_trains_and_its_lm_stays_frozen(tmp_path):
    ds = tiny_dataset(80)
    settings = {"epochs": 1, "threads": 1, "batch_size": 16, "val_size": 0}
    vaelab.train("lstm-lm", ds, tmp_path / "lm", model_config=TINY_TEXT, config=settings, progress=False)
    vaelab.train("seq3", ds, tmp_path / "s", model_config={**TINY_TEXT, "lm_fusion": 1.0, "lm_run": str(tmp_path / "lm")},
                 config=settings, progress=False)
    model, lm = vaelab.load(tmp_path / "s"), vaelab.load(tmp_path / "lm")
    assert model.config.lm_fusion == 1.0
    assert torch.equal(model.lm.output.weight, lm.decoder.output.weight)
