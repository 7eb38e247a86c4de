"""seq3: the middle sequence is shorter, made of vocabulary words, trained through the
straight-through Gumbel-softmax; the language-model prior reads a trained lstm-lm; the secret-code
measures come out for any model."""
from __future__ import annotations

import math

import pytest
import torch

import vaelab
from vaelab.compare.secret_code import secret_code_measures
from vaelab.errors import VaelabError
from vaelab.models.registry import build

from test_text import TINY_TEXT, tiny_dataset


def test_middle_sequences_are_shorter_words_and_gradients_reach_the_compressor():
    ds = tiny_dataset(16)
    torch.manual_seed(0)
    model = build("seq3", input_shape=[ds.shape[0]], vocabulary=ds.front_end["vocabulary"], **TINY_TEXT, ratio=0.5)
    batch = ds.batch()
    middle = model.eval().middle(batch)
    words = batch.extras["lengths"] - 1
    assert torch.equal(middle.extras["lengths"] - 1, torch.ceil(words * 0.5).long().clamp(min=1))
    assert bool((middle.x[:, 0] > 2).all())  # never <pad>, <bos> or <eos> inside
    model.train()
    model.loss(batch).total.backward()
    assert model.compressor.cell.weight_ih.grad.abs().sum() > 0  # through the straight-through samples


def test_lm_prior_reads_a_trained_language_model(tmp_path):
    ds = tiny_dataset(80)
    settings = {"epochs": 1, "threads": 1, "batch_size": 16, "val_size": 0}
    vaelab.train("lstm-lm", ds, tmp_path / "lm", model_config=TINY_TEXT, config=settings, progress=False)
    with pytest.raises(VaelabError, match="needs the language model"):
        vaelab.train("seq3", ds, tmp_path / "bad", model_config={**TINY_TEXT, "lm_weight": 1.0}, config=settings,
                     progress=False)
    vaelab.train("seq3", ds, tmp_path / "s", model_config={**TINY_TEXT, "lm_weight": 0.5, "lm_run": str(tmp_path / "lm")},
                 config=settings, progress=False)
    model, lm = vaelab.load(tmp_path / "s"), vaelab.load(tmp_path / "lm")
    assert torch.equal(model.lm.output.weight, lm.decoder.output.weight)  # the prior is the trained LM, frozen
    loss = model.loss(ds.batch())
    assert set(loss.terms) == {"recon", "lm_prior"} and float(loss.terms["lm_prior"]) >= 0
    torch.manual_seed(3)
    loss = model.loss(ds.batch())  # --lm-weight weighs the prior term in the objective
    assert float(loss.total) == pytest.approx(float(loss.terms["recon"] + 0.5 * loss.terms["lm_prior"]), rel=1e-5)
    m = secret_code_measures(model, lm, ds.batch()[:20], ds.batch(), seed=0)
    assert 0 <= m["copied"] <= 1 and 0 <= m["token_accuracy"] <= 1 and m["middle_ppl"] > 1
    assert 0 < m["q_top"] <= 1 and 0 <= m["q_entropy"] <= math.log(len(lm.config.vocabulary))
    _, logq, mm = model.eval().compress(ds.batch()[:20], hard=True)
    top = torch.cat([logq[i, :k].exp().max(-1).values for i, k in enumerate(mm.tolist())])
    assert m["q_top"] == pytest.approx(float(top.mean()), rel=1e-4)  # q's top probability along the middle words
    assert "  middle: " in (tmp_path / "s" / "text.txt").read_text()


def test_the_gumbel_temperature_moves_the_gradient_not_the_forward_pass():
    ds = tiny_dataset(16)
    grads, losses = [], []
    for tau in (0.5, 2.0):
        torch.manual_seed(0)
        model = build("seq3", input_shape=[ds.shape[0]], vocabulary=ds.front_end["vocabulary"], **TINY_TEXT, tau=tau)
        torch.manual_seed(1)
        loss = model.loss(ds.batch())
        loss.total.backward()
        losses.append(float(loss.total))
        grads.append(model.compressor.cell.weight_ih.grad.clone())
    assert losses[0] == pytest.approx(losses[1])  # straight-through: the hard one-hot goes forward
    assert not torch.allclose(grads[0], grads[1])  # the soft sample's temperature shapes the gradient


def test_tau_annealing_lowers_the_temperature_to_its_floor():
    ds = tiny_dataset(8)
    model = build("seq3", input_shape=[ds.shape[0]], vocabulary=ds.front_end["vocabulary"], **TINY_TEXT, tau=1.0,
                  tau_decay=0.5, tau_min=0.3)
    model.schedule(0.0)
    assert model.tau == pytest.approx(1.0)
    model.schedule(1.0)
    assert model.tau == pytest.approx(math.exp(-0.5))
    model.schedule(10.0)
    assert model.tau == pytest.approx(0.3)


def test_topic_loss_weighs_rare_words_and_enters_the_objective():
    ds = tiny_dataset(40)
    torch.manual_seed(0)
    model = build("seq3", input_shape=[ds.shape[0]], vocabulary=ds.front_end["vocabulary"], **TINY_TEXT,
                  topic_weight=2.0)
    batch = ds.batch()
    model.prepare(batch)
    counts = torch.zeros(len(model.idf))
    for x, n in zip(batch.x, batch.extras["lengths"]):
        counts[x[:int(n) - 1].unique()] += 1
    common = int(counts.argmax())
    rare = int(torch.where(counts > 0, counts, counts.max() + 1).argmin())
    assert counts[rare] < counts[common]
    assert model.idf[common] < model.idf[rare]
    torch.manual_seed(1)
    loss = model.loss(batch)
    assert set(loss.terms) == {"recon", "topic"} and 0 <= float(loss.terms["topic"]) <= 2
    assert float(loss.total) == pytest.approx(float(loss.terms["recon"] + 2.0 * loss.terms["topic"]), rel=1e-5)


def test_attention_reads_the_whole_middle_sequence():
    """With attention, changing the first middle word changes the reconstructor's last output."""
    ds = tiny_dataset(8)
    torch.manual_seed(0)
    model = build("seq3", input_shape=[ds.shape[0]], vocabulary=ds.front_end["vocabulary"], **TINY_TEXT).eval()
    batch = ds.batch()
    onehots, _, m = model.compress(batch, hard=True)
    x = batch.x[:, :int(batch.extras["lengths"].max())]
    other = onehots.clone()
    other[:, 0] = torch.roll(other[:, 0], 5, -1)
    a = model.reconstructor_outputs(x, onehots, m, 1.0)
    b = model.reconstructor_outputs(x, other, m, 1.0)
    assert not torch.allclose(a[:, -1], b[:, -1])


def test_the_prior_is_the_papers_kl_from_the_language_model_to_the_compressor():
    """Σ_t KL(p_LM(·|y_<t) ‖ q_t): zero where q_t is the language model's own next-word
    distribution, and Σ p (log p − log q) (not the reverse direction) otherwise."""
    ds = tiny_dataset(8)
    torch.manual_seed(0)
    model = build("seq3", input_shape=[ds.shape[0]], vocabulary=ds.front_end["vocabulary"], **TINY_TEXT,
                  lm_embedding_dim=8, lm_hidden_dim=8).eval()
    onehots, logq, m = model.compress(ds.batch(), hard=True)
    ids = onehots.argmax(-1)
    inputs = torch.cat([torch.ones_like(ids[:, :1]), ids[:, :-1]], 1)
    out, _ = model.lm.lstm(model.lm.embed(inputs))
    logp = model.lm.output(out)[..., 3:].log_softmax(-1)
    own = torch.cat([torch.full_like(logp[..., :3], -1e9), logp], -1)
    mask = torch.arange(ids.shape[1]).unsqueeze(0) < m.unsqueeze(1)
    assert torch.allclose(model.lm_prior(onehots, own, m), torch.zeros(len(m)), atol=1e-4)
    forward = ((logp.exp() * (logp - logq[..., 3:])).sum(-1) * mask).sum(1)
    backward = ((logq[..., 3:].exp() * (logq[..., 3:] - logp)).sum(-1) * mask).sum(1)
    assert torch.allclose(model.lm_prior(onehots, logq, m), forward, rtol=1e-4)
    assert not torch.allclose(forward, backward, rtol=1e-2)


def test_a_greedy_draw_trains_on_the_middle_sequence_evaluation_reads():
    """--draw greedy: the training middle words are q's most probable ones (the greedy middle
    sequence), and the relaxed gradient still reaches the compressor; sample draws differ."""
    ds = tiny_dataset(16)
    batch = ds.batch()
    found = {}
    for draw in ("sample", "greedy"):
        torch.manual_seed(0)
        model = build("seq3", input_shape=[ds.shape[0]], vocabulary=ds.front_end["vocabulary"], **TINY_TEXT,
                      draw=draw)
        greedy, _, m = model.eval().compress(batch)
        torch.manual_seed(1)
        drawn, _, _ = model.train().compress(batch)
        found[draw] = torch.equal(drawn.argmax(-1), greedy.argmax(-1))
        torch.manual_seed(1)
        model.loss(batch).total.backward()
        assert model.compressor.cell.weight_ih.grad.abs().sum() > 0
    assert found == {"sample": False, "greedy": True}
    with pytest.raises(VaelabError, match="unknown draw"):
        build("seq3", input_shape=[ds.shape[0]], vocabulary=ds.front_end["vocabulary"], **TINY_TEXT, draw="beam")


def test_a_default_seq3_trains_on_the_greedy_middle_sequence():
    """greedy is the default draw (chosen on validation): training reads the middle words evaluation reads."""
    ds = tiny_dataset(16)
    batch = ds.batch()
    model = build("seq3", input_shape=[ds.shape[0]], vocabulary=ds.front_end["vocabulary"], **TINY_TEXT)
    assert model.config.draw == "greedy"
    greedy, _, _ = model.eval().compress(batch)
    torch.manual_seed(1)
    drawn, _, _ = model.train().compress(batch)
    assert torch.equal(drawn.argmax(-1), greedy.argmax(-1))


def test_the_paper_profile_draws_samples_and_the_quick_one_keeps_the_default(parsed):
    assert parsed("seq3", "--profile", "paper")[0].draw == "sample"
    assert parsed("seq3", "--profile", "quick")[0].draw == "greedy"
    assert parsed("seq3", "--profile", "paper", "--draw", "greedy")[0].draw == "greedy"


def test_a_run_recorded_before_draw_existed_is_reused_as_sampled_and_refused_as_greedy(tmp_path):
    """A comparison's run in --out whose record lacks draw was trained on samples: --draw sample reuses it
    (nothing trained again), the greedy default refuses it in one line naming the setting."""
    import json

    from vaelab.compare.common import fit

    ds = tiny_dataset(24)
    net = {**TINY_TEXT, "draw": "sample"}
    config = {"epochs": 1, "batch_size": 8, "threads": 1, "val_size": 0, "seed": 0}
    out = tmp_path / "run"
    first = fit("seq3", ds, out, net, config, False)
    for name in ("run.json", "config.json"):  # as a run saved before the setting existed
        record = json.loads((out / name).read_text())
        del record["config"]["draw"]
        (out / name).write_text(json.dumps(record))
    metrics = (out / "metrics.jsonl").read_text()
    again = fit("seq3", ds, out, net, config, False)
    assert again.config.draw == "sample" and (out / "metrics.jsonl").read_text() == metrics
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    with pytest.raises(VaelabError, match=r"holds a run with other settings \(draw sample, now greedy\); remove it"):
        fit("seq3", ds, out, {**net, "draw": "greedy"}, config, False)


def test_compare_secret_code_hands_its_training_settings_to_each_run(monkeypatch, tmp_path):
    """--draw, --tau-decay, --init-from-lm, --batch-size and --lr reach the seq3 runs; --draw is always recorded
    (greedy by default), the others are left out at their defaults (so that earlier runs in --out still match)."""
    import importlib
    sc = importlib.import_module("vaelab.compare.secret_code")  # the module (the package exports the function)
    ds = tiny_dataset(30)
    lm = build("lstm-lm", input_shape=[ds.shape[0]], vocabulary=ds.front_end["vocabulary"], **TINY_TEXT)
    seen = []

    def fake_fit(family, train, out, net, config, progress):
        seen.append((net, config))
        return build(family, input_shape=[ds.shape[0]], vocabulary=ds.front_end["vocabulary"], **TINY_TEXT)

    monkeypatch.setattr(sc, "load_dataset", lambda *a, **k: ds)
    monkeypatch.setattr(sc, "load", lambda run: lm)
    monkeypatch.setattr(sc, "fit", fake_fit)
    sc.secret_code(tmp_path / "a", lm_run="lm", weights=(0.2,), eval_size=5, progress=False)
    sc.secret_code(tmp_path / "b", lm_run="lm", weights=(0.2,), eval_size=5, progress=False, draw="sample",
                   tau_decay=0.5, batch_size=16, lr=3e-3, init_from_lm=True, lm_fusion=0.5)
    (net_a, config_a), (net_b, config_b) = seen
    assert net_a["draw"] == "greedy" and not {"tau_decay", "init_from_lm", "lm_fusion"} & set(net_a)
    assert net_b["lm_fusion"] == 0.5
    assert "lr" not in config_a and config_a["batch_size"] == 32
    assert net_b["draw"] == "sample" and net_b["tau_decay"] == 0.5 and net_b["init_from_lm"] and net_b["lm_weight"] == 0.2
    assert config_b["batch_size"] == 16 and config_b["lr"] == 3e-3


def test_init_from_lm_starts_the_embedding_from_the_language_models(tmp_path):
    """Same sizes: E starts as the LM's embedding (rescaled); a smaller E: the LM embedding's top
    principal coordinates, so that words near in the LM are near in E. Without --lm-run: a clear
    error."""
    from vaelab.models.seq3 import embedding_start
    ds = tiny_dataset(80)
    settings = {"epochs": 1, "threads": 1, "batch_size": 16, "val_size": 0}
    vaelab.train("lstm-lm", ds, tmp_path / "lm", model_config=TINY_TEXT, config=settings, progress=False)
    lm = vaelab.load(tmp_path / "lm").decoder.embed.weight.detach()
    with pytest.raises(VaelabError, match="--init-from-lm"):
        vaelab.train("seq3", ds, tmp_path / "bad", model_config={**TINY_TEXT, "init_from_lm": True}, config=settings,
                     progress=False)
    starts = {}
    for name, extra in (("plain", {}), ("same", {"init_from_lm": True}),
                        ("small", {"init_from_lm": True, "embedding_dim": 4})):
        torch.manual_seed(0)
        model = build("seq3", input_shape=[ds.shape[0]], vocabulary=ds.front_end["vocabulary"],
                      **{**TINY_TEXT, "lm_run": str(tmp_path / "lm"), "lm_embedding_dim": 16, "lm_hidden_dim": 16,
                         **extra})
        model.prepare(ds.batch())  # what a fresh run does before its first step
        starts[name] = model.embed.weight.detach()
    words = slice(3, None)
    ratio = starts["same"][words] / lm[words]
    assert torch.allclose(ratio, ratio.mean().expand_as(ratio), rtol=1e-3)  # the LM's, one scale
    assert not torch.allclose(starts["plain"][words], starts["same"][words])
    assert starts["small"].shape[1] == 4 and float(starts["small"][words].std()) == pytest.approx(1.0, rel=0.05)
    expected = embedding_start(lm, 4)
    assert torch.allclose(starts["small"], expected, atol=1e-5)
    dist = lambda e: torch.cdist(e[words], e[words]).flatten()  # noqa: E731
    assert float(torch.corrcoef(torch.stack([dist(starts["small"]), dist(lm)]))[0, 1]) > 0.5


def test_the_report_shows_an_old_runs_draw_as_it_was_trained():
    from vaelab.viz.report import _applicable, _config_class

    assert _applicable(_config_class("seq3"), {"tau": 0.5})["draw"] == "sample"
    assert _applicable(_config_class("seq3"), {"tau": 0.5, "draw": "greedy"})["draw"] == "greedy"
