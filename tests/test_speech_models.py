"""The speech families: masked sums, conversion, save/load, and training on the spine."""
from __future__ import annotations

import pytest
import torch

import vaelab
from vaelab.data import load_dataset
from vaelab.data.batch import Batch
from vaelab.errors import VaelabError
from vaelab.models import build
from vaelab.nn.speech import speech_input

from speech_helpers import speaker_folder

FAMILIES = ("ae-speech", "adain-vc", "vq-vc")
VARIANTS = [("vq-vc", {"hop": 3}), ("vq-vc", {"input_norm": True, "instance_norm": True})]
SMALL = {"width": 16, "blocks": 1}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return load_dataset(f"wav:{speaker_folder(tmp_path_factory.mktemp('wav') / 'd', takes=2)}")


def _model(name, ds):
    cls = vaelab.models.model_class(name)
    return build(name, **cls.data_settings(ds, {"input_shape": list(ds.shape), **SMALL}))


@pytest.mark.parametrize("name", FAMILIES)
def test_padding_never_changes_the_loss_or_the_true_frames(name, clips):
    torch.manual_seed(0)
    model = _model(name, clips).eval()
    batch = clips.subset(slice(0, 4)).batch()
    noisy = batch.x.clone()
    lengths = batch.extras["lengths"]
    for i, t in enumerate(lengths):
        noisy[i, :, int(t):] = torch.randn_like(noisy[i, :, int(t):]) * 5
    assert torch.allclose(model.loss(batch).total, model.loss(batch.with_x(noisy)).total, atol=1e-3)
    a, b = model.reconstruct(batch), model.reconstruct(batch.with_x(noisy))
    t = int(lengths.min())
    assert torch.allclose(a[:, :, :t], b[:, :, :t], atol=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
def test_convert_takes_one_or_several_references_of_any_length(name, clips):
    model = _model(name, clips).eval()
    source = clips.subset(slice(0, 2)).batch()
    refs = [clips.x[-1:, :, :40], clips.subset(slice(-2, -1)).batch()]
    out = model.convert(source, refs)
    assert out.shape == source.x.shape and torch.isfinite(out).all()
    speaker = model.speaker_vector(source)
    if name == "ae-speech":  # no speaker part: its "conversion" is the reconstruction
        assert speaker is None and torch.allclose(out, model.reconstruct(source))
    else:
        assert speaker.shape[0] == 2 and not torch.allclose(out, model.reconstruct(source), atol=1e-4)


def test_adain_vc_loss_is_reconstruction_plus_weighted_kl(clips):
    model = _model("adain-vc", clips)
    model.schedule(1.0)  # half-way through the default 2-epoch anneal
    loss = model.loss(clips.subset(slice(0, 4)).batch())
    assert loss.weights["kl"] == pytest.approx(0.5 * model.config.lambda_kl)
    assert torch.allclose(loss.total, loss.terms["recon_l1"] + loss.weights["kl"] * loss.terms["kl"])
    assert float(loss.terms["kl"]) > 0


def test_vq_vc_codes_only_the_true_frames(clips):
    model = _model("vq-vc", clips)
    batch = clips.subset(slice(0, 4)).batch()
    model.loss(batch)  # k-means start on the first batch
    codes = model.frame_codes(batch)
    lengths = batch.extras["lengths"]
    for i, t in enumerate(lengths):
        assert (codes[i, :int(t)] >= 0).all() and (codes[i, int(t):] == -1).all()


def test_speech_families_refuse_image_data():
    images = load_dataset("digits")
    with pytest.raises(VaelabError, match="models speech"):
        vaelab.models.model_class("adain-vc").data_settings(images, {})


@pytest.mark.parametrize("name", FAMILIES)
def test_trains_on_the_spine_and_loads_back(name, clips, tmp_path):
    result = vaelab.train(name, clips, tmp_path / "run", model_config=SMALL,
                          config={"epochs": 2, "batch_size": 8, "threads": 1, "val_size": 0.25}, progress=False)
    assert (tmp_path / "run" / "reconstructions.png").is_file()
    loaded = vaelab.load(tmp_path / "run")
    assert loaded.front_end == {**result.model.front_end}
    batch = clips.subset(slice(0, 3)).batch()
    assert torch.allclose(loaded.reconstruct(batch), result.model.eval().reconstruct(batch), atol=1e-5)


def test_speaker_clip_other_pairs_each_clip_with_another_of_its_speaker():
    from vaelab.models.adain_vc import same_speaker_partner

    speakers = torch.tensor([0, 0, 1, 1, 1, 2, 0])
    batch = Batch(torch.zeros(7, 8, 4), torch.zeros(7), extras={"speaker": speakers})
    for seed in range(20):
        torch.manual_seed(seed)
        partner = same_speaker_partner(batch)
        assert (speakers[partner] == speakers).all()
        assert (partner[:5] != torch.arange(5)).all() and partner[6] != 6 and partner[5] == 5  # 2 is alone
    with pytest.raises(VaelabError, match="speaker"):
        same_speaker_partner(Batch(torch.zeros(2, 8, 4), torch.zeros(2)))


def test_speaker_clip_other_takes_the_speaker_vector_from_the_partner(clips):
    torch.manual_seed(0)
    ds = clips.subset(slice(0, 6))
    other = _model("adain-vc", ds).train()
    assert other.config.speaker_clip == "other"  # the default, chosen on validation clips
    own = build("adain-vc", **{**other.config.to_dict(), "speaker_clip": "own"}).train()
    own.load_state_dict(other.state_dict())
    batch = ds.batch()
    torch.manual_seed(1)
    a = own.loss(batch).terms["recon_l1"]
    torch.manual_seed(1)
    b = other.loss(batch).terms["recon_l1"]
    assert not torch.allclose(a, b)  # another clip's speaker vector decodes this clip differently
    other.eval()
    assert torch.allclose(own.eval().loss(batch).total, other.loss(batch).total)  # evaluation uses the clip's own


def _vq(clips, **settings):
    cls = vaelab.models.model_class("vq-vc")
    return build("vq-vc", **cls.data_settings(clips, {"input_shape": list(clips.shape), **SMALL, **settings}))


def test_vq_vc_speaker_none_is_a_plain_vq_vae_over_frames(clips):
    torch.manual_seed(0)
    model = _vq(clips, speaker="none", input_norm=False)
    batch = clips.subset(slice(0, 4)).batch()
    model.loss(batch)
    model.eval()
    assert model.speaker_vector(batch) is None
    assert torch.allclose(model.convert(batch, [clips.x[-1:]]), model.reconstruct(batch))  # nothing to swap
    x, mask = model.content_code(batch)[0], batch.extras["lengths"]
    assert model.frame_codes(batch).shape == (4, x.shape[2])


def test_vq_vc_input_norm_codes_ignore_a_clip_s_band_levels_and_spreads(clips):
    """With input_norm a clip whose mel bands are shifted and scaled per band gets the same codes;
    the statistics reach the decoder through the speaker vector, which changes."""
    torch.manual_seed(0)
    batch = clips.subset(slice(0, 4)).batch()
    shift, scale = torch.randn(1, batch.x.shape[1], 1), torch.rand(1, batch.x.shape[1], 1) + 0.5
    flat = batch.x.var(-1, keepdim=True).amin(0, keepdim=True) < 1e-2  # bands near the 1e-5 floor of the variance
    scale = torch.where(flat, torch.ones_like(scale), scale)
    moved = batch.with_x(batch.x * scale + shift)
    for norm in (True, False):
        model = _vq(clips, input_norm=norm)
        model.loss(batch)
        model.eval()
        same = torch.equal(model.frame_codes(batch), model.frame_codes(moved))
        z_same = torch.allclose(model.content_code(batch)[0], model.content_code(moved)[0], atol=1e-4)
        assert same == norm and z_same == norm
        if norm:
            assert not torch.allclose(model.speaker_vector(batch), model.speaker_vector(moved), atol=1e-3)


def test_vq_vc_instance_norm_removes_the_encoder_channels_clip_statistics(clips):
    torch.manual_seed(0)
    model = _vq(clips, instance_norm=True).eval()
    batch = clips.subset(slice(0, 4)).batch()
    x, mask = speech_input(model, batch)
    h = model.enc(torch.relu(model.enc_in(x)) * mask[:, None], mask)
    t = int(batch.extras["lengths"].min())
    mean = (h * mask[:, None]).sum(-1) / mask.sum(1, keepdim=True)
    assert mean.abs().max() < 1e-4 and h[:, :, :t].std() > 0.1


def test_vq_vc_refuses_input_norm_without_a_speaker_part(clips):
    with pytest.raises(VaelabError, match="input_norm needs speaker residual.*--no-input-norm"):
        _vq(clips, speaker="none")  # input_norm is on by default
    with pytest.raises(VaelabError, match="speaker must be one of: residual, none"):
        _vq(clips, speaker="mean")


def test_vq_vc_hop_gives_one_code_per_run_of_frames(clips):
    torch.manual_seed(0)
    model = _vq(clips, hop=4)
    batch = clips.subset(slice(0, 4)).batch()
    model.loss(batch)
    model.eval()
    codes, lengths = model.frame_codes(batch), batch.extras["lengths"]
    assert codes.shape[1] == -(-batch.x.shape[2] // 4)
    for i, t in enumerate(lengths):
        n = -(-int(t) // 4)
        assert (codes[i, :n] >= 0).all() and (codes[i, n:] == -1).all()
    c = model.content_code(batch)[0]
    assert c.shape == (4, model.config.code_dim, batch.x.shape[2])
    assert torch.equal(c[:, :, 0], c[:, :, 3]) and not torch.equal(c[:, :, 0], c[:, :, 4 * 4])  # repeated per run


def _assert_padding_unread(model, batch):
    """Loud noise in the frames past each clip's length moves neither the loss nor the true frames."""
    noisy = batch.x.clone()
    lengths = batch.extras["lengths"]
    for i, t in enumerate(lengths):
        noisy[i, :, int(t):] = torch.randn_like(noisy[i, :, int(t):]) * 5
    assert torch.allclose(model.loss(batch).total, model.loss(batch.with_x(noisy)).total, atol=1e-3)
    t = int(lengths.min())
    assert torch.allclose(model.reconstruct(batch)[:, :, :t], model.reconstruct(batch.with_x(noisy))[:, :, :t],
                          atol=1e-4)


@pytest.mark.parametrize("settings", [s for _, s in VARIANTS])
def test_vq_vc_variants_never_read_the_padding(settings, clips):
    torch.manual_seed(0)
    model = _vq(clips, **settings)
    batch = clips.subset(slice(0, 4)).batch()
    model.loss(batch)
    model.eval()
    _assert_padding_unread(model, batch)


def test_adain_vc_noise_scale_sets_the_training_noise_and_zero_removes_it(clips):
    torch.manual_seed(0)
    batch = clips.subset(slice(0, 4)).batch()
    own = _model("adain-vc", clips).config.to_dict() | {"speaker_clip": "own"}  # no random partner
    base = build("adain-vc", **own)
    quiet = build("adain-vc", **{**own, "noise_scale": 0.0})
    quiet.load_state_dict(base.state_dict())
    quiet.schedule(10.0)
    base.schedule(10.0)
    a, b = quiet.train().loss(batch), quiet.train().loss(batch)
    assert torch.allclose(a.total, b.total)  # no noise: training is deterministic
    assert torch.allclose(a.total, quiet.eval().loss(batch).total, atol=1e-4)
    torch.manual_seed(1)
    noisy = base.train().loss(batch)
    assert not torch.allclose(noisy.total, a.total)
    assert torch.allclose(noisy.terms["kl"], a.terms["kl"])  # the KL is ½ Σ μ² either way
    with pytest.raises(VaelabError, match="noise_scale"):
        build("adain-vc", **{**base.config.to_dict(), "noise_scale": -1.0})


def test_adain_vc_learned_sigma_is_the_full_gaussian_kl(clips):
    torch.manual_seed(0)
    batch = clips.subset(slice(0, 4)).batch()
    base = _model("adain-vc", clips)
    learned = build("adain-vc", **{**base.config.to_dict(), "learned_sigma": True})
    learned.load_state_dict(base.state_dict(), strict=False)
    # σ starts at 1: the same loss as the fixed unit noise
    torch.manual_seed(1)
    a = base.train().loss(batch)
    torch.manual_seed(1)
    b = learned.train().loss(batch)
    assert torch.allclose(a.total, b.total, atol=1e-4)
    with torch.no_grad():
        learned.content_log_var.bias.fill_(-2.0)  # σ² = e⁻² everywhere
    x, mask = speech_input(learned, batch, trim=True)
    mu = learned.content(x, mask)
    per_element = torch.exp(torch.tensor(-2.0)) + 2.0 - 1.0
    expected = 0.5 * ((mu.square() + per_element) * mask[:, None]).sum((1, 2)).mean()
    assert torch.allclose(learned.loss(batch).terms["kl"], expected, rtol=1e-4)
    with pytest.raises(VaelabError, match="learned_sigma"):
        build("adain-vc", **{**base.config.to_dict(), "learned_sigma": True, "noise_scale": 0.5})


def test_adain_vc_hop_gives_one_content_code_per_run_and_counts_its_kl_once(clips):
    torch.manual_seed(0)
    base = _model("adain-vc", clips)
    hopped = build("adain-vc", **{**base.config.to_dict(), "hop": 4}).eval()
    hopped.load_state_dict(base.state_dict())  # the hop has no weights of its own
    batch = clips.subset(slice(0, 4)).batch()
    _assert_padding_unread(hopped, batch)
    x, mask = speech_input(hopped, batch, trim=True)
    c, full = hopped.content(x, mask), base.eval().content(x, mask)
    assert c.shape == full.shape
    assert torch.equal(c[:, :, 0], c[:, :, 3]) and not torch.equal(c[:, :, 0], c[:, :, 4])  # repeated per run
    assert torch.allclose(c[:, :, 0], full[:, :, :4].mean(2), atol=1e-5)  # the mean of its run's frames
    one = clips.subset(slice(0, 1)).batch()  # eval: z = μ, KL = ½ Σ μ² over the clip's codes, not its frames
    x1, m1 = speech_input(hopped, one, trim=True)
    codes = hopped.content(x1, m1)[0, :, ::4][:, :-(-int(m1.sum()) // 4)]
    assert torch.allclose(hopped.loss(one).terms["kl"], 0.5 * codes.square().sum(), rtol=1e-4)
    with pytest.raises(VaelabError, match="hop"):
        build("adain-vc", **{**base.config.to_dict(), "hop": 0})


def test_envelope_keeps_a_smooth_spectrum_and_drops_a_fine_ripple():
    from vaelab.nn.speech import envelope

    bands = torch.arange(64, dtype=torch.float32)
    smooth = torch.cos(torch.pi / 64 * (bands + 0.5) * 3)        # DCT shape 3: kept by K = 20
    ripple = torch.cos(torch.pi / 64 * (bands + 0.5) * 40)       # DCT shape 40: a harmonic comb, dropped
    x = (2.0 + smooth + ripple)[None, :, None].repeat(1, 1, 5)
    assert torch.allclose(envelope(x, 20), (2.0 + smooth)[None, :, None].expand(1, 64, 5), atol=1e-4)
    assert torch.allclose(envelope(x, 64), x, atol=1e-4)


def test_adain_vc_content_lifter_feeds_the_content_encoder_the_envelope_only(clips):
    torch.manual_seed(0)
    base = _model("adain-vc", clips)
    lifted = build("adain-vc", **{**base.config.to_dict(), "content_lifter": 8}).eval()
    assert lifted.state_dict().keys() == base.state_dict().keys()  # no weights of its own
    lifted.load_state_dict(base.state_dict())
    batch = clips.subset(slice(0, 4)).batch()
    _assert_padding_unread(lifted, batch)
    x, mask = speech_input(lifted, batch)
    from vaelab.nn.speech import envelope

    fine = x - envelope(x, 8)  # what the lifter removes changes nothing of the content code
    assert torch.allclose(lifted.content(x, mask), lifted.content(x + 3 * fine, mask), atol=1e-4)
    assert not torch.allclose(base.eval().content(x, mask), base.content(x + 3 * fine, mask), atol=1e-4)
    with pytest.raises(VaelabError, match="content_lifter"):
        build("adain-vc", **{**base.config.to_dict(), "content_lifter": 65})


def test_adain_vc_decoder_norm_branch_keeps_the_stream_and_never_reads_the_padding(clips):
    torch.manual_seed(0)
    cls = vaelab.models.model_class("adain-vc")
    model = build("adain-vc", **cls.data_settings(clips, {"input_shape": list(clips.shape), **SMALL,
                                                          "decoder_norm": "branch"})).eval()
    batch = clips.subset(slice(0, 4)).batch()
    _assert_padding_unread(model, batch)
    x, mask = speech_input(model, batch)
    c, s = model.content(x, mask), model.speaker(x, mask)
    dec = model.decoder
    with torch.no_grad():  # AdaIN's γ = -1, β = 0: every branch is silent and the stream passes the content through
        for adain in dec.adain:
            adain.affine.weight.zero_()
            adain.affine.bias.copy_(torch.cat([-torch.ones(dec.out.in_channels), torch.zeros(dec.out.in_channels)]))
        through = dec.out(dec.inp(c) * mask[:, None])
        assert torch.allclose(model.decode(c, s, mask), through, atol=1e-5)
        stream = build("adain-vc", **{**model.config.to_dict(), "decoder_norm": "stream"}).eval()
        stream.load_state_dict(model.state_dict())
        assert not torch.allclose(stream.decode(c, s, mask), through, atol=1e-3)
    with pytest.raises(VaelabError, match="decoder norm"):
        build("adain-vc", **{**model.config.to_dict(), "decoder_norm": "both"})


def test_adain_vc_decoder_norm_branch_last_normalises_the_stream_once_after_the_blocks(clips):
    from vaelab.nn.speech import instance_norm

    torch.manual_seed(0)
    base = _model("adain-vc", clips).eval()
    model = build("adain-vc", **{**base.config.to_dict(), "decoder_norm": "branch-last"}).eval()
    assert set(model.state_dict()) - set(base.state_dict()) == {"decoder.last.affine.weight", "decoder.last.affine.bias"}
    batch = clips.subset(slice(0, 4)).batch()
    _assert_padding_unread(model, batch)
    x, mask = speech_input(model, batch)
    c, s = model.content(x, mask), model.speaker(x, mask)
    dec = model.decoder
    with torch.no_grad():  # branches silenced (γ = -1) and the last AdaIN plain (γ = β = 0): out(ReLU(IN(inp(c))))
        for adain in dec.adain:
            adain.affine.weight.zero_()
            adain.affine.bias.copy_(torch.cat([-torch.ones(dec.out.in_channels), torch.zeros(dec.out.in_channels)]))
        dec.last.affine.weight.zero_(), dec.last.affine.bias.zero_()
        expected = dec.out(torch.relu(instance_norm(dec.inp(c) * mask[:, None], mask)))
        assert torch.allclose(model.decode(c, s, mask), expected, atol=1e-5)
        dec.last.affine.bias[0] = 2.0  # a scale γ from the speaker on one channel moves the output
        assert not torch.allclose(model.decode(c, s, mask), expected, atol=1e-3)


def test_adain_vc_run_saved_before_decoder_norm_loads_with_the_stream_norm(clips, tmp_path):
    import json

    assert build("adain-vc", **_model("adain-vc", clips).config.to_dict()).config.decoder_norm == "branch"
    result = vaelab.train("adain-vc", clips, tmp_path / "run", model_config={**SMALL, "decoder_norm": "stream"},
                          config={"epochs": 1, "batch_size": 8, "threads": 1, "val_size": 0.25}, progress=False)
    path = tmp_path / "run" / "config.json"
    record = json.loads(path.read_text())
    del record["config"]["decoder_norm"]  # as a run saved before the setting existed
    path.write_text(json.dumps(record))
    loaded = vaelab.load(tmp_path / "run")
    assert loaded.config.decoder_norm == "stream"
    batch = clips.subset(slice(0, 3)).batch()
    assert torch.allclose(loaded.reconstruct(batch), result.model.eval().reconstruct(batch), atol=1e-5)


def test_adain_vc_run_recorded_before_decoder_norm_resumes_with_the_stream_norm(clips, tmp_path):
    import json

    settings = {"batch_size": 8, "threads": 1, "val_size": 0.25}
    vaelab.train("adain-vc", clips, tmp_path / "run",
                 model_config={**SMALL, "decoder_norm": "stream", "adversarial": 0.0},
                 config={**settings, "epochs": 1}, progress=False)
    path = tmp_path / "run" / "run.json"
    record = json.loads(path.read_text())
    del record["config"]["decoder_norm"]  # as a run recorded before the setting existed
    del record["config"]["adversarial"]  # nor the critic: trained without one
    del record["config"]["hop"]  # a setting added later at the behaviour it had: read as its default
    path.write_text(json.dumps(record))
    result = vaelab.train("adain-vc", clips, tmp_path / "run", config={**settings, "epochs": 2}, resume=True,
                          progress=False)
    assert result.model.config.decoder_norm == "stream" and result.model.config.hop == 1
    assert result.model.config.adversarial == 0.0 and not hasattr(result.model, "critic")
    loaded = vaelab.load(tmp_path / "run")
    assert loaded.config.decoder_norm == "stream" and loaded.config.adversarial == 0.0


def test_warp_bands_moves_a_formant_by_its_factor_and_alpha_one_is_the_identity():
    from vaelab.data.audio import FRONT_END
    from vaelab.nn.speech import band_centres, warp_bands

    c = band_centres(FRONT_END)
    peak = 1000.0
    x = torch.exp(-((c.float() - peak) / 60.0) ** 2)[None, :, None].repeat(3, 1, 4)  # one formant at 1 kHz
    out = warp_bands(x, torch.tensor([1.0, 1.2, 1 / 1.2]), c)
    assert torch.equal(out[0], x[0])
    for i, alpha in ((1, 1.2), (2, 1 / 1.2)):
        moved = c[int(out[i, :, 0].argmax())]
        assert abs(moved / (peak * alpha) - 1) < 0.05, (alpha, moved)
    assert torch.isfinite(out).all() and out.max() <= 1 + 1e-6  # interpolation never overshoots


def test_adain_vc_content_warp_perturbs_only_the_content_input_while_training(clips):
    torch.manual_seed(0)
    base = _model("adain-vc", clips)
    warped = build("adain-vc", **{**base.config.to_dict(), "content_warp": 0.2})
    assert warped.state_dict().keys() == base.state_dict().keys()  # no weights of its own
    warped.load_state_dict(base.state_dict())
    batch = clips.subset(slice(0, 4)).batch()
    base.eval(), warped.eval()
    assert torch.equal(warped.loss(batch).total, base.loss(batch).total)  # evaluation reads the clip as it is
    seen = []
    hook = warped.content_in.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    speaker_seen = []
    hook2 = warped.speaker_in.register_forward_hook(lambda m, i, o: speaker_seen.append(i[0].detach()))
    warped.train()
    warped.loss(batch)
    hook.remove(), hook2.remove()
    x, _ = speech_input(warped, batch, trim=True)
    assert not torch.allclose(seen[0], x, atol=1e-3)   # the content encoder read a warped clip
    assert torch.equal(speaker_seen[0], x)             # the speaker encoder the clip itself
    for bad in (-0.1, 1.0):
        with pytest.raises(VaelabError, match="content_warp"):
            build("adain-vc", **{**base.config.to_dict(), "content_warp": bad})


def test_warp_factors_share_one_alpha_per_group_within_the_bound():
    from vaelab.nn.speech import warp_factors

    torch.manual_seed(0)
    groups = torch.tensor([3, 1, 3, 3, 1, 7] * 50)
    alpha = warp_factors(groups, 0.25)
    for g in (1, 3, 7):
        assert torch.unique(alpha[groups == g]).numel() == 1
    many = warp_factors(torch.arange(2000), 0.25)
    assert many.min() >= 1 / 1.25 - 1e-6 and many.max() <= 1.25 + 1e-6
    assert many.min() < 0.85 and many.max() > 1.2 and abs(many.log().mean()) < 0.02  # spread both ways


def test_adain_vc_voice_warp_gives_each_speaker_a_new_voice_in_input_and_target(clips):
    torch.manual_seed(0)
    base = _model("adain-vc", clips)
    voiced = build("adain-vc", **{**base.config.to_dict(), "voice_warp": 0.2})
    assert voiced.state_dict().keys() == base.state_dict().keys()
    voiced.load_state_dict(base.state_dict())
    batch = clips.subset([0, 1, 6, 7, 2, 8]).batch()
    assert batch.extras["speaker"].unique().numel() == 2
    assert torch.equal(voiced.eval().loss(batch).total, base.eval().loss(batch).total)
    content, speaker = [], []
    h1 = voiced.content_in.register_forward_hook(lambda m, i, o: content.append(i[0].detach()))
    h2 = voiced.speaker_in.register_forward_hook(lambda m, i, o: speaker.append(i[0].detach()))
    voiced.train().loss(batch)
    h1.remove(), h2.remove()
    x, _ = speech_input(voiced, batch, trim=True)
    assert torch.equal(content[0], speaker[0]) and not torch.allclose(content[0], x, atol=1e-3)
    from vaelab.data.audio import FRONT_END
    from vaelab.nn.speech import band_centres, warp_bands

    # one α per speaker: each warped clip is its clip warped by the factor its speaker's other clips got
    c = band_centres({**FRONT_END, **voiced.front_end})
    grid = torch.exp(torch.linspace(-0.19, 0.19, 381))
    speakers = batch.extras["speaker"]
    best = [int(((warp_bands(x[i:i + 1].expand(len(grid), -1, -1), grid, c) - content[0][i]).abs()
                 .sum((1, 2))).argmin()) for i in range(len(x))]
    for s in speakers.unique():
        picks = {best[i] for i in range(len(x)) if speakers[i] == s}
        assert max(picks) - min(picks) <= 1, (int(s), picks)
    assert len({best[i] for i in range(len(x))}) > 1  # the two speakers got different voices
    with pytest.raises(VaelabError, match="voice_warp"):
        build("adain-vc", **{**base.config.to_dict(), "voice_warp": 1.5})


def test_vq_vc_content_warp_codes_a_warped_clip_and_takes_the_voice_from_the_clip_itself(clips):
    torch.manual_seed(0)
    base = _model("vq-vc", clips)
    warped = build("vq-vc", **{**base.config.to_dict(), "content_warp": 0.2})
    assert warped.state_dict().keys() == base.state_dict().keys()
    batch = clips.subset([0, 1, 6, 7]).batch()
    base.train().loss(batch)                       # the codebook's k-means start, then the same book in both
    warped.load_state_dict(base.state_dict())
    assert torch.equal(warped.eval().loss(batch).total, base.eval().loss(batch).total)
    seen = []
    hook = warped.enc_in.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    before = warped.quantizer.counts.sum().item()
    warped.train().loss(batch)
    hook.remove()
    x, mask = speech_input(warped, batch, trim=True)
    from vaelab.nn.speech import instance_norm

    clean = instance_norm(x, mask)                  # the encoder's input (input_norm) of the clip as it is
    assert len(seen) == 2 and not torch.allclose(seen[0], clean, atol=1e-3) and torch.allclose(seen[1], clean)
    assert warped.quantizer.counts.sum().item() - before == int(mask.sum())  # the book counts the coded pass only
    with pytest.raises(VaelabError, match="content_warp"):
        build("vq-vc", **{**base.config.to_dict(), "content_warp": 0.2, "speaker": "none", "input_norm": False})
