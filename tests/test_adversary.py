"""The speaker adversary: gradient reversal, the term in adain-vc's and vq-vc's losses, and runs
that keep it through saving, loading and conversion."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import vaelab
from vaelab.data import load_dataset
from vaelab.data.batch import Batch
from vaelab.errors import VaelabError
from vaelab.models import build
from vaelab.nn.adversary import SpeakerAdversary, reverse_gradient

from speech_helpers import speaker_folder

SMALL = {"width": 16, "blocks": 1}
FAMILIES = ("adain-vc", "vq-vc")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return load_dataset(f"wav:{speaker_folder(tmp_path_factory.mktemp('wav') / 'd', takes=2)}")


def _model(name, ds, **settings):
    cls = vaelab.models.model_class(name)
    return build(name, **cls.data_settings(ds, {"input_shape": list(ds.shape), **SMALL, **settings}))


def _own(name):  # adain-vc's other-clip partner is drawn at random: keep the seeded draws comparable
    return {"speaker_clip": "own"} if name == "adain-vc" else {}


def test_reversal_is_the_identity_forward_and_negates_and_scales_the_gradient():
    x = torch.randn(3, 4, requires_grad=True)
    y = reverse_gradient(x, 2.5)
    assert torch.equal(y, x)
    g = torch.randn(3, 4)
    y.backward(g)
    assert torch.allclose(x.grad, -2.5 * g)


@pytest.mark.parametrize("name", FAMILIES)
def test_adversary_learns_the_speaker_while_the_encoder_is_pushed_the_other_way(name, clips):
    torch.manual_seed(0)
    model = _model(name, clips, speaker_adversary=2.0, **_own(name)).eval()
    batch = clips.subset(slice(0, 8)).batch()
    model.train()
    model.loss(batch)  # vq-vc: the k-means start on the first batch
    model.eval()
    loss = model.loss(batch)
    assert loss.weights["speaker_adv"] == 2.0 and loss.weights["speaker_adv_accuracy"] == 0.0
    assert 0.0 <= float(loss.terms["speaker_adv_accuracy"]) <= 1.0
    assert torch.allclose(loss.total, sum(loss.weights[k] * v for k, v in loss.terms.items()))
    adv = list(model.adversary.parameters())
    encoder = model.content_in.weight if name == "adain-vc" else model.enc_in.weight
    reversed_grad, = torch.autograd.grad(loss.terms["speaker_adv"], encoder, retain_graph=True)
    grads = torch.autograd.grad(loss.weights["speaker_adv"] * loss.terms["speaker_adv"], adv)
    # the adversary's gradient from the term descends its CE: a small step lowers it
    with torch.no_grad():
        for p, g in zip(adv, grads):
            p -= 1e-2 * g
        assert float(model.loss(batch).terms["speaker_adv"]) < float(loss.terms["speaker_adv"])
        for p, g in zip(adv, grads):
            p += 1e-2 * g
    # the encoder's gradient from the term is the negative of the plain (unreversed) CE's gradient
    x, mask = vaelab.nn.speech.speech_input(model, batch, trim=True)
    if name == "adain-vc":
        mu = model.content(x, mask)
        summary = torch.cat(vaelab.nn.speech.clip_stats(mu, mask), 1)
    else:
        summary = model.soft_histogram(model.frames(x, mask), model.code_mask(mask))
    plain = F.cross_entropy(model.adversary(summary), batch.extras["speaker"])
    assert torch.allclose(plain, loss.terms["speaker_adv"], atol=1e-5)
    plain_grad, = torch.autograd.grad(plain, encoder)
    assert plain_grad.abs().max() > 0
    assert torch.allclose(reversed_grad, -plain_grad, atol=1e-6)


@pytest.mark.parametrize("name", FAMILIES)
def test_weight_zero_builds_no_adversary_and_keeps_the_loss(name, clips):
    batch = clips.subset(slice(0, 6)).batch()
    torch.manual_seed(0)
    off = _model(name, clips, **_own(name))
    torch.manual_seed(1)
    plain = off.loss(batch)
    assert not any("adversary" in k for k in off.state_dict()) and not hasattr(off, "adversary")
    assert "speaker_adv" not in plain.terms and "speaker_adversary" in off.config.to_dict()
    torch.manual_seed(0)
    on = _model(name, clips, speaker_adversary=1.0, **_own(name))
    assert any(k.startswith("adversary.") for k in on.state_dict())
    assert {k for k in on.state_dict() if not k.startswith("adversary.")} == set(off.state_dict())
    on.load_state_dict({**on.state_dict(), **off.state_dict()})
    torch.manual_seed(1)
    with_term = on.loss(batch)
    for k, v in plain.terms.items():  # the other terms are untouched; only the adversary's is added
        assert torch.allclose(v, with_term.terms[k])
    assert torch.allclose(with_term.total, plain.total + with_term.terms["speaker_adv"])
    # the one optimiser sees the adversary's weights: they are the model's parameters
    assert {id(p) for p in on.adversary.parameters()} <= {id(p) for p in on.parameters()}


@pytest.mark.parametrize("name", FAMILIES)
def test_adversary_without_speaker_labels_is_a_one_line_error(name, clips):
    model = _model(name, clips, speaker_adversary=1.0, **_own(name))
    batch = clips.subset(slice(0, 4)).batch()
    bare = Batch(batch.x, batch.y, extras={"lengths": batch.extras["lengths"]})
    with pytest.raises(VaelabError, match="speaker_adversary needs each clip's speaker") as err:
        model.loss(bare)
    assert "\n" not in str(err.value)
    wrong = Batch(batch.x, batch.y, extras={**batch.extras, "speaker": batch.extras["speaker"] + 5})
    with pytest.raises(VaelabError, match="2 speakers"):
        model.loss(wrong)
    with pytest.raises(VaelabError, match="at least 2 named speakers"):
        build(name, **{**model.config.to_dict(), "front_end": {**model.config.front_end, "speakers": ["one"]}})
    with pytest.raises(VaelabError, match="speaker_adversary must be >= 0"):
        _model(name, clips, speaker_adversary=-1.0)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_run_with_the_adversary_saves_loads_and_converts(name, clips, tmp_path):
    result = vaelab.train(name, clips, tmp_path / "run", model_config={**SMALL, "speaker_adversary": 1.0},
                          config={"epochs": 1, "batch_size": 8, "threads": 1, "val_size": 0.25}, progress=False)
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "speaker_adv" in metrics and "speaker_adv_accuracy" in metrics
    loaded = vaelab.load(tmp_path / "run")
    assert loaded.config.speaker_adversary == 1.0
    assert set(loaded.state_dict()) == set(result.model.state_dict())
    batch = clips.subset(slice(0, 3)).batch()
    assert torch.allclose(loaded.convert(batch, [clips.subset(slice(-1, None)).batch()]),
                          result.model.eval().convert(batch, [clips.subset(slice(-1, None)).batch()]), atol=1e-5)


def test_the_cli_trains_with_the_option_and_converts_with_the_run(tmp_path, capsys):
    import soundfile as sf

    from vaelab.cli import main

    data = speaker_folder(tmp_path / "wav", takes=2)
    code = main(["train", "vq-vc", "--data", f"wav:{data}", "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--batch-size", "8", "--width", "16", "--blocks", "1", "--threads", "1", "--no-progress",
                 "--speaker-adversary", "0.5"])
    assert code == 0, capsys.readouterr().err
    assert vaelab.load(tmp_path / "run").config.speaker_adversary == 0.5
    out = tmp_path / "out.wav"
    code = main(["convert", str(tmp_path / "run"), "--source", str(data / "spk0" / "w0_0.wav"), "--target",
                 str(data / "spk1" / "w1_0.wav"), "-o", str(out), "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    assert sf.info(str(out)).samplerate == 8000


def test_vq_vc_soft_histogram_sums_to_one_and_reads_only_true_frames(clips):
    model = _model("vq-vc", clips, speaker_adversary=1.0).eval()
    batch = clips.subset(slice(0, 4)).batch()
    x, mask = vaelab.nn.speech.speech_input(model, batch)
    z = model.frames(x, mask)
    h = model.soft_histogram(z, mask)
    assert h.shape == (4, model.config.codebook_size) and torch.allclose(h.sum(1), torch.ones(4))
    i = int(batch.extras["lengths"].argmin())
    t = int(batch.extras["lengths"][i])
    assert t < z.shape[2]
    junk = z.clone()
    junk[i, :, t:] = torch.randn_like(junk[i, :, t:])
    assert torch.allclose(model.soft_histogram(junk, mask), h, atol=1e-6)
