"""adain-vc's adversarial conversions: the frame critic's terms, the two phases and what each
moves, and a run that trains, saves, loads and converts with the critic."""
from __future__ import annotations

import pytest
import torch

import vaelab
from vaelab.data import load_dataset
from vaelab.data.batch import Batch
from vaelab.errors import VaelabError
from vaelab.models import build
from vaelab.models.adain_vc import other_speaker_partner
from vaelab.nn.critic import FrameCritic, critic_terms, generator_terms

from speech_helpers import speaker_folder

SMALL = {"width": 16, "blocks": 1}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return load_dataset(f"wav:{speaker_folder(tmp_path_factory.mktemp('wav') / 'd', takes=2)}")


def _model(ds, **settings):
    cls = vaelab.models.model_class("adain-vc")
    return build("adain-vc", **cls.data_settings(ds, {"input_shape": list(ds.shape), **SMALL, **settings}))


def test_the_critic_never_reads_padding_and_its_terms_sum_over_true_frames():
    torch.manual_seed(0)
    critic = FrameCritic(8, 3, channels=16)
    x, mask = torch.randn(2, 8, 12), torch.ones(2, 12)
    mask[1, 7:] = 0
    padded = x.clone()
    padded[1, :, 7:] = 100.0
    for a, b in zip(critic(x, mask), critic(padded, mask)):
        assert torch.allclose(a[1, ..., :7], b[1, ..., :7])
    speakers, fake = torch.tensor([0, 2]), torch.randn(2, 8, 12)
    terms = critic_terms(critic, x, fake, speakers, mask)
    score_real, logits = critic(x, mask)
    score_fake, _ = critic(fake, mask)
    by_hand = sum(((score_real[i, :t] - 1) ** 2 + score_fake[i, :t] ** 2).sum() for i, t in ((0, 12), (1, 7))) / 2
    assert torch.allclose(terms["critic_real_fake"], by_hand)
    ce = torch.nn.functional.cross_entropy(logits[1, :, :7].T, torch.full((7,), 2), reduction="sum")
    ce0 = torch.nn.functional.cross_entropy(logits[0].T, torch.zeros(12, dtype=torch.long), reduction="sum")
    assert torch.allclose(terms["critic_speaker"], (ce + ce0) / 2)
    gen = generator_terms(critic, fake, speakers, mask)
    assert torch.allclose(gen["adv_real_fake"],
                          sum(((score_fake[i, :t] - 1) ** 2).sum() for i, t in ((0, 12), (1, 7))) / 2)
    assert 0 <= float(gen["adv_speaker_accuracy"]) <= 1


def test_conversion_partners_are_of_another_speaker_where_the_batch_has_one():
    speakers = torch.tensor([0, 0, 1, 2, 2, 1])
    for seed in range(5):
        torch.manual_seed(seed)
        partner = other_speaker_partner(speakers)
        assert (speakers[partner] != speakers).all()
    assert other_speaker_partner(torch.tensor([3, 3])).tolist() == [0, 1]


def test_the_model_phase_moves_the_model_and_the_critic_phase_only_the_critic(clips):
    torch.manual_seed(0)
    model = _model(clips, adversarial=2.0).train()
    phases = model.phases()
    assert list(phases) == ["model", "critic"]
    critic_ids = {id(p) for p in model.critic.parameters()}
    assert critic_ids == {id(p) for p in phases["critic"].parameters()}
    assert not critic_ids & {id(p) for p in phases["model"].parameters()}
    assert len(list(phases["model"].parameters())) + len(critic_ids) == len(list(model.parameters()))
    batch = clips.subset(slice(0, 8)).batch()
    gen = phases["model"].loss(batch)
    assert gen.weights["adv_real_fake"] == gen.weights["adv_speaker"] == 2.0
    assert torch.allclose(gen.total, sum(gen.weights[k] * v for k, v in gen.terms.items()))
    decoder_grad, = torch.autograd.grad(gen.terms["adv_speaker"], model.decoder.out.weight, retain_graph=True)
    assert decoder_grad.abs().max() > 0  # the conversions' terms reach the decoder
    crit = phases["critic"].loss(batch)
    assert set(crit.terms) == {"critic_real_fake", "critic_speaker", "critic_speaker_accuracy"}
    crit.total.backward()
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("critic."))
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in model.critic.parameters())
    # validation reads the model's own loss: no critic term marks the best epoch
    assert not any(k.startswith(("adv_", "critic_")) for k in model.eval().loss(batch).terms)


def test_weight_zero_builds_no_critic_and_keeps_one_phase(clips):
    off = _model(clips, adversarial=0.0)
    assert not hasattr(off, "critic") and list(off.phases()) == ["model"]
    on = _model(clips)
    assert on.config.adversarial == 1.0  # the default, chosen on validation clips
    assert {k for k in on.state_dict() if not k.startswith("critic.")} == set(off.state_dict())


def test_adversarial_refusals_are_one_line(clips):
    model = _model(clips, adversarial=1.0).train()
    batch = clips.subset(slice(0, 4)).batch()
    bare = Batch(batch.x, batch.y, extras={"lengths": batch.extras["lengths"]})
    with pytest.raises(VaelabError, match="adversarial needs each clip's speaker") as err:
        model.phases()["critic"].loss(bare)
    assert "\n" not in str(err.value)
    with pytest.raises(VaelabError, match="at least 2 named speakers"):
        build("adain-vc", **{**model.config.to_dict(), "front_end": {**model.config.front_end, "speakers": ["one"]}})
    with pytest.raises(VaelabError, match="adversarial must be >= 0"):
        _model(clips, adversarial=-1.0)


def test_a_run_with_the_critic_trains_saves_loads_and_converts(clips, tmp_path):
    result = vaelab.train("adain-vc", clips, tmp_path / "run", model_config={**SMALL, "adversarial": 1.0},
                          config={"epochs": 1, "batch_size": 8, "threads": 1, "val_size": 0.25}, progress=False)
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "model/adv_speaker" in metrics and "critic/critic_real_fake" in metrics
    loaded = vaelab.load(tmp_path / "run")
    assert loaded.config.adversarial == 1.0 and set(loaded.state_dict()) == set(result.model.state_dict())
    batch = clips.subset(slice(0, 2)).batch()
    reference = clips.subset(slice(3, 4)).batch()
    assert torch.allclose(loaded.convert(batch, [reference]), result.model.eval().convert(batch, [reference]),
                          atol=1e-5)


def test_the_default_critic_is_spectrally_normalised_and_its_scores_stay_bounded():
    """Each layer's weight has largest singular value 1 once its power iteration settles, so the
    scores of frames far out of range grow at most in proportion to them, by a factor the kernels
    set; without it, by the product of the layers' norms, which training can raise without end."""
    torch.manual_seed(0)
    critic = FrameCritic(8, 3, channels=16, layers=2, spectral=True).train()
    mask = torch.ones(2, 20)
    x = torch.randn(2, 8, 20)
    for _ in range(30):  # each training forward takes one power-iteration step
        critic(x, mask)
    for layer in [*critic.convs, critic.out]:
        weight = layer.weight.detach().flatten(1)
        assert float(torch.linalg.matrix_norm(weight, ord=2)) == pytest.approx(1.0, rel=1e-3)
    critic.eval()
    big = 1000 * x
    with torch.no_grad():
        score, logits = critic(big, mask)
    # a kernel-5 convolution with σ(W) = 1 stretches a signal at most √5 times: two of them, then a 1×1
    assert float(torch.cat([score[:, None], logits], 1).norm()) <= 5 * float(big.norm()) + 1.0
    plain = FrameCritic(8, 3, channels=16, layers=2)
    assert not any("parametrizations" in k for k in plain.state_dict())


def test_a_run_recorded_before_critic_norm_loads_its_plain_critic(clips, tmp_path):
    import json

    settings = {"batch_size": 8, "threads": 1, "val_size": 0.25, "epochs": 1}
    vaelab.train("adain-vc", clips, tmp_path / "run", model_config={**SMALL, "critic_norm": "none"}, config=settings,
                 progress=False)
    for name in ("run.json", "config.json"):
        path = tmp_path / "run" / name
        record = json.loads(path.read_text())
        config = record.get("config", record)
        config.pop("critic_norm", None)  # as a run recorded before the setting existed
        path.write_text(json.dumps(record))
    loaded = vaelab.load(tmp_path / "run")
    assert loaded.config.critic_norm == "none" and not any("parametrizations" in k for k in loaded.state_dict())
    assert _model(clips).config.critic_norm == "spectral"
    assert any("parametrizations" in k for k in _model(clips).state_dict())
    with pytest.raises(VaelabError, match="critic norm"):
        _model(clips, critic_norm="weight")
