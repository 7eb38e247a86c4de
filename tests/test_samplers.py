"""Batches and samplers: what reaches a model each step, and that it replays exactly."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from vaelab.data.batch import Batch, as_batch
from vaelab.data.samplers import SemiSupervisedSampler, ShuffledSampler, resolve_binarize
from vaelab.errors import VaelabError


def _data(n=23, classes=5):
    x = torch.rand(n, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    return Batch(x, torch.arange(n) % classes, extras={"row": torch.arange(n)})


def test_batch_rows_move_together():
    b = _data()
    picked = b.select(torch.tensor([4, 1]))
    assert picked.extras["row"].tolist() == [4, 1] and picked.y.tolist() == [4, 1]
    assert torch.equal(picked.x, b.x[[4, 1]]) and len(b[2:5]) == 3
    assert as_batch(b.x).y is None and as_batch(b) is b
    assert b.labelled_rows().all() and not as_batch(b.x).labelled_rows().any()


def test_shuffled_epoch_visits_every_row_once_and_replays_from_any_step():
    data = _data()
    sampler = ShuffledSampler(data, 5, seed=3)
    state = sampler.epoch_state()
    rows = [b.extras["row"] for b in sampler.epoch()]
    assert [len(r) for r in rows] == [5, 5, 5, 5, 3]
    assert sorted(torch.cat(rows).tolist()) == list(range(23))
    sampler.generators["order"].set_state(state["order"])  # what a mid-epoch checkpoint restores
    assert [b.extras["row"].tolist() for b in sampler.epoch(start=3)] == [r.tolist() for r in rows[3:]]
    assert torch.equal(torch.cat([b.extras["row"] for b in sampler.epoch()]).sort().values, torch.arange(23))


def test_dynamic_binarization_draws_fresh_noise_each_epoch():
    sampler = ShuffledSampler(_data(), 23, seed=0, binarize=True)
    first, second = next(sampler.epoch()), next(sampler.epoch())
    assert set(first.x.unique().tolist()) <= {0.0, 1.0}
    order = first.extras["row"].argsort(), second.extras["row"].argsort()
    assert not torch.equal(first.x[order[0]], second.x[order[1]])


@pytest.mark.parametrize("world", [2, 3])
def test_shards_make_up_the_one_process_batch(world):
    data = _data()
    whole = list(ShuffledSampler(data, 7, seed=1, binarize=True).epoch())
    shards = [list(ShuffledSampler(data, 7, seed=1, binarize=True, rank=r, world=world).epoch()) for r in range(world)]
    for step, batch in enumerate(whole):
        parts = [shards[r][step] for r in range(world)]
        assert torch.equal(torch.cat([p.x for p in parts]), batch.x)  # same rows, same binarization
        assert torch.equal(torch.cat([p.y for p in parts]), batch.y)


def test_shares_weight_unequal_shards_to_the_global_mean():
    sampler = ShuffledSampler(_data(n=7), 7, seed=0, rank=0, world=2)
    part = next(sampler.epoch())
    assert len(part) == 3 and sampler.share == pytest.approx(3 * 2 / 7)


def test_semi_supervised_steps_hold_both_parts_and_the_unlabelled_set_defines_the_epoch():
    data = _data(n=40)
    labelled, unlabelled = data[:6], data[6:]
    sampler = SemiSupervisedSampler(labelled, unlabelled, 4, 10, seed=0)
    steps = list(sampler.epoch())
    assert len(steps) == len(sampler) == 4  # ceil(34 / 10)
    for b in steps:
        assert b.labelled[:4].all() and not b.labelled[4:].any()
        assert (b.extras["row"][:4] < 6).all() and (b.extras["row"][4:] >= 6).all()
    seen_unlabelled = torch.cat([b.extras["row"][4:] for b in steps])
    assert sorted(seen_unlabelled.tolist()) == list(range(6, 40))
    cycled = torch.cat([b.extras["row"][:4] for b in steps]).tolist()  # 16 draws from 6 rows: passes
    assert sorted(cycled[:6]) == list(range(6)) and sorted(cycled[6:12]) == list(range(6))


def test_semi_supervised_replays_from_any_step():
    data = _data(n=40)
    sampler = SemiSupervisedSampler(data[:6], data[6:], 4, 10, seed=5)
    state = sampler.epoch_state()
    steps = [b.extras["row"].tolist() for b in sampler.epoch()]
    for name, s in state.items():
        sampler.generators[name].set_state(s)
    assert [b.extras["row"].tolist() for b in sampler.epoch(start=2)] == steps[2:]


@pytest.mark.parametrize("make, message", [
    (lambda d: SemiSupervisedSampler(Batch(d.x[:3]), d[3:], 2, 2), "needs labelled rows"),
    (lambda d: SemiSupervisedSampler(d[:3], d[3:3], 2, 2), "needs unlabelled rows"),
    (lambda d: SemiSupervisedSampler(d[:3], d[3:], 0, 2), "at least 1"),
    (lambda d: ShuffledSampler(d, 1, world=2, rank=0), "smaller than the 2 processes"),
    (lambda d: ShuffledSampler(d, 4, world=2, rank=2), "outside a world of 2"),
])
def test_bad_sampler_settings_are_refused_in_one_line(make, message):
    with pytest.raises(VaelabError, match=message):
        make(_data())


# --- the "auto" binarization rule -----------------------------------------------------------


def _model(likelihood):
    return SimpleNamespace(config=SimpleNamespace(likelihood=likelihood))


def test_auto_binarization_follows_the_likelihood_unless_told(tmp_path):
    assert resolve_binarize("auto", _model("bernoulli")) == "dynamic"
    assert resolve_binarize("auto", _model("gaussian")) == "none"
    assert resolve_binarize("auto", SimpleNamespace(config=SimpleNamespace())) == "none"  # an autoencoder
    assert resolve_binarize("static", _model("gaussian"), tmp_path) == "static"


@pytest.mark.parametrize("text, expected", [
    ('{"resolved": {"binarize": "static"}}', "static"),   # what the run trained with wins
    ('{"resolved": {"binarize": "none"}}', "none"),
    ('{"model": "vae"}', "dynamic"),                       # an older record: the likelihood decides
    ('{"resolved": {"binarize": "sometimes"}}', "dynamic"),  # not a binarization: ignored
    ('{"resolved": []}', "dynamic"),
    ("not json", "dynamic"),
])
def test_auto_binarization_follows_the_run_record(tmp_path, text, expected):
    (tmp_path / "run.json").write_text(text)
    assert resolve_binarize("auto", _model("bernoulli"), tmp_path) == expected
    assert resolve_binarize("dynamic", _model("bernoulli"), tmp_path) == "dynamic"
