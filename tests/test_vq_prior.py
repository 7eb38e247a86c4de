"""The VQ-VAE's prior: trained by `vaelab train-prior RUN` into RUN/prior, attached on load to
the weights it was fitted to, sampling through the VQ-VAE, the bound in evaluation, and each
refusal in one line."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import vaelab
from vaelab.cli import main as cli_main
from vaelab.data import binarize_static
from vaelab.errors import VaelabError
from vaelab.training.prior import train_prior

VQ = {"channels": [8, 8], "residual_channels": 4, "residual_blocks": 1, "codebook_size": 16, "code_dim": 4}
PRIOR = {"layers": 2, "width": 8, "head": 16, "embed_dim": 4}
FAST = {"threads": 1, "batch_size": 100, "epochs": 1}


@pytest.fixture(scope="module")
def images(synthetic_small, tmp_path_factory):
    """300 synthetic digits with labels, as a file a command line can name."""
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    part = synthetic_small.train.subset(slice(0, 300))
    np.savez(path, x=(part.x.numpy() * 255).astype(np.uint8), y=part.y.numpy())
    return f"npy:{path}"


@pytest.fixture(scope="module")
def run(images, tmp_path_factory):
    """A tiny VQ-VAE trained by the command line, with its prior."""
    out = tmp_path_factory.mktemp("vq") / "run"
    args = ["--channels", "8,8", "--residual-channels", "4", "--residual-blocks", "1", "--codebook-size", "16",
            "--code-dim", "4", "--epochs", "1", "--batch-size", "100", "--val-size", "50", "--threads", "1"]
    assert cli_main(["train", "vqvae", "--data", images, "--out", str(out), "--no-progress", *args]) == 0
    assert not (out / "samples.png").exists()  # nothing to sample from yet
    prior = ["--layers", "2", "--width", "8", "--head", "16", "--embed-dim", "4", "--epochs", "1", "--threads", "1"]
    assert cli_main(["train-prior", str(out), "--no-progress", *prior]) == 0
    return out


def test_train_prior_writes_a_complete_run_in_the_vq_run(run):
    prior = run / "prior"
    assert (prior / "model.safetensors").is_file() and (prior / "codes.safetensors").is_file()
    record = json.loads((prior / "run.json").read_text())
    vq_record = json.loads((run / "run.json").read_text())
    assert record["model"] == "vq-prior" and record["config"]["codebook_size"] == 16
    assert record["config"]["input_shape"] == [1, 7, 7]
    assert record["data"]["n_val"] == vq_record["data"]["n_val"] == 50  # the VQ-VAE's validation rows held out
    assert record["config"]["vqvae"] == vaelab.models.vq_prior.fingerprint_of(vaelab.load(run, prior=False))


def test_load_attaches_the_prior_and_the_vq_vae_samples_through_it(run, tmp_path):
    model = vaelab.load(run)
    assert model.prior is not None and "prior" not in dict(model.named_children())
    assert not any(k.startswith("prior") for k in model.state_dict())  # held beside the weights
    a = model.sample(6, generator=torch.Generator().manual_seed(1))
    assert a.shape == (6, 1, 28, 28) and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, model.sample(6, generator=torch.Generator().manual_seed(1)))
    assert cli_main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0


def test_eval_reports_the_bound_and_names_it_a_bound(run, images, capsys, synthetic_small):
    assert cli_main(["eval", str(run), "--data", images, "--split", "train", "--limit", "40", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "nll" not in result and result["nll_bound"] > 0
    used = result["codebook_usage"] * 16  # the share of the 16 codes in use: a whole number of codes
    assert used == pytest.approx(round(used)) and round(used) >= 1
    assert 1 - 1e-6 <= result["code_perplexity"] <= used + 1e-6  # no more than the codes in use
    assert result["bits_per_dim_bound"] == pytest.approx(result["nll_bound"] / (784 * np.log(2)))
    model = vaelab.load(run)
    x = binarize_static(torch.from_numpy(np.load(images[4:])["x"][:40]).float().div(255), 123)
    z = model.codes(x)
    with torch.no_grad():
        by_hand = model.code_log_likelihood(x, z) + model.prior.exact_log_likelihood(z)
        assert bool((model.prior.exact_log_likelihood(z) < 0).all())  # so the bound lies above −log p(x|z_q)
    assert result["nll_bound"] == pytest.approx(-float(by_hand.double().mean()), rel=1e-4)


def test_a_vq_vae_without_a_prior_says_how_to_get_one(synthetic_small, tmp_path, capsys):
    out = tmp_path / "bare"
    vaelab.train("vqvae", synthetic_small.train.subset(slice(0, 100)), out, model_config=VQ,
                 config={**FAST, "val_size": 0}, progress=False)
    model = vaelab.load(out)
    assert model.prior is None and not model.bounds_likelihood
    with pytest.raises(VaelabError, match="train-prior"):
        model.sample(2)
    assert cli_main(["sample", str(out), "-o", str(tmp_path / "s.png")]) == 2
    assert "vaelab train-prior RUN" in capsys.readouterr().err
    assert "nll_bound" not in vaelab.evaluate(model, binarize_static(synthetic_small.test.x[:20], 0))


def test_a_prior_of_other_weights_is_refused_on_load_and_on_train_prior(run, images, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(run, other)
    # the VQ-VAE trains on: its prior now models stale codes
    assert cli_main(["train", "vqvae", "--data", images, "--out", str(other), "--resume", "--epochs", "2",
                     "--no-progress"]) == 0
    with pytest.raises(VaelabError, match="trained on the codes of a different VQ-VAE"):
        vaelab.load(other)
    with pytest.raises(VaelabError, match="different VQ-VAE"):
        train_prior(other, config={"epochs": 1})
    assert vaelab.load(other, prior=False).prior is None


def test_train_prior_again_needs_resume_and_continues(run, images, capsys, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    assert cli_main(["train-prior", str(copy), "--epochs", "1", "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert cli_main(["train-prior", str(copy), "--resume", "--epochs", "2", "--no-progress"]) == 0
    lines = (copy / "prior" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == [1, 2]
    assert cli_main(["train-prior", str(copy), "--resume", "--layers", "3", "--no-progress"]) == 2
    assert "--layers differs" in capsys.readouterr().err


def test_class_conditional_prior_samples_by_label(synthetic_small, tmp_path, capsys):
    out = tmp_path / "cond"
    data = synthetic_small.train.subset(slice(0, 200))
    vaelab.train("vqvae", data, out, model_config=VQ, config={**FAST, "val_size": 0}, progress=False)
    train_prior(out, data=data, model_config={**PRIOR, "classes": 10}, config={**FAST, "val_size": 0},
                progress=False)
    model = vaelab.load(out)
    assert model.prior.conditional and model.sample(3, y=4).shape == (3, 1, 28, 28)
    assert cli_main(["sample", str(out), "--label", "3", "-n", "2", "-o", str(tmp_path / "3.png")]) == 0
    assert cli_main(["sample", str(out), "--label", "12", "-n", "2", "-o", str(tmp_path / "x.png")]) == 2
    assert "0..9" in capsys.readouterr().err


def test_an_unconditional_prior_refuses_a_label(run):
    with pytest.raises(VaelabError, match="prior is unconditional"):
        vaelab.load(run).sample(2, y=3)


def test_bad_code_maps_and_bad_runs_are_one_line(run, synthetic_vae, tmp_path):
    prior = vaelab.load(run).prior
    with pytest.raises(VaelabError, match=r"code maps of shape \[1, 6, 6\]"):
        prior.exact_log_likelihood(torch.zeros(2, 6, 6, dtype=torch.long))
    with pytest.raises(VaelabError, match="outside 0..15"):
        prior.exact_log_likelihood(torch.full((2, 7, 7), 16))
    with pytest.raises(VaelabError, match="fractional"):
        prior.exact_log_likelihood(torch.full((2, 7, 7), 0.5))
    vaelab.save(synthetic_vae, tmp_path / "vae")
    (tmp_path / "vae" / "run.json").write_text("{}")
    with pytest.raises(VaelabError, match="no discrete codes"):
        train_prior(tmp_path / "vae")
    with pytest.raises(VaelabError, match="codebook_size must be >= 2"):
        vaelab.build("vq-prior", codebook_size=1)
    assert cli_main(["train-prior", str(tmp_path / "nowhere")]) == 2


def test_compare_discrete_puts_the_bound_beside_likelihoods(tmp_path, data_dir):
    from vaelab.compare import discrete

    result = discrete(tmp_path / "cmp", data_dir=data_dir, models=("vae", "vqvae"), epochs=3,
                      model_epochs={"vae": 1, "vqvae": 1}, prior_epochs=1,
                      train_size=200, test_size=20, nll_samples=5, threads=1, progress=False)
    rows = {r["model"].split()[0]: r for r in result.rows}
    assert rows["VQ-VAE"]["figure"].startswith("bound") and rows["VAE"]["figure"].startswith("−log p(x), IS")
    assert all((tmp_path / "cmp" / r["samples"]).is_file() for r in result.rows)
    assert (tmp_path / "cmp" / "runs" / "vqvae" / "prior" / "model.safetensors").is_file()
    stamp = (tmp_path / "cmp" / "runs" / "vae" / "model.safetensors").stat().st_mtime_ns
    again = discrete(tmp_path / "cmp", data_dir=data_dir, models=("vae",), epochs=1, prior_epochs=1,
                     train_size=200, test_size=20, nll_samples=5, threads=1, progress=False)
    assert (tmp_path / "cmp" / "runs" / "vae" / "model.safetensors").stat().st_mtime_ns == stamp  # reused
    assert again.rows[0]["nats"] == rows["VAE"]["nats"]  # its figures kept beside the run, not measured again
    stored = tmp_path / "cmp" / "runs" / "vae" / "compare-discrete.json"
    assert json.loads(stored.read_text())["result"]["nll"] == rows["VAE"]["nats"]
    more = discrete(tmp_path / "cmp", data_dir=data_dir, models=("vae",), epochs=1, prior_epochs=1,
                    train_size=200, test_size=20, nll_samples=6, threads=1, progress=False)
    assert json.loads(stored.read_text())["result"]["k"] == 6 and more.rows[0]["figure"].endswith("k = 6")
    assert rows["VQ-VAE"]["epochs"] == "1 + 1" and rows["VAE"]["epochs"] == "1"
    with pytest.raises(VaelabError, match="unknown model"):
        discrete(tmp_path / "x", models=("vae", "glow"))
    with pytest.raises(VaelabError, match="epochs given for pixelcnn"):
        discrete(tmp_path / "x", models=("vae",), model_epochs={"pixelcnn": 2})


@pytest.mark.parametrize("shape, code_map", [((3, 32, 32), (8, 8)), ((1, 28, 20), (7, 5))])
def test_colour_and_frey_shaped_images_get_a_prior_of_their_code_map(shape, code_map, tmp_path):
    x = torch.randint(0, 256, (40, *shape)).float().div(255)
    data = vaelab.Dataset("images", x)
    out = tmp_path / "run"
    vaelab.train("vqvae", data, out, model_config={**VQ, "likelihood": "discretized-logistic"},
                 config={**FAST, "val_size": 0}, progress=False)
    train_prior(out, data=data, model_config=PRIOR, config={**FAST, "val_size": 0}, progress=False)
    model = vaelab.load(out)
    assert model.code_shape == code_map and model.prior.config.input_shape == (1, *code_map)
    assert model.sample(2).shape == (2, *shape)
    bound = vaelab.evaluate(model, x[:8])
    assert bound["bits_per_dim_bound"] == pytest.approx(bound["nll_bound"] / (x[0].numel() * np.log(2)))


@pytest.mark.parametrize("option", ["--val-size 0.5", "--val-rows last", "--test-fraction 0.3", "--labels 100",
                                    "--label-seed 2", "--labelled-batch-size 10", "--binarize static", "--seed 3"])
def test_train_prior_refuses_the_training_settings_it_does_not_honour(option, tmp_path, capsys):
    """The split follows the VQ-VAE run's, and codes have no labels to thin or pixels to
    binarize: such options are refused in one line before anything is read, and not offered."""
    assert cli_main(["train-prior", str(tmp_path / "nowhere"), *option.split()]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: train-prior has no {option.split()[0]}") and err.count("\n") == 1
    with pytest.raises(SystemExit):
        cli_main(["train-prior", "--help"])
    assert option.split()[0] not in capsys.readouterr().out


def test_train_prior_refuses_such_a_setting_in_a_settings_file(tmp_path, capsys):
    settings = tmp_path / "prior.toml"
    settings.write_text("epochs = 1\nval_size = 0.5\n")
    assert cli_main(["train-prior", str(tmp_path / "nowhere"), "--config", str(settings)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: train-prior has no --val-size") and err.count("\n") == 1
