"""The deterministic autoencoders through the ``vaelab`` command: train, eval, sample and
reconstruct each one on synthetic 28×28 digits as user data; options that a model lacks, NLL requests and
bad values give one ``error:`` line."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import synthetic_digits
from test_cli import assert_one_line_error, assert_png, cli
from vaelab.cli import main

COMMON = ["--epochs", "1", "--val-size", "200", "--batch-size", "100", "--threads", "1", "--no-progress"]
MODEL_ARGS = {
    "linear-ae": ["--latent-dim", "1", "--no-tied"],
    "ae": ["--hidden", "32", "--latent-dim", "4", "--loss", "bernoulli"],
    "conv-ae": ["--channels", "4,8", "--latent-dim", "4"],
    "dae": ["--hidden", "32", "--latent-dim", "4", "--corruption", "salt-pepper", "--noise-level", "0.2"],
    "stacked-ae": ["--hidden", "32,16", "--latent-dim", "4", "--pretrain-epochs", "1"],
}


@pytest.fixture(scope="module")
def npy(tmp_path_factory):
    """800 synthetic digits as a uint8 N×28×28 .npy file (no labels)."""
    path = tmp_path_factory.mktemp("npy") / "digits800.npy"
    np.save(path, (synthetic_digits(800, 4).x[:, 0].numpy() * 255).round().astype(np.uint8))
    return f"npy:{path}"


@pytest.fixture(scope="module")
def runs(npy, tmp_path_factory):
    """One tiny CLI training run per autoencoder."""
    root = tmp_path_factory.mktemp("ae-runs")
    for name, args in MODEL_ARGS.items():
        assert main(["train", name, "--data", npy, "--out", str(root / name), *args, *COMMON]) == 0, name
    return root


@pytest.mark.parametrize("name", list(MODEL_ARGS))
def test_train_eval_sample_reconstruct(name, runs, npy, tmp_path, capsys):
    run = runs / name
    record = json.loads((run / "run.json").read_text())
    assert record["model"] == name and record["resolved"]["binarize"] == "none"
    if name == "linear-ae":
        assert record["config"]["tied"] is False and record["config"]["center"] is True
        # the model's own training defaults, the ones that reach PCA's subspace
        assert (record["train"]["lr"], record["train"]["lr_schedule"]) == (3e-3, "cosine")
    else:
        assert (record["train"]["lr"], record["train"]["lr_schedule"]) == (1e-3, "constant")
    if name == "dae":
        assert record["config"]["corruption"] == "salt-pepper" and record["config"]["noise_level"] == 0.2
    if name == "stacked-ae":
        assert record["config"]["pretrain_epochs"] == 1 and record["config"]["hidden"] == [32, 16]
    line = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert set(line["train"]) == {"recon"} and line["val"]["loss"] == line["val"]["recon"]
    for file in ("model.safetensors", "config.json", "samples.png", "reconstructions.png"):
        assert (run / file).is_file()

    code, out, err = cli(capsys, "eval", run, "--data", npy, "--split", "train", "--limit", "300", "--json",
                         "--threads", "1")
    assert code == 0, err
    result = json.loads(out)
    assert result["n"] == 300 and result["binarize"] == "none"
    assert {"recon", "mse", "psnr"} <= set(result) and not {"nll", "elbo", "kl"} & set(result)
    assert 0 < result["mse"] < 120 and 5 < result["psnr"] < 30  # one tiny epoch: a smoke test
    if name != "ae":  # squared-error models: the loss is the MSE
        assert result["recon"] == pytest.approx(result["mse"], rel=1e-4)
    code, out, err = cli(capsys, "eval", run, "--data", npy, "--split", "train", "--limit", "300", "--threads", "1")
    assert code == 0 and "psnr" in out and "nll" not in out

    code, _, err = cli(capsys, "sample", run, "-n", "9", "-o", tmp_path / "s.png")
    assert code == 0, err
    assert_png(tmp_path / "s.png", size=(2 * (3 * 30 + 2),) * 2)
    code, _, err = cli(capsys, "reconstruct", run, "--data", npy, "--split", "train", "-n", "8", "-o", tmp_path / "r.png")
    assert code == 0, err
    assert_png(tmp_path / "r.png", size=(2 * (8 * 30 + 2), 2 * (2 * 30 + 2)))


def test_encode_writes_autoencoder_codes(runs, npy, tmp_path, capsys):
    import torch

    import vaelab

    path = tmp_path / "codes.npz"
    code, out, err = cli(capsys, "encode", runs / "ae", "--data", npy, "--split", "train", "-o", path)
    assert code == 0, err
    with np.load(path, allow_pickle=False) as saved:
        assert saved.files == ["code"]  # the .npy has no labels, so no y
        codes = saved["code"]
    x = vaelab.load_dataset(npy, "train").x
    assert codes.shape == (800, 4)
    with torch.no_grad():
        np.testing.assert_allclose(codes[:20], vaelab.load(runs / "ae").encode(x[:20]).mean.numpy(), atol=1e-5)


def test_nll_is_refused_for_an_autoencoder(runs, npy, capsys):
    code, _, err = cli(capsys, "eval", runs / "ae", "--data", npy, "--split", "train", "--limit", "10",
                       "--nll-samples", "10")
    assert_one_line_error(code, err, "NLL) needs a VAE-family model", "'ae' is a deterministic autoencoder",
                          "without --nll-samples")


def test_resume_continues_an_autoencoder_run(npy, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "dae", "--data", npy, "--out", out, *MODEL_ARGS["dae"], *COMMON]
    code, _, err = cli(capsys, *args)
    assert code == 0, err
    code, stdout, err = cli(capsys, "train", "dae", "--data", npy, "--out", out, "--resume", "--epochs", "2",
                            "--no-progress")
    assert code == 0 and "trained 2 epochs" in stdout, err
    code, _, err = cli(capsys, "train", "dae", "--data", npy, "--out", out, "--resume", "--epochs", "3",
                       "--noise-level", "0.5", "--no-progress")
    assert_one_line_error(code, err, "--noise-level differs")


@pytest.mark.parametrize("model, extra, fragments", [
    ("vae", ["--tied"], ["model 'vae' has no setting 'tied'"]),
    ("vae", ["--corruption", "masking"], ["model 'vae' has no setting 'corruption'"]),
    ("ae", ["--beta", "2"], ["model 'ae' has no setting 'beta'"]),
    ("linear-ae", ["--hidden", "32"], ["model 'linear-ae' has no setting 'hidden'"]),
    ("stacked-ae", ["--backbone", "conv"], ["model 'stacked-ae' has no setting 'backbone'"]),
    ("ae", ["--loss", "l1"], ["unknown loss 'l1'", "mse, bernoulli"]),
    ("dae", ["--corruption", "blur"], ["unknown corruption 'blur'", "salt-pepper"]),
    ("dae", ["--corruption", "none"], ["dae needs a corruption"]),
    ("dae", ["--noise-level", "2"], ["--noise-level is a probability", "[0, 1]"]),
    ("stacked-ae", ["--pretrain-epochs", "-1"], ["--pretrain-epochs must be >= 0"]),
    ("linear-ae", ["--latent-dim", "0"], ["--latent-dim must be positive"]),
])
def test_bad_model_options_give_one_error_line(model, extra, fragments, npy, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = cli(capsys, "train", model, "--data", npy, "--out", out, *extra, *COMMON)
    assert_one_line_error(code, err, *fragments)
    assert not (out / "run.json").exists()


def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("model, shown", [
    ("dae", ["--corruption NAME", "salt-pepper (default: masking)", "--noise-level X", "(default: 0.25)"]),
    ("linear-ae", ["--tied, --no-tied", "--center, --no-center", "no offset) (default: true)",
                   "--lr X Adam learning rate (default: 0.003)", "(default: cosine)"]),
    ("stacked-ae", ["--pretrain-epochs N", "(default: 500,250)", "--pretrain-lr X"]),
    ("conv-ae", ["--channels N[,N...]", "convolutions) (default: none)", "(default: conv)"]),
])
def test_each_model_help_shows_its_own_defaults(model, shown, capsys):
    text = _help(capsys, "train", model)
    for fragment in shown:
        assert fragment in text, fragment
    assert "--beta" not in text and "--likelihood" not in text


def test_train_help_lists_the_models(capsys):
    text = _help(capsys, "train")
    assert "vaelab train MODEL --help" in text
    for name in ("ae", "conv-ae", "dae", "linear-ae", "stacked-ae", "vae"):
        assert f" {name} " in text, name
    assert "--latent-dim" not in text


def test_sample_says_what_it_decodes_and_offers_fitted_codes(runs, npy, tmp_path, capsys):
    import torch

    import vaelab
    from vaelab.viz.grids import grid

    code, out, err = cli(capsys, "sample", runs / "ae", "-n", "16", "-o", tmp_path / "prior.png")
    assert code == 0, err
    assert out.splitlines()[0].startswith("note: an 'ae' has no prior; decoding z ~ N(0, I)")
    code, out, err = cli(capsys, "sample", runs / "ae", "-n", "16", "--codes", "fitted", "-o", tmp_path / "fit.png")
    assert code == 0, err
    assert "fitted to the codes of 800 training images of " + npy in out  # the data recorded in run.json
    model = vaelab.load(runs / "ae")
    gaussian = model.code_gaussian(vaelab.load_dataset(npy, "train").x)
    want = model.sample(16, generator=torch.Generator().manual_seed(0), codes=gaussian)
    from vaelab.viz.grids import save_png

    save_png(grid(want), tmp_path / "want.png")
    assert (tmp_path / "fit.png").read_bytes() == (tmp_path / "want.png").read_bytes()
    assert (tmp_path / "fit.png").read_bytes() != (tmp_path / "prior.png").read_bytes()


def test_fitted_codes_refused_for_a_vae_and_without_data(runs, npy, tmp_path, capsys):
    import vaelab

    vae = tmp_path / "vae"
    vaelab.save(vaelab.build("vae", hidden=[8], latent_dim=2), vae)  # a bare model directory: no run.json
    code, _, err = cli(capsys, "sample", vae, "--codes", "fitted", "-o", tmp_path / "s.png")
    assert_one_line_error(code, err, "--codes fitted is for deterministic autoencoders", "drop --codes fitted")
    bare = tmp_path / "ae"
    vaelab.save(vaelab.load(runs / "ae"), bare)
    code, _, err = cli(capsys, "sample", bare, "--codes", "fitted", "-o", tmp_path / "s.png")
    assert_one_line_error(code, err, "records no data", "pass --data SPEC")
    code, out, err = cli(capsys, "sample", bare, "--codes", "fitted", "--data", npy, "-o", tmp_path / "s.png")
    assert code == 0 and "800 training images" in out, err
