"""What users type and read: no abbreviated options, settings-file keys spelled as the
options, a package description that names only what exists, counts in the singular, and
``--resume`` re-run on a finished run or where no run was written."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from test_cli import TINY, assert_one_line_error, cli, npy  # noqa: F401  (npy is a fixture)
from vaelab.cli import build_parser


def _parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_no_parser_accepts_abbreviations():
    parsers = list(_parsers(build_parser()))
    assert len(parsers) >= 11  # vaelab, its commands and every comparison
    assert all(not p.allow_abbrev for p in parsers), [p.prog for p in parsers if p.allow_abbrev]


@pytest.mark.parametrize("argv", [
    ["train", "vae", "--data", "mnist", "--out", "r", "--epoch", "1"],
    ["compare", "pca", "--out", "r", "--epoch", "1"],
    ["compare", "mixtures", "--out", "r", "--test", "5"],
])
def test_a_prefix_of_an_option_is_refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert f"unrecognized arguments: {argv[-2]}" in capsys.readouterr().err


def _settings(tmp_path, obj):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(obj))
    return path


def test_settings_file_keys_are_the_option_names(npy, tmp_path, capsys):  # noqa: F811
    settings = {"kl-warmup": 2, "latent_dim": 3, "hidden": [16], "batch-size": 50, "epochs": 1, "val_size": 500}
    out = tmp_path / "run"
    code, _, err = cli(capsys, "train", "vae", "--data", npy, "--out", out, "--config", _settings(tmp_path, settings),
                       "--threads", "1", "--no-progress")
    assert code == 0, err
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["kl_warmup_epochs"] == 2 and record["config"]["latent_dim"] == 3
    assert record["train"]["batch_size"] == 50 and record["train"]["val_size"] == 500


@pytest.mark.parametrize("key", ["kl_warmup", "kl-warmup", "kl_warmup_epochs"])
def test_every_spelling_of_a_key_reaches_its_setting(key, tmp_path):
    from vaelab.options import file_settings as _file_settings
    from vaelab.models.vae import VAEConfig
    from vaelab.options import options

    opts = [o for o in options(VAEConfig) if o.key in ("kl_warmup_epochs", "latent_dim")]
    assert _file_settings(str(_settings(tmp_path, {key: 2, "latent-dim": 3})), opts) == \
        {"kl_warmup_epochs": 2, "latent_dim": 3}


@pytest.mark.parametrize("obj, fragments", [
    ({"latent_dims": 3}, ["unknown setting(s) latent_dims (did you mean latent_dim?)", "latent-dim/latent_dim",
                          "kl-warmup/kl_warmup (kl_warmup_epochs)", "batch-size/batch_size"]),
    ({"kl_warmup": 1, "kl_warmup_epochs": 2}, ["'kl_warmup' and 'kl_warmup_epochs' both set --kl-warmup"]),
])
def test_bad_settings_file_keys_give_one_line(obj, fragments, npy, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    code, _, err = cli(capsys, "train", "vae", "--data", npy, "--out", out, "--config", _settings(tmp_path, obj),
                       *TINY)
    assert_one_line_error(code, err, *fragments)
    assert not out.exists()


def test_resume_of_a_finished_run_says_how_to_extend_it(npy, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    train = ["train", "vae", "--data", npy, "--out", out, "--epochs", "1", "--val-size", "500", *TINY]
    code, stdout, err = cli(capsys, *train)
    assert code == 0, err
    assert stdout.startswith("trained 1 epoch;"), stdout
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, stdout, err = cli(capsys, *train, "--resume")
    assert code == 0, err
    assert stdout.count("\n") == 1 and stdout.startswith(f"nothing left to do: the run in {out} finished 1 epoch;")
    assert "--resume --epochs N with N larger than 1" in stdout and "trained" not in stdout
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing rewritten


def test_resume_where_a_kill_left_no_run_starts_one(npy, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").touch()  # all that a kill before run.json leaves
    train = ["train", "vae", "--data", npy, "--out", out, "--epochs", "1", "--val-size", "500", "--resume", *TINY]
    code, stdout, err = cli(capsys, *train)
    assert code == 0, err
    assert f"--resume: no run in {out} yet; starting a new one" in err
    assert stdout.startswith("trained 1 epoch;") and (out / "model.safetensors").is_file()


# families the lectures name, as the package description would spell them -> registry name
FAMILIES = {"VAE": "vae", "CVAE": "cvae", "M1": "m1", "M2": "m2", "AAE": "aae", "VQ-VAE": "vqvae",
            "denoising": "dae", "stacked": "stacked-ae", "linear": "linear-ae", "convolutional": "conv-ae"}


def test_the_package_description_names_only_models_this_release_has():
    import re

    from vaelab.models import names

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    description = pyproject["project"]["description"]
    named = {family for family in FAMILIES if re.search(rf"(?<![\w-]){re.escape(family)}(?![\w-])", description)}
    assert named, description
    assert all(FAMILIES[family] in names() for family in named), sorted(f for f in named if FAMILIES[f] not in names())


def test_counts_agree_with_their_nouns():
    from vaelab.words import count

    assert [count(n, "epoch") for n in (0, 1, 2)] == ["0 epochs", "1 epoch", "2 epochs"]
    assert count(1, "full-covariance component") == "1 full-covariance component"


def test_a_parser_message_with_a_newline_stays_on_one_line(tmp_path):
    from vaelab.errors import VaelabError
    from vaelab.files import read_safetensors

    header = b'{"0": {"dtype": "\\n", "shape": [], "data_offsets": [0, 0]}}'  # the JSON string "\n"
    path = tmp_path / "w.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(VaelabError) as exc:
        read_safetensors(path)
    assert "not a valid safetensors file" in str(exc.value) and "\n" not in str(exc.value)
