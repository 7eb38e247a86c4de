"""The comparison commands on small real subsets: tables, files, reuse of trained models."""
from __future__ import annotations

import json
import math

import pytest

from vaelab import VaelabError
from vaelab.cli import main
from vaelab.compare import codes_2d, denoising, generation, mixtures_vs_vae, pca_vs_autoencoders

SMALL = {"train_size": 400, "test_size": 150, "threads": 1, "progress": False, "epochs": 1}


def test_pca_comparison_table_figure_and_reuse(tmp_path, data_dir):
    out = tmp_path / "pca"
    first = pca_vs_autoencoders(out, data_dir=data_dir, latent_dims=(2, 6), models=("pca", "linear-ae", "ae"), **SMALL)
    assert [r["latent"] for r in first.rows] == [2, 6]
    assert first.rows[1]["pca"] < first.rows[0]["pca"]  # more components, less error
    # PCA's subspace is the least-squares optimum of every linear code of that size: one epoch
    # of the linear AE does not beat it (0.064 against 0.054 and 0.062 against 0.043 measured)
    assert all(r["linear-ae"] > r["pca"] for r in first.rows)
    assert all(0 <= r["max_angle_deg"] <= 90 for r in first.rows)
    assert (out / "mse_vs_latent.png").stat().st_size > 0
    again = pca_vs_autoencoders(out, data_dir=data_dir, latent_dims=(2, 6), models=("pca", "linear-ae", "ae"), **SMALL)
    assert again.rows == first.rows  # the trained models were reloaded, not retrained


def test_pca_comparison_refuses_unknown_models_and_sizes(tmp_path, data_dir):
    with pytest.raises(VaelabError, match="choose from pca, linear-ae, ae, conv-ae"):
        pca_vs_autoencoders(tmp_path, data_dir=data_dir, models=("pca", "vq"), **SMALL)
    with pytest.raises(VaelabError, match="exceeds the 784 pixels"):
        pca_vs_autoencoders(tmp_path, data_dir=data_dir, latent_dims=(900,), models=("pca",), **SMALL)


def test_codes_2d_maps_with_knn_scores(tmp_path, data_dir):
    result = codes_2d(tmp_path, data_dir=data_dir, models=("ae",), latent_dim=3, **SMALL)
    assert [r["code_dim"] for r in result.rows] == [2, 3]
    assert result.rows[0]["knn_accuracy"] > 0.2  # PCA's 2-D map already separates some digits
    assert result.rows[1]["knn_accuracy"] > 0.25  # the AE's 3-D codes too (0.42 measured; chance: 0.1)
    assert (tmp_path / "codes_2d.png").stat().st_size > 0
    with pytest.raises(VaelabError, match="choose one of pca, tsne"):
        codes_2d(tmp_path, data_dir=data_dir, projection="umap", **SMALL)


def test_denoising_psnr_per_corruption(tmp_path, data_dir):
    levels = {"gaussian": (0.2, 0.5), "masking": (0.5,), "salt-pepper": (0.2,)}
    result = denoising(tmp_path, data_dir=data_dir, levels=levels, **SMALL)
    assert [(r["corruption"], r["level"]) for r in result.rows] == [
        ("gaussian", 0.2), ("gaussian", 0.5), ("masking", 0.5), ("salt-pepper", 0.2)]
    gauss = [r["psnr_noisy"] for r in result.rows[:2]]
    assert gauss[0] > gauss[1]  # more noise, lower PSNR
    assert all(math.isfinite(r[k]) for r in result.rows for k in ("psnr_noisy", "psnr_dae", "psnr_ae"))
    assert sorted(p.name for p in tmp_path.glob("denoising_*.png")) == [
        "denoising_gaussian.png", "denoising_masking.png", "denoising_salt-pepper.png"]


def test_generation_scores_every_sample_set(tmp_path, data_dir):
    result = generation(tmp_path, data_dir=data_dir, latent_dim=4, samples=100,
                        **{k: v for k, v in SMALL.items() if k != "test_size"})
    assert len(result.rows) == 4
    for row in result.rows:  # the score is what the notes say it is
        assert row["score"] == pytest.approx(math.exp(row["marginal_entropy"] - row["mean_entropy"]))
    real = result.rows[-1]
    assert real["samples"] == "real test images"
    assert result.settings["classifier_accuracy"] > 0.5  # chance: 0.1
    assert real["mean_max_prob"] > 0.3 and real["score"] > 1.5  # real digits read as digits (chance: 0.1 and 1)
    assert all(real["score"] > row["score"] for row in result.rows[:-1])  # clearer than one epoch's samples
    assert (tmp_path / "samples_ae_vs_vae.png").stat().st_size > 0
    assert (tmp_path / "classifier" / "baseline.json").exists()


def test_mixtures_against_vaes(tmp_path, data_dir):
    result = mixtures_vs_vae(tmp_path, data_dir=data_dir, components=(2, 4), em_iters=3, vae_epochs=1,
                             nll_samples=8, frey_components=(1,), frey_vae_epochs=1, **{
                                 k: v for k, v in SMALL.items() if k != "epochs"})
    mnist = [r for r in result.rows if r["data"] == "binarized MNIST"]
    frey = [r for r in result.rows if r["data"] == "Frey Face"]
    assert len(mnist) == 3 and len(frey) == 2
    assert all(-784 * math.log(2) * 2 < r["test_log_likelihood"] < 0 for r in mnist)
    assert all(math.isfinite(r["test_log_likelihood"]) for r in frey)


def test_compare_cli_writes_table_and_json(tmp_path, data_dir, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "pca", "--out", str(out), "--data-dir", str(data_dir), "--latent-dims", "2,4",
                 "--models", "pca", "--train-size", "300", "--test-size", "100", "--threads", "1", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| latent | pca |" in printed
    saved = json.loads((out / "results.json").read_text())
    assert [r["latent"] for r in saved["rows"]] == [2, 4]
    assert (out / "table.md").read_text().startswith("### Test reconstruction MSE")


def test_compare_cli_bad_input_is_one_line(tmp_path, data_dir, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["compare", "pca", "--out", str(target), "--data-dir", str(data_dir), "--models", "pca"]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["compare", "denoise", "--out", str(tmp_path / "d"), "--data-dir", str(data_dir),
                 "--corruptions", "gaussian", "--levels", "masking=0.5"]) == 2
    assert "not in --corruptions" in capsys.readouterr().err


@pytest.fixture(scope="module")
def npz(synthetic_small, tmp_path_factory):
    """600 synthetic digits with labels as an .npz (x uint8 N×28×28, y): user data with labels."""
    import numpy as np

    path = tmp_path_factory.mktemp("npz") / "digits600.npz"
    x = (synthetic_small.train.x[:600, 0].numpy() * 255).round().astype(np.uint8)
    np.savez(path, x=x, y=synthetic_small.train.y[:600].numpy())
    return f"npy:{path}"


@pytest.fixture(scope="module")
def npz_run(npz, tmp_path_factory):
    """A tiny 2-D VAE trained on the .npz data (its run.json records that spec)."""
    out = tmp_path_factory.mktemp("npz-run") / "run"
    assert main(["train", "vae", "--data", npz, "--out", str(out), "--hidden", "16", "--latent-dim", "2",
                 "--epochs", "1", "--val-size", "0", "--threads", "1", "--no-progress"]) == 0
    return out


def _one_line_error(code, err, *fragments):
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_compare_takes_data_and_says_which(tmp_path, npz, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "pca", "--data", npz, "--out", str(out), "--latent-dims", "2", "--models", "pca",
                 "--threads", "1", "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith(f"data: {npz}\n")
    # no test split of its own: measured on a seeded held-out 10 %, never on the training images
    assert "warning: " in printed.err and "60 held-out images" in printed.err, printed.err
    saved = json.loads((out / "results.json").read_text())
    assert saved["data"] == npz and saved["settings"]["data"] == npz
    assert saved["settings"]["n_train"] == 540 and saved["settings"]["n_test"] == 60


def test_codes_2d_refuses_a_run_trained_on_other_data(tmp_path, npz, npz_run, data_dir, capsys):
    args = ["compare", "codes-2d", "--out", str(tmp_path / "c"), "--data-dir", str(data_dir), "--run", str(npz_run),
            "--test-size", "100", "--train-size", "200", "--threads", "1", "--no-progress"]
    assert main(args) == 2  # default --data mnist: the run's own data differs
    _one_line_error(2, capsys.readouterr().err, f"was trained on {npz}, not mnist", f"pass --data {npz}")
    assert not (tmp_path / "c" / "results.json").exists()
    assert main([*args, "--data", npz]) == 0
    saved = json.loads((tmp_path / "c" / "results.json").read_text())
    assert saved["data"] == npz and [r["code_dim"] for r in saved["rows"]] == [2, 2]


def test_compare_refuses_a_run_of_another_image_shape(tmp_path, data_dir):
    digits = tmp_path / "digits-run"
    import vaelab

    vaelab.train("ae", "digits", digits, model_config={"hidden": [8], "latent_dim": 2},
                 config={"epochs": 1, "threads": 1, "val_size": 0}, progress=False)
    with pytest.raises(VaelabError, match=r"takes images of shape \[1, 8, 8\], but mnist has \[1, 28, 28\]"):
        codes_2d(tmp_path / "c", data_dir=data_dir, runs=[digits], **{k: v for k, v in SMALL.items() if k != "epochs"})
    with pytest.raises(VaelabError, match="--vae-run .* takes images of shape"):
        mixtures_vs_vae(tmp_path / "m", data_dir=data_dir, components=(2,), em_iters=1, vae_run=str(digits),
                        frey=False, **{k: v for k, v in SMALL.items() if k != "epochs"})


def test_mixtures_takes_no_data(tmp_path, npz, capsys):
    code = main(["compare", "mixtures", "--data", npz, "--out", str(tmp_path / "m")])
    _one_line_error(code, capsys.readouterr().err, "compare mixtures is defined on binarized MNIST and Frey Face",
                    "takes no --data")
