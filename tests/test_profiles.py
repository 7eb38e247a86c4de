"""Named profiles (``--profile quick|paper``): shipped for every family, read as ``--config``
files are, layered defaults < profile < --config < options, recorded in run.json."""
from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import pytest

from vaelab import profiles
from vaelab.cli import main
from vaelab.errors import VaelabError
from vaelab.models import model_class, names
from vaelab.training import TrainConfig, train_config

tomllib = pytest.importorskip("tomllib")  # profiles are TOML files: Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
EVERY_PROFILE = [(family, name) for family in names() for name in ("quick", "paper")]


def test_every_family_and_the_vq_prior_have_quick_and_paper():
    assert "vq-prior" in profiles.families()  # the prior that train-prior trains
    for family in names():
        assert {"quick", "paper"} <= set(profiles.profile_names(family)), family


@pytest.mark.parametrize("family,name", EVERY_PROFILE)
def test_every_profile_builds_a_valid_model_config_and_train_config(family, name):
    """A stale key, a value out of range or of the wrong type fails here, not in a user's run."""
    cls = model_class(family)
    model_settings, train_settings = profiles.profile_settings(family, name)
    cls.Config.from_dict(model_settings, where=f"{family} {name}")
    config = train_config(cls, train_settings)
    assert config.profile == name
    text = profiles.profile_path(family, name).read_text()
    assert text.startswith("# ") and len(profiles.describe(family, name)) > 20  # a description for --help
    assert "profile" not in tomllib.loads(text)


def test_quick_profiles_are_short_and_paper_profiles_name_their_source():
    for family in names():
        assert train_config(family, profiles.profile_settings(family, "quick")[1]).epochs <= 5, family
        assert "Source" in profiles.profile_path(family, "paper").read_text(), family


def test_the_paper_profile_holds_the_iwae_protocol():
    model_settings, train = profiles.profile_settings("vae", "paper")
    assert model_settings == {"latent_dim": 50, "hidden": [200, 200], "activation": "tanh", "likelihood": "bernoulli",
                              "init": "glorot", "output_bias_from_data": True}
    assert (train["epochs"], train["batch_size"], train["lr_schedule"], train["adam_eps"]) == (3280, 20, "iwae", 1e-4)


def test_a_stale_key_is_refused_as_in_a_config_file(tmp_path, monkeypatch):
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "quick.toml").write_text("# a stale profile\nlatent-dims = 3\n")
    monkeypatch.setattr(profiles, "ROOT", tmp_path)
    with pytest.raises(VaelabError, match=r"unknown setting\(s\) latent-dims \(did you mean latent-dim\?\)"):
        profiles.read_profile("vae", "quick")


def test_pyproject_ships_every_profile():
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data["vaelab.profiles"]
    base = ROOT / "vaelab" / "profiles"
    for path in base.rglob("*.toml"):
        assert any(fnmatch.fnmatch(path.relative_to(base).as_posix(), p) for p in patterns), path


def test_the_profile_sits_over_the_defaults_and_an_option_over_the_profile(parsed):
    model, config = parsed("vae", "--profile", "paper")
    assert (model.latent_dim, model.hidden, model.activation) == (50, (200, 200), "tanh")
    assert (config.epochs, config.batch_size, config.profile) == (3280, 20, "paper")
    assert model.beta == 1.0  # not in the profile: the family default
    model, config = parsed("vae", "--profile", "paper", "--latent-dim", "7", "--epochs", "2")
    assert (model.latent_dim, model.hidden, config.epochs, config.batch_size) == (7, (200, 200), 2, 20)


def test_the_profile_keeps_a_familys_own_training_defaults_it_does_not_set(parsed):
    _, config = parsed("m2", "--profile", "quick")
    assert (config.monitor, config.val_rows, config.labels, config.epochs) == ("error", "last", 100, 3)


def test_a_config_file_sits_between_the_profile_and_the_options(parsed, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("epochs = 4\nlatent-dim = 9\n")
    model, config = parsed("vae", "--profile", "paper", "--config", str(path))
    assert (model.latent_dim, model.hidden, config.epochs, config.batch_size) == (9, (200, 200), 4, 20)
    model, config = parsed("vae", "--profile", "paper", "--config", str(path), "--epochs", "1")
    assert (model.latent_dim, config.epochs) == (9, 1)


def test_a_config_file_may_name_the_profile(parsed, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('profile = "paper"\nepochs = 4\n')
    model, config = parsed("vae", "--config", str(path))
    assert (model.latent_dim, config.epochs, config.profile) == (50, 4, "paper")


def test_an_unknown_profile_is_one_line_naming_the_familys(capsys, tmp_path):
    assert main(["train", "vae", "--data", "digits", "--out", str(tmp_path / "r"), "--profile", "fast"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: model 'vae' has no profile 'fast'; its profiles: paper, quick "
                   "(vaelab profiles vae shows what each sets)"]
    assert not (tmp_path / "r").exists()


def test_train_help_lists_the_familys_profiles(capsys):
    with pytest.raises(SystemExit):
        main(["train", "m2", "--help"])
    out = capsys.readouterr().out
    assert "profiles (--profile NAME; vaelab profiles m2 shows every setting):" in out
    for name in ("quick", "paper"):
        assert f"  {name}  {profiles.describe('m2', name)}" in out


def test_train_prior_help_lists_the_priors_profiles(capsys):
    with pytest.raises(SystemExit):
        main(["train-prior", "--help"])
    assert f"  quick  {profiles.describe('vq-prior', 'quick')}" in capsys.readouterr().out


def test_profiles_command_prints_every_setting_of_each_profile(capsys):
    assert main(["profiles", "vae"]) == 0
    out = capsys.readouterr().out
    paper = out.split("\npaper: ")[1].split("\nquick: ")[0]
    for option in ("--latent-dim 50", "--hidden 200,200", "--activation tanh", "--init glorot",
                   "--output-bias-from-data", "--epochs 3280", "--batch-size 20", "--lr-schedule iwae",
                   "--adam-eps 0.0001", "--binarize dynamic"):
        assert f"  {option}\n" in paper + "\n", option
    assert out.split("\nquick: ")[1].splitlines()[1:] == ["  --epochs 5"]
    assert main(["profiles", "aae-cluster"]) == 0
    assert "  --no-logit-batchnorm" in capsys.readouterr().out


def test_profiles_command_without_a_family_lists_every_family(capsys):
    assert main(["profiles"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[1:]
    assert [row.split()[0] for row in rows] == list(names())
    assert all(row.endswith("paper, quick") for row in rows)


def test_profiles_command_refuses_an_unknown_family(capsys):
    assert main(["profiles", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown model 'nope'")


def test_a_quick_run_records_its_profile_and_resume_keeps_it(tmp_path, capsys):
    """End to end on the bundled digits: --profile quick (1 epoch), run.json names it; --resume
    with the same profile continues, with another is refused in one line."""
    run = tmp_path / "run"
    base = ["train", "vae", "--data", "digits", "--out", str(run), "--threads", "1", "--no-progress"]
    assert main([*base, "--profile", "quick", "--epochs", "1"]) == 0
    record = json.loads((run / "run.json").read_text())
    assert (record["train"]["profile"], record["train"]["epochs"]) == ("quick", 1)
    assert main([*base, "--resume", "--profile", "paper"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --resume continues the recorded run, which was trained with profile 'quick'; "
                   "drop --profile paper or pass --profile quick"]
    assert main([*base, "--resume", "--profile", "quick", "--epochs", "2"]) == 0
    record = json.loads((run / "run.json").read_text())
    assert (record["train"]["profile"], record["train"]["epochs"]) == ("quick", 2)
    assert record["config"]["latent_dim"] == 20  # quick sets no size: the family default


def test_resume_of_a_run_without_a_profile_refuses_one(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"model": "vae", "config": {}, "train": TrainConfig().to_dict()}))
    assert main(["train", "vae", "--data", "digits", "--out", str(run), "--resume", "--profile", "quick"]) == 2
    assert "which was trained without a profile; drop --profile quick" in capsys.readouterr().err


def test_docs_list_the_profiles_as_shipped():
    """docs/models.md's table is the generated one: a changed profile changes the docs with it."""
    assert profiles.markdown_table() in (ROOT / "docs" / "models.md").read_text()


def test_readme_examples_use_no_repo_relative_settings_file():
    """The README's commands run outside a clone: a profile, not benchmarks/*.toml."""
    readme = (ROOT / "README.md").read_text()
    assert "--profile quick" in readme and "--config benchmarks/" not in readme


class _Called(Exception):
    """Stops ``vaelab train-prior`` at the API call, holding what the command line asked for."""


def test_train_prior_takes_the_vq_priors_profile(tmp_path, monkeypatch):
    import vaelab.training.prior as prior

    def fake_train_prior(run, model_config=None, config=None, **kwargs):
        raise _Called(model_config, config)

    monkeypatch.setattr(prior, "train_prior", fake_train_prior)
    with pytest.raises(_Called) as called:
        main(["train-prior", str(tmp_path), "--profile", "quick", "--width", "8"])
    model_config, config = called.value.args
    assert (model_config["layers"], model_config["width"], config.epochs, config.profile) == (5, 8, 1, "quick")
    assert config.lr == 3e-4  # the prior's own training default, not in the profile
