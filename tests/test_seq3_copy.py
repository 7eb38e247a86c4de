"""seq3 --copy: a pointer-generator reconstructor (See, Liu & Manning 2017; beyond SEQ³'s own)
whose next-word distribution mixes the vocabulary softmax with the attention mass on the middle
words; off, the model is the one without it."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import vaelab
from vaelab.errors import VaelabError
from vaelab.models.registry import build
from vaelab.models.seq3 import copy_log_mixture

from test_text import TINY_TEXT, tiny_dataset

# the parameters and buffers of a default seq3, as they were before --copy existed
KEYS = ['output_bias', 'idf', 'embed.weight', 'encoder.weight_ih_l0', 'encoder.weight_hh_l0', 'encoder.bias_ih_l0',
        'encoder.bias_hh_l0', 'encoder.weight_ih_l0_reverse', 'encoder.weight_hh_l0_reverse',
        'encoder.bias_ih_l0_reverse', 'encoder.bias_hh_l0_reverse', 'bridge.weight', 'bridge.bias',
        'compressor.cell.weight_ih', 'compressor.cell.weight_hh', 'compressor.cell.bias_ih', 'compressor.cell.bias_hh',
        'compressor.score.weight', 'compressor.combine.weight', 'compressor.combine.bias',
        'reconstructor.cell.weight_ih', 'reconstructor.cell.weight_hh', 'reconstructor.cell.bias_ih',
        'reconstructor.cell.bias_hh', 'reconstructor.score.weight', 'reconstructor.combine.weight',
        'reconstructor.combine.bias', 'to_embedding.weight', 'to_embedding.bias']


def _model(ds, **extra):
    torch.manual_seed(0)
    return build("seq3", input_shape=[ds.shape[0]], vocabulary=ds.front_end["vocabulary"], **TINY_TEXT, **extra)


def _steps(model, batch):
    """(x, greedy one-hots, middle lengths, õ, attention, gate logits) of the reconstructor."""
    onehots, _, m = model.eval().compress(batch, hard=True)
    lengths = batch.extras["lengths"]
    x = batch.x[:, :int(lengths.max())]
    return (x, onehots, m, *model.reconstructor_steps(x, onehots, m, 1.0))


def _mixture(model, out, weights, gate, onehots):
    return torch.stack([model.copy_logp(out[:, t], weights[:, t], gate[:, t], onehots)
                        for t in range(out.shape[1])], 1)


def test_copy_off_keeps_the_parameters_and_on_adds_only_the_gate():
    ds = tiny_dataset(8)
    assert list(_model(ds).state_dict()) == KEYS
    assert list(_model(ds, copy=False).state_dict()) == KEYS
    on = _model(ds, copy=True)
    assert set(on.state_dict()) - set(KEYS) == {"reconstructor.gate.weight", "reconstructor.gate.bias"}
    assert set(KEYS) <= set(on.state_dict())
    h, e = TINY_TEXT["hidden_dim"], TINY_TEXT["embedding_dim"]
    assert on.reconstructor.gate.weight.shape == (1, 2 * h + h + e)  # over [c_t; h_t; input word]
    assert not hasattr(_model(ds).reconstructor, "gate") and not hasattr(on.compressor, "gate")


def test_copy_without_attention_is_refused_in_one_line():
    ds = tiny_dataset(8)
    with pytest.raises(VaelabError, match=r"needs attention: drop --no-attention, or drop --copy") as err:
        _model(ds, copy=True, attention=False)
    assert "\n" not in str(err.value)


def test_the_mixture_is_a_distribution_and_the_nll_reads_it():
    """Σ_w p(w) = 1 at every step; padded middle positions get no attention; the reconstruction
    term is −Σ_t log p(x_t) of the same mixture."""
    ds = tiny_dataset(16)
    model = _model(ds, copy=True)
    batch = ds.batch()
    x, onehots, m, out, weights, gate = _steps(model, batch)
    assert int(m.min()) < int(m.max())  # some middle sequences are padded
    padded = torch.arange(onehots.shape[1]) >= m.unsqueeze(1)  # (B, M)
    assert bool((weights.masked_select(padded.unsqueeze(1).expand_as(weights)) == 0).all())
    logp = _mixture(model, out, weights, gate, onehots)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(logp.shape[:2]), atol=1e-5)
    p_gen = torch.sigmoid(gate.detach())
    assert 0 < float(p_gen.min()) and float(p_gen.max()) < 1  # a real mixture at the start
    real = torch.arange(x.shape[1]) < batch.extras["lengths"].unsqueeze(1)
    expected = -(logp.gather(-1, x.unsqueeze(-1)).squeeze(-1) * real).sum(1)
    assert torch.allclose(model.reconstruction_nll(batch, onehots, m), expected, rtol=1e-5, atol=1e-5)


def test_with_p_gen_zero_a_words_probability_is_its_attention_mass_and_decodes_copy():
    """p_gen forced to ~0: p(w) = Σ_{i: y_i = w} a_t,i, so every greedily decoded word is a middle
    word of its sentence; p_gen forced to ~1: the vocabulary softmax alone."""
    ds = tiny_dataset(16)
    model = _model(ds, copy=True)
    batch = ds.batch()
    with torch.no_grad():
        model.reconstructor.gate.weight.zero_()
        model.reconstructor.gate.bias.fill_(-50.0)
    x, onehots, m, out, weights, gate = _steps(model, batch)
    ids = onehots.argmax(-1)
    expected = torch.zeros(*out.shape[:2], onehots.shape[-1])
    for b in range(len(ids)):
        for i in range(int(m[b])):
            expected[b, :, ids[b, i]] += weights[b, :, i]
    p = _mixture(model, out, weights, gate, onehots).exp()
    assert torch.allclose(p, expected, atol=1e-6)
    decoded = model.reconstruct_from_middle(batch)
    for b in range(len(ids)):
        words = decoded.x[b, :int(decoded.extras["lengths"][b]) - 1].tolist()
        assert words and set(words) <= set(ids[b, :int(m[b])].tolist())
    # the token accuracy reads the same mixture: its guesses are the most attended middle words
    guess = expected.argmax(-1)
    real = torch.arange(x.shape[1]) < batch.extras["lengths"].unsqueeze(1)
    accuracy = ((guess == x) & real).sum(1).double() / batch.extras["lengths"].double()
    assert torch.allclose(model.token_accuracy(batch), accuracy)
    with torch.no_grad():
        model.reconstructor.gate.bias.fill_(50.0)
    x, onehots, m, out, weights, gate = _steps(model, batch)
    vocab = model.logits(out, "reconstructor").log_softmax(-1)
    assert torch.allclose(_mixture(model, out, weights, gate, onehots), vocab, atol=1e-5)


def test_the_log_space_mixture_is_exact_with_the_mixtures_gradient_where_nothing_is_copied():
    """Value and gradients equal those of log(p_gen·p_vocab + (1 − p_gen)·copy) computed directly
    (in double, where that is safe), also where the copy mass is 0; finite where p_vocab
    underflows in single precision."""
    torch.manual_seed(0)
    logits = torch.randn(6, 9, dtype=torch.float64, requires_grad=True)
    gate = torch.randn(6, dtype=torch.float64, requires_grad=True)
    raw = torch.rand(6, 9, dtype=torch.float64)
    raw[:, ::3] = 0
    copy = (raw / raw.sum(-1, keepdim=True)).requires_grad_()
    w = torch.randn(6, 9, dtype=torch.float64)
    ours = (copy_log_mixture(logits.log_softmax(-1), gate, copy) * w).sum()
    p_gen = torch.sigmoid(gate).unsqueeze(-1)
    direct = ((p_gen * logits.softmax(-1) + (1 - p_gen) * copy).log() * w).sum()
    assert float(ours.detach()) == pytest.approx(float(direct.detach()), rel=1e-12)
    for a, b in zip(torch.autograd.grad(ours, (logits, gate, copy)), torch.autograd.grad(direct, (logits, gate, copy))):
        assert torch.allclose(a, b)
    far = torch.tensor([[0.0, -300.0, 0.0]], requires_grad=True)  # p_vocab of word 1 is 0 in float32
    mass = torch.tensor([[0.0, 0.5, 0.5]], requires_grad=True)
    logp = copy_log_mixture(far.log_softmax(-1), torch.zeros(1), mass)
    assert float(logp[0, 1].detach()) == pytest.approx(float(torch.log(torch.tensor(0.25))), rel=1e-6)
    logp[0, 1].backward()
    assert torch.isfinite(far.grad).all() and torch.isfinite(mass.grad).all()


def test_the_copy_path_holds_the_middle_words_fixed(monkeypatch):
    """With a zero embedding the encoder reads nothing of the middle words, so only the copy path
    could pass the reconstruction's gradient to the compressor's logits: it must not (the middle
    words are held fixed there), with --copy or without."""
    ds = tiny_dataset(16)
    batch = ds.batch()
    found = {}
    for copy in (False, True):
        model = _model(ds, copy=copy).train()
        with torch.no_grad():
            model.embed.weight.zero_()
        kept = []
        logits = model.logits

        def keep(out, which, logits=logits, kept=kept):
            value = logits(out, which)
            if which == "compressor":
                value.retain_grad()
                kept.append(value)
            return value

        monkeypatch.setattr(model, "logits", keep)
        torch.manual_seed(1)
        model.loss(batch).total.backward()
        grads = torch.stack([k.grad for k in kept])
        assert torch.isfinite(grads).all()
        found[copy] = float(grads.abs().sum())
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert found[False] == 0 and found[True] == 0


def test_a_copy_run_trains_saves_and_loads(tmp_path):
    ds = tiny_dataset(40)
    settings = {"epochs": 1, "threads": 1, "batch_size": 8, "val_size": 0, "seed": 0}
    vaelab.train("seq3", ds, tmp_path / "c", model_config={**TINY_TEXT, "copy": True}, config=settings,
                 progress=False)
    model = vaelab.load(tmp_path / "c").eval()
    assert model.config.copy and "reconstructor.gate.bias" in model.state_dict()
    fresh = _model(ds, copy=True)
    assert not torch.equal(model.reconstructor.gate.weight, fresh.reconstructor.gate.weight)  # it trained
    batch = ds.batch()
    accuracy = model.token_accuracy(batch)
    assert bool(((0 <= accuracy) & (accuracy <= 1)).all())
    again = vaelab.load(tmp_path / "c").eval()
    assert torch.equal(again.token_accuracy(batch), accuracy)
    assert torch.equal(again.reconstruct_from_middle(batch).x, model.reconstruct_from_middle(batch).x)
    assert "  middle: " in (tmp_path / "c" / "text.txt").read_text()


def test_the_command_line_offers_copy(parsed):
    assert parsed("seq3")[0].copy is False
    assert parsed("seq3", "--copy")[0].copy is True


def compare_with_and_without(monkeypatch, tmp_path, setting: str):
    """(the networks fit was asked for, the comparison without ``setting``, with it) of ``compare
    secret-code`` on tiny data, its fit built from the network it is given; the command line's flag
    for ``setting`` checked on the way."""
    import argparse
    import importlib

    from vaelab.compare.cli import add_compare_parser

    sc = importlib.import_module("vaelab.compare.secret_code")
    ds = tiny_dataset(30)
    lm = build("lstm-lm", input_shape=[ds.shape[0]], vocabulary=ds.front_end["vocabulary"], **TINY_TEXT)
    seen = []

    def fake_fit(family, train, out, net, config, progress):
        seen.append(net)
        return build(family, input_shape=[ds.shape[0]], vocabulary=ds.front_end["vocabulary"], **TINY_TEXT,
                     **{setting: net.get(setting, False)})

    monkeypatch.setattr(sc, "load_dataset", lambda *a, **k: ds)
    monkeypatch.setattr(sc, "load", lambda run: lm)
    monkeypatch.setattr(sc, "fit", fake_fit)
    plain = sc.secret_code(tmp_path / "a", lm_run="lm", weights=(0.0,), eval_size=5, progress=False)
    on = sc.secret_code(tmp_path / "b", lm_run="lm", weights=(0.0,), eval_size=5, progress=False, **{setting: True})
    assert setting not in seen[0] and setting not in plain.settings["network"]  # recorded only when on
    assert seen[1][setting] is True and on.settings["network"][setting] is True
    parser = argparse.ArgumentParser()
    add_compare_parser(parser.add_subparsers(dest="command"))
    assert getattr(parser.parse_args(["compare", "secret-code", "--out", "o", f"--{setting}"]), setting) is True
    assert getattr(parser.parse_args(["compare", "secret-code", "--out", "o"]), setting) is False
    return seen, plain, on


def test_compare_secret_code_passes_copy_and_records_it_only_when_on(monkeypatch, tmp_path):
    _, plain, copied = compare_with_and_without(monkeypatch, tmp_path, "copy")
    assert "pointer-generator" in copied.notes[0] and "pointer-generator" not in plain.notes[0]


def test_a_run_recorded_before_copy_existed_loads_resumes_and_is_reused_without_it(tmp_path):
    """A record without ``copy`` was trained without it: it loads, --resume continues it, and the
    comparison reuses it at the default; --copy refuses it in one line naming the setting."""
    import json

    from vaelab.compare.common import fit

    ds = tiny_dataset(24)
    config = {"epochs": 1, "batch_size": 8, "threads": 1, "val_size": 0, "seed": 0}
    out = tmp_path / "run"
    first = fit("seq3", ds, out, dict(TINY_TEXT), config, False)
    for name in ("run.json", "config.json"):  # as a run saved before the setting existed
        record = json.loads((out / name).read_text())
        del record["config"]["copy"]
        (out / name).write_text(json.dumps(record))
    again = fit("seq3", ds, out, dict(TINY_TEXT), config, False)
    assert again.config.copy is False and list(again.state_dict()) == KEYS
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    with pytest.raises(VaelabError, match=r"other settings \(copy False, now True\); remove it"):
        fit("seq3", ds, out, {**TINY_TEXT, "copy": True}, config, False)
    vaelab.train("seq3", ds, out, config={**config, "epochs": 2}, resume=True, progress=False)
    assert vaelab.load(out).config.copy is False
