"""Sentences: the PTB reader and its vocabulary, user text and its refusals, the length-bucketing
sampler, and the sentence models (lstm-lm, text-vae) on a tiny synthetic vocabulary."""
from __future__ import annotations

import math

import pytest
import torch

import vaelab
from vaelab.data import Dataset, load_dataset
from vaelab.data.batch import Batch
from vaelab.data.samplers import LengthBucketSampler, ShuffledSampler
from vaelab.data.text import (EOS_ID, PAD_ID, build_vocabulary, decode_ids, encode_lines, front_end, read_lines,
                              sentence_batch)
from vaelab.errors import VaelabError
from vaelab.models.registry import build
from vaelab.models.text_vae import kl_weight

from conftest import SHARED_DATA

WORDS = "the cat dog sat on a mat ran fast slow big small red blue <unk>".split()


def corpus(n: int = 200, seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    lines = []
    for _ in range(n):
        k = int(torch.randint(2, 9, (1,), generator=g))
        lines.append(" ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS) - 1, (k,), generator=g)))
    return lines


def tiny_dataset(n: int = 200, max_length: int = 10, seed: int = 0) -> Dataset:
    lines = corpus(n, seed)
    settings = front_end(build_vocabulary(corpus(400) + ["<unk>"]), max_length, "synthetic")
    x, lengths, _ = encode_lines(lines, settings, "synthetic")
    return Dataset("synthetic", x, extras={"lengths": lengths}, front_end=settings)


TINY_TEXT = {"embedding_dim": 16, "hidden_dim": 16}


def tiny(name: str, ds: Dataset, **extra):
    settings = {"input_shape": [ds.shape[0]], "vocabulary": ds.front_end["vocabulary"], **TINY_TEXT, **extra}
    if name == "text-vae":
        settings.setdefault("latent_dim", 4)
    torch.manual_seed(0)
    return build(name, **settings)


# --- data ---------------------------------------------------------------------------------

def test_sentences_become_ids_with_eos_padding_and_lengths():
    settings = front_end(build_vocabulary(["a b b", "c"]), 5, "t")
    assert settings["vocabulary"][:3] == ["<pad>", "<bos>", "<eos>"]
    assert settings["vocabulary"][3] == "b"  # by falling count
    x, lengths, counts = encode_lines(["b a", "a b c b a zz", "c"], {**settings, "unk": "c"}, "t")
    assert x.dtype == torch.int64 and x.shape == (3, 5)
    assert lengths.tolist() == [3, 5, 2]  # words + <eos>; the long line cut to 4 words
    assert x[0].tolist()[2:] == [EOS_ID, PAD_ID, PAD_ID]
    assert counts["truncated"] == 1
    assert decode_ids(x[0], settings) == "b a"


def test_user_text_refusals(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(VaelabError, match="holds no sentences"):
        read_lines(empty, "text file")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nbad \xff byte\n")
    with pytest.raises(VaelabError, match=r"not UTF-8 text \(byte 0xff on line 2\)"):
        read_lines(bad, "text file")
    settings = tiny_dataset().front_end
    with pytest.raises(VaelabError, match="only words outside"):
        sentence_batch(["zzz qqq"], settings)
    batch = sentence_batch(["The cat zzz"], settings)
    assert decode_ids(batch.x[0], settings) == "the cat <unk>"


def test_text_and_image_models_refuse_the_other_kind(tmp_path):
    ds = tiny_dataset()
    with pytest.raises(VaelabError, match="reads images, but synthetic holds sentences"):
        vaelab.train("vae", ds, tmp_path / "a", config={"epochs": 1, "threads": 1}, progress=False)
    images = Dataset("pictures", torch.rand(20, 1, 8, 8))
    with pytest.raises(VaelabError, match="reads sentences, but pictures holds images"):
        vaelab.train("lstm-lm", images, tmp_path / "b", config={"epochs": 1, "threads": 1}, progress=False)


@pytest.mark.skipif(not (SHARED_DATA / "ptb").is_dir(), reason="PTB not present in the shared data directory")
def test_ptb_reads_with_checksums_and_the_training_vocabulary():
    ds = load_dataset("ptb", "val", data_dir=SHARED_DATA)
    vocabulary = ds.front_end["vocabulary"]
    assert len(vocabulary) == 10002 and "<unk>" in vocabulary  # 9,999 word types + <eos> + <pad>, <bos>
    assert ds.x.shape == (3370, 83)
    assert int(ds.extras["lengths"].sum()) == 70390 + 3370  # valid words + one <eos> per sentence


# --- sampler ------------------------------------------------------------------------------

def test_length_buckets_visit_every_row_once_replay_and_group_lengths():
    ds = tiny_dataset(300)
    data = ds.batch()
    data.extras["row"] = torch.arange(len(ds))
    sampler = LengthBucketSampler(data, 16, pool_batches=4, seed=3)
    plain = ShuffledSampler(data, 16, seed=3)
    assert len(sampler) == len(plain)
    state = sampler.epoch_state()
    batches = list(sampler.epoch())
    rows = torch.cat([b.extras["row"] for b in batches])
    assert sorted(rows.tolist()) == list(range(len(ds)))
    spread = sum(int(b.extras["lengths"].max() - b.extras["lengths"].min()) for b in batches) / len(batches)
    plain_spread = sum(int(b.extras["lengths"].max() - b.extras["lengths"].min()) for b in plain.epoch()) / len(plain)
    assert spread < plain_spread / 2
    for k, v in state.items():
        sampler.generators[k].set_state(v)
    again = list(sampler.epoch(5))
    assert [b.extras["row"].tolist() for b in again] == [b.extras["row"].tolist() for b in batches[5:]]


@pytest.mark.parametrize("world", [2, 3])
def test_length_bucket_shards_make_up_the_one_process_batch(world):
    data = tiny_dataset(100).batch()
    whole = list(LengthBucketSampler(data, 10, seed=1).epoch())
    parts = [list(LengthBucketSampler(data, 10, seed=1, rank=r, world=world).epoch()) for r in range(world)]
    for i, batch in enumerate(whole):
        assert torch.equal(torch.cat([p[i].x for p in parts]), batch.x)


# --- models -------------------------------------------------------------------------------

def test_lstm_lm_nll_is_the_sum_of_token_log_probabilities():
    ds = tiny_dataset(6)
    model = tiny("lstm-lm", ds).eval()
    batch = ds.batch()
    nll = model.sentence_nll(batch)
    for i in range(3):  # one sentence at a time, token by token
        n = int(batch.extras["lengths"][i])
        ids = [1] + batch.x[i, :n].tolist()
        emb = model.decoder.embed(torch.tensor([ids[:-1]]))
        out, _ = model.decoder.lstm(emb)
        logp = model.decoder.output(out).log_softmax(-1)[0, torch.arange(n), torch.tensor(ids[1:])]
        assert float(nll[i]) == pytest.approx(-float(logp.sum()), rel=1e-5)
    assert float(model.loss(batch).total) == pytest.approx(float(nll.mean()), rel=1e-6)


def test_text_vae_terms_bound_and_fixes():
    ds = tiny_dataset(20)
    model = tiny("text-vae", ds, free_bits=0.5, kl_anneal="none")
    loss = model.loss(ds.batch())
    total = sum(loss.weights[k] * v for k, v in loss.terms.items())
    assert float(loss.total) == pytest.approx(float(total), rel=1e-5)
    assert float(loss.terms["kl_charged_minus_kl"]) >= 0  # free bits charge at least 0.5 nats a dimension
    model.eval()
    w = model.importance_log_weights(ds.batch()[:4], 8, generator=torch.Generator().manual_seed(0))
    assert w.shape == (4, 8) and torch.isfinite(w).all()
    assert kl_weight("linear", 0, 0.1, 10) == pytest.approx(0.1)
    assert kl_weight("linear", 5, 0.1, 10) == pytest.approx(0.55)
    assert kl_weight("sigmoid", 10, 0.1, 10) > 0.99 and kl_weight("sigmoid", 0, 0.1, 10) < 0.12
    assert kl_weight("cyclical", 12.5, 0.0, 10) == pytest.approx(0.5)
    assert kl_weight("cyclical", 17, 0.0, 10) == 1.0 and kl_weight("none", 0, 0.1, 10) == 1.0


def test_text_models_train_resume_evaluate_and_write_text(tmp_path):
    from vaelab.evaluation import evaluate
    from vaelab.text_outputs import interpolate_text, reconstruct_text

    ds = tiny_dataset(120)
    settings = {"epochs": 1, "threads": 1, "batch_size": 16, "val_size": 0.2}
    vaelab.train("text-vae", ds, tmp_path / "vae", model_config={**TINY_TEXT, "latent_dim": 4}, config=settings,
                 progress=False)
    again = vaelab.train("text-vae", ds, tmp_path / "vae", model_config={**TINY_TEXT, "latent_dim": 4},
                         config={**settings, "epochs": 2}, resume=True, progress=False)
    assert again.epochs_run == 2
    model = vaelab.load(tmp_path / "vae")
    result = evaluate(model, ds.subset(slice(0, 10)), nll_samples=16)
    assert result["ppl"] == pytest.approx(math.exp(result["nll"] / result["tokens_per_sentence"]))
    assert result["ppl_bound"] >= result["ppl"] * 0.9 and "bits_per_dim" not in result
    assert "mutual_information" in result and result["perplexity_counts"] == "words + <eos>"
    assert (tmp_path / "vae" / "text.txt").read_text().startswith("# samples (greedy)")
    out = reconstruct_text(model, ["the cat sat on a mat"])
    assert out[0]["input"] == "the cat sat on a mat"
    assert len(interpolate_text(model, "the cat sat", "a dog ran fast", steps=4)) == 4
    vaelab.train("lstm-lm", ds, tmp_path / "lm", model_config=TINY_TEXT, config=settings, progress=False)
    lm = vaelab.load(tmp_path / "lm")
    result = evaluate(lm, ds.subset(slice(0, 10)))
    assert result["nll_method"] == "exact" and result["ppl"] > 1


def test_report_shows_a_sentence_model_as_text(tmp_path):
    from vaelab.viz.report import make_report

    ds = tiny_dataset(60)
    vaelab.train("lstm-lm", ds, tmp_path / "lm", model_config=TINY_TEXT,
                 config={"epochs": 1, "threads": 1, "batch_size": 16, "val_size": 0}, progress=False)
    html = make_report([tmp_path / "lm"], tmp_path / "r.html").read_text()
    assert "<h3>Sentences</h3>" in html and "# samples (greedy)" in html and "Latent traversal" not in html


def test_learning_rate_halves_after_each_plateau_at_most_five_times():
    from vaelab.training.trainer import TrainConfig, _Training

    t = object.__new__(_Training)
    t.config = TrainConfig(lr_halve_patience=2)
    t.counters = {"bad_epochs": 1, "lr_scale": 1.0}
    t._halve_on_plateau()
    assert t.counters["lr_scale"] == 1.0  # one epoch without improvement: not yet
    for bad in range(2, 30):
        t.counters["bad_epochs"] = bad
        t._halve_on_plateau()
    assert t.counters["lr_scale"] == 0.5 ** 5
    t.config = TrainConfig()
    t.counters = {"bad_epochs": 2, "lr_scale": 1.0}
    t._halve_on_plateau()
    assert t.counters["lr_scale"] == 1.0  # off by default


def test_trainer_batches_by_length_when_the_data_carries_lengths():
    from types import SimpleNamespace

    from vaelab.training.trainer import TrainConfig, _Training

    t = object.__new__(_Training)
    t.config, t.binarize, t.ctx = TrainConfig(batch_size=8), "none", SimpleNamespace(rank=0, world=1)
    assert type(t._sampler(tiny_dataset(40).batch())) is LengthBucketSampler
    assert type(t._sampler(Batch(torch.rand(40, 1, 4, 4)))) is ShuffledSampler


def test_command_line_bad_text_input_is_one_line(tmp_path, capsys):
    from vaelab.cli import main

    ds = tiny_dataset(60)
    vaelab.train("text-vae", ds, tmp_path / "vae", model_config={**TINY_TEXT, "latent_dim": 4},
                 config={"epochs": 1, "threads": 1, "batch_size": 16, "val_size": 0}, progress=False)
    capsys.readouterr()
    for argv, message in [
        (["reconstruct", str(tmp_path / "vae"), "--text", "zzz qqq"], "holds only words outside"),
        (["interpolate", str(tmp_path / "vae"), "--from", "the cat"], "give both ends as sentences"),
        (["eval", str(tmp_path / "vae"), "--data", "digits"], "reads sentences, but digits holds images"),
    ]:
        assert main(argv + ["--threads", "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert main(["reconstruct", str(tmp_path / "vae"), "--text", "the cat sat on a mat", "--threads", "1"]) == 0
    assert "greedy:" in capsys.readouterr().out
    assert main(["sample", str(tmp_path / "vae"), "-n", "2", "--threads", "1"]) == 0
    assert capsys.readouterr().out.startswith("# greedy")


@pytest.mark.skipif(not (SHARED_DATA / "ptb").is_dir(), reason="PTB not present in the shared data directory")
def test_user_text_reads_with_the_ptb_vocabulary_and_refuses_bad_files(tmp_path):
    good = tmp_path / "mine.txt"
    good.write_text("the company said N shares\nzzzq fell\n")
    with pytest.warns(UserWarning, match="1 of 7 words are not in the vocabulary"):
        ds = load_dataset(f"text:{good}", data_dir=SHARED_DATA)
    assert ds.x.shape == (2, 83) and ds.extras["lengths"].tolist() == [6, 3]
    assert decode_ids(ds.x[1], ds.front_end) == "<unk> fell"
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(VaelabError, match="holds no sentences"):
        load_dataset(f"text:{tmp_path / 'empty.txt'}", data_dir=SHARED_DATA)


def test_curve_points_record_each_stretch_of_an_epoch_at_its_global_step(tmp_path):
    import json

    ds = tiny_dataset(96)
    settings = {"epochs": 2, "threads": 1, "batch_size": 16, "val_size": 0, "curve_points": 3}
    vaelab.train("text-vae", ds, tmp_path / "vae", model_config={**TINY_TEXT, "latent_dim": 4}, config=settings,
                 progress=False)
    lines = [json.loads(ln) for ln in (tmp_path / "vae" / "metrics.jsonl").read_text().splitlines()]
    assert [ln["train_curve"]["step"] for ln in lines] == [[2, 4, 6], [8, 10, 12]]  # 6 steps of 16 an epoch
    for ln in lines:  # equal stretches: their mean is the epoch's mean
        curve = ln["train_curve"]
        assert {"kl", "recon"} <= set(curve) - {"step"} <= set(ln["train"])
        assert sum(curve["kl"]) / 3 == pytest.approx(ln["train"]["kl"], rel=1e-5)
        assert len(set(curve["recon"])) == 3  # the stretches differ: not the epoch mean repeated


def test_epoch_stretches_weigh_batch_sizes_and_never_outnumber_the_steps():
    from vaelab.training.terms import EpochTerms

    terms = EpochTerms()
    for value, size in ((1.0, 10), (3.0, 30), (5.0, 5)):
        terms.add({"a": torch.tensor(value)}, size)
    assert terms.stretches(1, 100, 3) == {"step": [103], "a": [pytest.approx((10 + 90 + 25) / 45)]}
    assert terms.stretches(8, 0, 3) == {"step": [1, 2, 3], "a": [1.0, 3.0, 5.0]}


def test_text_collapse_curves_follow_the_steps_within_an_epoch(tmp_path):
    import json

    from vaelab.compare.text_collapse import text_collapse

    result = text_collapse(tmp_path / "collapse", data="ptb", data_dir=SHARED_DATA, variants_=("plain",),
                           epochs=1, sentences=64, eval_size=4, hidden=8, embedding=8, latent_dim=2,
                           nll_samples=2, batch_size=16, threads=1, curve_points=4, progress=False)
    assert result.rows[0]["variant"] == "plain" and (tmp_path / "collapse" / "curve_kl.png").stat().st_size > 0
    line = json.loads((tmp_path / "collapse" / "plain" / "metrics.jsonl").read_text())
    assert line["train_curve"]["step"] == [1, 2, 3, 4]
