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
    assert all(0 <= r["knn_accuracy"] <= 1 for r in result.rows)
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
    for row in result.rows:
        assert 0.1 <= row["mean_max_prob"] <= 1
        assert 0 <= row["mean_entropy"] <= math.log(10) + 1e-9
        assert 1 - 1e-9 <= row["score"] <= 10 + 1e-9
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
