"""The denoising VAE: its objective (the VAE's at noise 0, M × K averaged as written), an
honest log-likelihood from the clean-input encoder, the objective never named a likelihood
or an ELBO, exact resume, save/load, bad settings as one line, and ``compare dvae``."""
from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

import vaelab
from vaelab import VaelabError
from vaelab.cli import main
from vaelab.compare import dvae_vs_vae
from vaelab.evaluation.likelihood import image_seed

from conftest import FAST, TINY


def _binary(n: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 28, 28, generator=g) < 0.3).float()


def _pair(**settings):
    """A dvae and a vae with the same weights."""
    torch.manual_seed(0)
    dvae = vaelab.build("dvae", **TINY, **settings)
    vae = vaelab.build("vae", **TINY)
    vae.load_state_dict(dvae.state_dict())
    return dvae, vae


# --- the objective -------------------------------------------------------------------------


@pytest.mark.parametrize("corruption", ["salt-pepper", "masking"])
def test_objective_at_noise_zero_is_the_vae_elbo_draw_for_draw(corruption):
    dvae, vae = _pair(corruption=corruption, noise_level=0.0)
    x = _binary()
    torch.manual_seed(7)
    a = dvae.loss(x)
    torch.manual_seed(7)
    b = vae.loss(x)
    assert torch.equal(a.total, b.total)
    assert torch.equal(a.terms["dvae_recon"], b.terms["recon"]) and torch.equal(a.terms["dvae_kl"], b.terms["kl"])
    a.total.backward()  # and it trains
    assert all(p.grad is not None for p in dvae.parameters())


def test_m_corruptions_times_k_samples_are_averaged_as_written():
    """−L_dvae = (1/MK) Σ_m Σ_k −log p(x|z_mk) + (1/M) Σ_m KL(q(z|x̃_m) ‖ p(z)), with masking at
    level 1 (x̃ = 0, no randomness left in it) so the terms can be computed by hand."""
    m, k = 3, 2
    dvae, _ = _pair(corruption="masking", noise_level=1.0, corruptions_m=m, samples_k=k)
    x = _binary(4)
    torch.manual_seed(3)
    loss = dvae.loss(x)
    with torch.no_grad():
        q = dvae.encode(torch.zeros_like(x))
        kl = torch.distributions.kl_divergence(q, dvae.prior()).mean()
        torch.manual_seed(3)
        torch.rand(m * 4, 1, 28, 28)  # the masking draw
        eps = torch.randn(k * m * 4, TINY["latent_dim"]).view(k * m, 4, -1)
        z = q.mean + q.stddev * eps
        recon = -dvae.decode(z.flatten(0, 1)).log_prob(x.repeat(k * m, 1, 1, 1)).mean()
    assert loss.terms["dvae_kl"].item() == pytest.approx(kl.item(), rel=1e-5)
    assert loss.terms["dvae_recon"].item() == pytest.approx(recon.item(), rel=1e-5)
    assert loss.total.item() == pytest.approx((recon + kl).item(), rel=1e-5)


def test_the_encoder_sees_the_corrupted_input_and_the_decoder_the_clean_target():
    dvae, vae = _pair(corruption="masking", noise_level=1.0)  # x̃ = 0
    x = _binary()
    dvae.prepare(x)  # output bias at logit(mean pixel): the decoder prefers x to a blank image
    with torch.no_grad():
        kl_blank = vae.kl_per_dim(torch.zeros_like(x)).sum(1).mean()
        kl_clean = vae.kl_per_dim(x).sum(1).mean()
        assert dvae.loss(x).terms["dvae_kl"].item() == pytest.approx(kl_blank.item(), rel=1e-5)
        assert kl_clean.item() != pytest.approx(kl_blank.item(), rel=1e-3)
        # the target is x: a blank target scores very differently
        torch.manual_seed(0)
        a = dvae.loss(x).terms["dvae_recon"]
        torch.manual_seed(0)
        b = dvae.loss(torch.zeros_like(x)).terms["dvae_recon"]
        assert abs(float(a - b)) > 1.0


# --- evaluation ------------------------------------------------------------------------------


def _manual_nll(model, x: torch.Tensor, k: int, seed: int, clean: bool) -> float:
    """−log p(x) by importance sampling, each image's k codes from its own seeded stream (as
    vaelab's estimator draws them), with q(z|x) (clean) or q(z|0) as the proposal."""
    total = 0.0
    with torch.no_grad():
        for i in range(len(x)):
            q = model.encode(x[i:i + 1] if clean else torch.zeros_like(x[i:i + 1]))
            g = torch.Generator().manual_seed(image_seed(seed, i))
            z = q.mean + q.stddev * torch.randn(k, TINY["latent_dim"], generator=g)
            log_w = model.decode(z).log_prob(x[i].expand(k, -1, -1, -1)) + model.prior().log_prob(z) - q.log_prob(z)
            total -= float(torch.logsumexp(log_w.double(), 0) - math.log(k))
    return total / len(x)


def test_eval_nll_uses_the_clean_input_encoder_and_never_names_the_objective_a_likelihood():
    dvae, _ = _pair(corruption="masking", noise_level=1.0)
    dvae.eval()
    x = _binary(5)
    with torch.no_grad():  # a sharper encoder, so that q(z|x) and q(z|0) differ clearly
        for p in dvae.encoder.parameters():
            p.mul_(4)
    result = vaelab.evaluate(dvae, x, nll_samples=9, seed=2)
    assert result["nll"] == pytest.approx(_manual_nll(dvae, x, 9, 2, clean=True), rel=1e-4)
    # the corrupted encoder (here q(z|0)) would be a different proposal and a different figure
    assert abs(result["nll"] - _manual_nll(dvae, x, 9, 2, clean=False)) > 0.5
    assert result["dvae_objective"] == pytest.approx(-(result["dvae_recon"] + result["dvae_kl"]), rel=1e-5)
    assert not {"elbo", "celbo", "recon", "kl", "cnll"} & set(result)


def test_cli_eval_reports_nll_and_the_objective_by_its_own_name(synthetic_small, synthetic_npy, tmp_path, capsys):
    out = tmp_path / "run"
    vaelab.train("dvae", synthetic_small.train.subset(slice(0, 300)), out,
                 model_config={**TINY, "noise_level": 0.2}, config={**FAST, "epochs": 1, "val_size": 0},
                 progress=False)
    assert main(["eval", str(out), "--data", synthetic_npy, "--limit", "50",
                 "--nll-samples", "3", "--json", "--no-progress", "--threads", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"nll", "dvae_objective", "dvae_recon", "dvae_kl"} <= set(result)
    assert not {"elbo", "recon", "kl"} & set(result)
    assert result["nll"] > 0 and result["dvae_objective"] < 0


# --- training: resume, save/load -------------------------------------------------------------


def test_resume_is_exactly_an_uninterrupted_run(synthetic_small, tmp_path):
    """The corruption draws come from the trainer's seeded, checkpointed RNG."""
    data = synthetic_small.train.subset(slice(0, 400))
    settings = {**TINY, "noise_level": 0.2, "corruptions_m": 2, "samples_k": 2}

    def run(out, epochs, resume=False):
        return vaelab.train("dvae", data, out, model_config=None if resume else settings,
                            config={**FAST, "epochs": epochs, "lr": 3e-3, "val_size": 0}, val_data=synthetic_small.val,
                            resume=resume, progress=False)

    run(tmp_path / "straight", 2)
    run(tmp_path / "split", 1)
    run(tmp_path / "split", 2, resume=True)
    a = load_file(tmp_path / "straight" / "model.safetensors")
    b = load_file(tmp_path / "split" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lines = [json.loads(ln) for ln in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert {"dvae_recon", "dvae_kl"} <= set(lines[-1]["train"]) and "kl" not in lines[-1]["train"]


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = vaelab.build("dvae", **TINY, corruption="masking", noise_level=0.3, corruptions_m=2, samples_k=3).eval()
    vaelab.save(model, tmp_path)
    loaded = vaelab.load(tmp_path)
    assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
    x = _binary()
    torch.manual_seed(1)
    a = model.loss(x).total
    torch.manual_seed(1)
    assert torch.equal(a, loaded.loss(x).total)
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    with torch.no_grad():
        assert torch.equal(model.importance_log_weights(x, 5, g1), loaded.importance_log_weights(x, 5, g2))


# --- bad settings ----------------------------------------------------------------------------


@pytest.mark.parametrize("settings, fragment", [
    ({"noise_level": 1.5}, "must lie in [0, 1], got 1.5"),
    ({"corruption": "masking", "noise_level": -0.1}, "must lie in [0, 1], got -0.1"),
    ({"corruption": "gaussian", "likelihood": "gaussian", "noise_level": -0.5}, "σ; it must be >= 0"),
    ({"corruptions_m": 0}, "corruptions_m (M) must be at least 1, got 0"),
    ({"samples_k": -2}, "samples_k (K) must be at least 1, got -2"),
    ({"corruption": "gaussian"}, "gaussian corruption makes grey pixels, but a bernoulli likelihood"),
    ({"corruption": "blur"}, "unknown corruption 'blur'"),
])
def test_bad_settings_are_one_clear_line(settings, fragment):
    with pytest.raises(VaelabError) as info:
        vaelab.build("dvae", **settings)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_bad_settings_on_the_command_line(tmp_path, capsys):
    for args, fragment in ((["--noise-level", "2"], "must lie in [0, 1]"), (["--samples-k", "0"], "at least 1"),
                           (["--corruption", "gaussian"], "use --corruption salt-pepper or masking")):
        code = main(["train", "dvae", "--data", "digits", "--out", str(tmp_path / "r"), *args])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err
    # real-valued data: gaussian corruption of a gaussian-likelihood model is fine, so is salt-pepper
    vaelab.build("dvae", likelihood="gaussian-learned", corruption="gaussian", noise_level=0.025)
    vaelab.build("dvae", likelihood="gaussian-learned", corruption="salt-pepper", noise_level=0.1)


# --- compare dvae ----------------------------------------------------------------------------


def test_compare_dvae_writes_its_table(tmp_path, data_dir):
    result = dvae_vs_vae(tmp_path / "cmp", data_dir=data_dir, levels=(0.0, 0.2), frey_levels=(0.025,),
                         epochs=1, frey_epochs=1, nll_samples=4, train_size=300, test_size=40, threads=1,
                         progress=False)
    result.write(tmp_path / "cmp")
    saved = json.loads((tmp_path / "cmp" / "results.json").read_text())
    rows = saved["rows"]
    assert [(r["data"], r["level"]) for r in rows] == [("mnist", 0.0), ("mnist", 0.2), ("frey-faces", 0.025)]
    zero, noisy = rows[0], rows[1]
    assert zero["dvae_is_vae"] and zero["dvae_nll"] == zero["vae_nll"]
    assert not noisy["dvae_is_vae"] and noisy["dvae_nll"] != noisy["vae_nll"]
    assert all(math.isfinite(r[c]) for r in rows for c in saved["columns"][3:])
    assert rows[2]["corruption"] == "gaussian"
    table = (tmp_path / "cmp" / "table.md").read_text()
    assert "| data | corruption | level | vae_nll | dvae_nll |" in table and "neg_dvae_objective" in table
    assert "elbo" not in " ".join(saved["columns"]).replace("nelbo", "")
    assert len(result.figures) == 2 and all((tmp_path / "cmp" / f).exists() for f in
                                             ("dvae_mnist.png", "dvae_frey-faces.png"))


def test_compare_dvae_bad_input_is_one_line(tmp_path, data_dir, capsys):
    for args, fragment in ((["--corruption", "gaussian"], "Frey Face always uses gaussian"),
                           (["--levels", "0,1.5"], "levels must be non-empty and within [0, 1]"),
                           (["--samples-k", "0"], "samples_k must be at least 1"),
                           (["--data", "mnist"], "takes no --data")):
        code = main(["compare", "dvae", "--out", str(tmp_path / "c"), "--data-dir", str(data_dir), *args])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err
