"""The ``vaelab`` command: every command end to end (on real MNIST where the numbers are about
MNIST, on synthetic user data elsewhere), settings files, and errors as one ``error:`` line
with exit status 2 (never a traceback)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_digits
from vaelab.cli import main

TINY = ["--hidden", "32", "--latent-dim", "4", "--threads", "1", "--no-progress"]


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    assert err.startswith("error: "), err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def assert_png(path, size=None):
    with Image.open(path) as img:
        img.verify()
        assert img.format == "PNG"
    if size is not None:
        with Image.open(path) as img:
            assert img.size == size


@pytest.fixture(scope="module")
def npy(tmp_path_factory):
    """800 synthetic digits as a uint8 N×28×28 .npy file without labels (exercises npy: input)."""
    path = tmp_path_factory.mktemp("npy") / "digits800.npy"
    np.save(path, (synthetic_digits(800, 3).x[:, 0].numpy() * 255).round().astype(np.uint8))
    return f"npy:{path}"


@pytest.fixture(scope="module")
def mnist_run(data_dir, tmp_path_factory):
    """One epoch of a tiny VAE on the full MNIST training set, through the CLI."""
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(["train", "vae", "--data", "mnist", "--data-dir", str(data_dir), "--out", str(out),
                 "--epochs", "1", "--val-size", "500", *TINY])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def synthetic_run(synthetic_npy, tmp_path_factory):
    """One epoch of a tiny VAE on the synthetic user data (200 test images), through the CLI."""
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(["train", "vae", "--data", synthetic_npy, "--out", str(out), "--epochs", "1", "--val-size", "100",
                 *TINY])
    assert code == 0
    return out


def test_train_writes_a_run(mnist_run, capsys):
    record = json.loads((mnist_run / "run.json").read_text())
    assert record["config"]["hidden"] == [32] and record["config"]["latent_dim"] == 4
    assert record["train"]["epochs"] == 1 and record["train"]["val_size"] == 500
    assert record["data"]["n_train"] == 59500 and record["data"]["n_val"] == 500
    lines = (mnist_run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["val"]["loss"] < 250
    for name in ("model.safetensors", "config.json", "samples.png", "reconstructions.png"):
        assert (mnist_run / name).is_file()


def test_eval_json(mnist_run, data_dir, capsys):
    code, out, err = cli(capsys, "eval", mnist_run, "--data", "mnist", "--data-dir", data_dir, "--split", "test",
                         "--nll-samples", "10", "--limit", "200", "--json", "--threads", "1")
    assert code == 0, err
    result = json.loads(out)
    for key in ("elbo", "nll", "recon", "kl", "active_units", "n", "k"):
        assert key in result, key
    assert result["n"] == 200 and result["k"] == 10
    assert result["binarize"] == "dynamic, drawn once (seed 123)"  # auto follows the run, drawn once
    assert result["elbo"] == pytest.approx(-(result["recon"] + result["kl"]))
    assert 50 < result["nll"] < 250 and result["nll"] < -result["elbo"] + 1.0
    # a 4-D VAE uses every unit after one epoch on MNIST (activities 1.6 to 2.5 measured)
    assert result["active_units"] == 4 and min(result["unit_activity"]) > 0.5
    # the table form prints the same numbers
    code, out, _ = cli(capsys, "eval", mnist_run, "--data", "mnist", "--data-dir", data_dir, "--limit", "200",
                       "--threads", "1")
    assert code == 0 and "elbo" in out and f"{result['elbo']:.4f}" in out


def test_sample_and_reconstruct(synthetic_run, synthetic_npy, tmp_path, capsys):
    png = tmp_path / "x.png"
    code, out, err = cli(capsys, "sample", synthetic_run, "-n", "16", "-o", png)
    assert code == 0, err
    assert str(png) in out
    assert_png(png, size=(2 * (4 * 30 + 2),) * 2)  # 4×4 grid of 28-pixel images, 2-pixel padding, 2× scale
    again = tmp_path / "y.png"
    cli(capsys, "sample", synthetic_run, "-n", "16", "-o", again)
    assert png.read_bytes() == again.read_bytes()  # same seed, same picture
    rec = tmp_path / "rec.png"
    code, out, err = cli(capsys, "reconstruct", synthetic_run, "--data", synthetic_npy, "-n", "16", "-o", rec)
    assert code == 0, err
    assert_png(rec, size=(2 * (8 * 30 + 2), 2 * (4 * 30 + 2)))  # 2 rows of 8 inputs, each above its reconstructions


def test_resume_continues_a_run(npy, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = cli(capsys, "train", "vae", "--data", npy, "--out", out, "--epochs", "1", "--val-size", "200", *TINY)
    assert code == 0, err
    code, stdout, err = cli(capsys, "train", "vae", "--data", npy, "--out", out, "--resume", "--epochs", "2",
                            "--no-progress")
    assert code == 0, err
    assert "trained 2 epochs" in stdout
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    assert lines[1]["step"] == 2 * lines[0]["step"]
    # changing the model on resume is refused, with the option named
    code, _, err = cli(capsys, "train", "vae", "--data", npy, "--out", out, "--resume", "--epochs", "3",
                       "--latent-dim", "8", "--no-progress")
    assert_one_line_error(code, err, "--latent-dim differs")
    code, _, err = cli(capsys, "train", "vae", "--data", npy, "--out", out, "--resume", "--epochs", "3",
                       "--lr", "0.1", "--no-progress")
    assert_one_line_error(code, err, "--lr differs", "only --epochs, --threads, --device, --tensorboard, --curve-points may change")


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_config_file_and_command_line_override(npy, tmp_path, capsys, suffix):
    settings = {"latent_dim": 3, "hidden": [16], "epochs": 1, "lr": 0.002, "batch_size": 50, "beta": 2.0}
    path = tmp_path / f"settings{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(settings))
    else:
        path.write_text("latent_dim = 3\nhidden = [16]\nepochs = 1\nlr = 0.002\nbatch_size = 50\nbeta = 2.0\n")
    out = tmp_path / "run"
    code, _, err = cli(capsys, "train", "vae", "--data", npy, "--out", out, "--config", path,
                       "--latent-dim", "5", "--val-size", "200", "--threads", "1", "--no-progress")
    assert code == 0, err
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["latent_dim"] == 5  # the command line wins
    assert record["config"]["hidden"] == [16] and record["config"]["beta"] == 2.0  # from the file
    assert record["train"]["lr"] == 0.002 and record["train"]["batch_size"] == 50
    assert record["train"]["epochs"] == 1


@pytest.mark.parametrize("case", [
    "unknown model", "negative latent-dim", "unknown likelihood", "negative beta", "resume a damaged run",
    "eval missing directory", "path as dataset name", "unknown config key", "config file missing",
    "sample missing directory", "bad activation",
])
def test_bad_input_gives_one_error_line(case, npy, synthetic_npy, tmp_path, capsys):
    out = tmp_path / "run"
    train = ["train", "vae", "--data", npy, "--out", out, "--epochs", "1", *TINY]
    args, fragments = {
        "unknown model": (["train", "nope", "--data", "mnist", "--out", out], ["unknown model 'nope'", "vae"]),
        "negative latent-dim": (train + ["--latent-dim", "-1"], ["--latent-dim must be positive, got -1"]),
        "unknown likelihood": (train + ["--likelihood", "poisson"], ["unknown likelihood 'poisson'", "bernoulli"]),
        "negative beta": (train + ["--beta", "-1"], ["beta must be >= 0"]),
        "bad activation": (train + ["--activation", "swish"], ["unknown activation 'swish'", "relu"]),
        "resume a damaged run": (train + ["--resume"], ["--resume", "holds checkpoints/last.safetensors but no run.json", "another --out"]),
        "eval missing directory": (["eval", tmp_path / "missing", "--data", synthetic_npy],
                                   ["model directory not found"]),
        "sample missing directory": (["sample", tmp_path / "missing"], ["model directory not found"]),
        "path as dataset name": (["train", "vae", "--data", "../../x", "--out", out],
                                 ["'../../x' is not a dataset name", "npy:"]),
        "unknown config key": (train + ["--config", _write(tmp_path / "c.json", {"latent_dims": 3})],
                               ["unknown setting(s) latent_dims", "latent_dim"]),
        "config file missing": (train + ["--config", tmp_path / "none.json"], ["not found"]),
    }[case]
    if case == "resume a damaged run":
        (out / "checkpoints").mkdir(parents=True)
        (out / "checkpoints" / "last.safetensors").write_bytes(b"x")
    code, stdout, err = cli(capsys, *args)
    assert_one_line_error(code, err, *fragments)
    if args[0] == "train":
        assert not (out / "run.json").exists()  # nothing half-written


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return path


def test_existing_run_is_not_overwritten(synthetic_run, synthetic_npy, capsys):
    before = (synthetic_run / "model.safetensors").read_bytes()
    code, _, err = cli(capsys, "train", "vae", "--data", synthetic_npy, "--out", synthetic_run, "--epochs", "1", *TINY)
    assert_one_line_error(code, err, "already holds a run", "--resume")
    assert (synthetic_run / "model.safetensors").read_bytes() == before


def test_demo(tmp_path, capsys, monkeypatch):
    import torch

    # the demo trains with threads=0 (all cores); one thread keeps it fast when the 2 cores are shared
    monkeypatch.setattr("vaelab.threads.set_threads", lambda threads: torch.set_num_threads(1))
    out = tmp_path / "demo"
    code, stdout, err = cli(capsys, "demo", "--out", out, "--epochs", "2")
    assert code == 0, err
    assert "NLL (500 importance samples)" in stdout
    for name in ("samples.png", "reconstructions.png", "model.safetensors", "metrics.jsonl", "run.json"):
        assert (out / name).is_file(), name
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_module_help_runs_in_a_subprocess():
    proc = subprocess.run([sys.executable, "-m", "vaelab.cli", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    for command in ("train", "eval", "sample", "reconstruct", "demo"):
        assert command in proc.stdout


@pytest.mark.skipif(shutil.which("vaelab") is None, reason="the vaelab console script is not installed")
def test_console_script_error_exit_status(tmp_path):
    proc = subprocess.run(["vaelab", "train", "nope", "--data", "mnist", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown model 'nope'") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_negative_nll_samples_is_refused(capsys, synthetic_run, synthetic_npy):
    code, _, err = cli(capsys, "eval", synthetic_run, "--data", synthetic_npy, "--nll-samples", "-5", "--limit", "10")
    assert_one_line_error(code, err, "--nll-samples must be >= 0")


def test_eval_reports_nll_progress_on_stderr(synthetic_run, synthetic_npy, capsys):
    args = ["eval", synthetic_run, "--data", synthetic_npy, "--nll-samples", "20", "--limit", "100", "--json",
            "--threads", "1"]
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    lines = err.splitlines()
    assert lines and lines[-1].startswith("log-likelihood (k = 20): 100/100 images (100%)"), lines
    code, quiet_out, quiet_err = cli(capsys, *args, "--no-progress")
    assert code == 0 and quiet_err == ""
    assert json.loads(quiet_out)["nll"] == json.loads(out)["nll"]


def test_encode_writes_posterior_means_logvars_and_labels(synthetic_run, synthetic_npy, tmp_path, capsys):
    import torch

    import vaelab
    from vaelab.data import binarize_static

    path = tmp_path / "codes.npz"
    code, out, err = cli(capsys, "encode", synthetic_run, "--data", synthetic_npy, "--split", "test",
                         "-o", path, "--batch-size", "77", "--device", "cpu")
    assert code == 0, err
    assert str(path) in out and "mean [200, 4]" in out
    with np.load(path, allow_pickle=False) as saved:
        assert sorted(saved.files) == ["logvar", "mean", "y"]
        mean, logvar, y = saved["mean"], saved["logvar"], saved["y"]
    test = vaelab.load_dataset(synthetic_npy, "test")
    assert mean.shape == logvar.shape == (200, 4) and mean.dtype == np.float32
    np.testing.assert_array_equal(y, test.y.numpy())
    model = vaelab.load(synthetic_run)
    with torch.no_grad():  # the run trained on binarized images: encoded as evaluate() binarizes them
        q = model.encode(binarize_static(test.x[:50], 123))
    np.testing.assert_allclose(mean[:50], q.mean.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.exp(logvar[:50]), q.variance.numpy(), rtol=1e-4, atol=1e-7)


def test_encode_batches_without_gradients(synthetic_vae, synthetic_small):
    import torch

    import vaelab

    x = synthetic_small.test.x[:60]
    small, large = vaelab.encode_images(synthetic_vae, x, batch_size=7), vaelab.encode_images(synthetic_vae, x)
    assert set(small) == {"mean", "logvar"} and not small["mean"].requires_grad
    torch.testing.assert_close(small["mean"], large["mean"], rtol=0, atol=1e-6)
    assert all(p.grad is None for p in synthetic_vae.parameters())


def test_encode_bad_input_is_one_line(synthetic_run, synthetic_npy, tmp_path, capsys):
    code, _, err = cli(capsys, "encode", synthetic_run, "--data", synthetic_npy, "-o", tmp_path / "c.npy")
    assert_one_line_error(code, err, "codes are written as one .npz", "ending in .npz")
    code, _, err = cli(capsys, "encode", synthetic_run, "--data", "digits", "-o", tmp_path / "c.npz")
    assert_one_line_error(code, err, "digits images have shape [1, 8, 8]", "expects [1, 28, 28]")
    assert not (tmp_path / "c.npz").exists()


def test_reconstruct_chosen_or_random_images(synthetic_run, synthetic_npy, tmp_path, capsys):
    import vaelab
    from vaelab.data import binarize_static
    from vaelab.viz.grids import save_reconstructions

    base = ["reconstruct", synthetic_run, "--data", synthetic_npy]
    code, _, err = cli(capsys, *base, "--indices", "3,17,42", "-o", tmp_path / "i.png")
    assert code == 0, err
    assert_png(tmp_path / "i.png", size=(2 * (3 * 30 + 2), 2 * (2 * 30 + 2)))  # the three inputs above their reconstructions
    test = vaelab.load_dataset(synthetic_npy, "test")
    save_reconstructions(vaelab.load(synthetic_run), binarize_static(test.x[[3, 17, 42]], 123), tmp_path / "want.png")
    assert (tmp_path / "i.png").read_bytes() == (tmp_path / "want.png").read_bytes()
    code, _, err = cli(capsys, *base, "--indices", ",".join(map(str, range(10))), "-o", tmp_path / "ten.png")
    assert code == 0, err
    assert_png(tmp_path / "ten.png", size=(2 * (8 * 30 + 2), 2 * (4 * 30 + 2)))  # all ten: a second, padded row
    pictures = {}
    for name, extra in {"a": ["--seed", "1"], "b": ["--seed", "1"], "c": ["--seed", "2"], "first": []}.items():
        code, _, err = cli(capsys, *base, "-n", "8", *extra, "-o", tmp_path / f"{name}.png")
        assert code == 0, err
        pictures[name] = (tmp_path / f"{name}.png").read_bytes()
    assert pictures["a"] == pictures["b"] and len({pictures["a"], pictures["c"], pictures["first"]}) == 3


@pytest.mark.parametrize("extra, fragments", [
    (["--indices", "5,200"], ["--indices 200", "has 200 images", "from 0 to 199"]),
    (["--indices", "1,2", "-n", "4"], ["--indices names the images itself", "without -n and --seed"]),
    (["-n", "0"], ["-n must be at least 1"]),
])
def test_reconstruct_bad_choice_is_one_line(extra, fragments, synthetic_run, synthetic_npy, tmp_path, capsys):
    code, _, err = cli(capsys, "reconstruct", synthetic_run, "--data", synthetic_npy, *extra,
                       "-o", tmp_path / "r.png")
    assert_one_line_error(code, err, *fragments)
