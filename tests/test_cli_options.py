"""Options of ``vaelab train`` generated from the config dataclasses: every flag that existed
when they were a hand-kept table parses to the same setting, per-model help, settings files."""
from __future__ import annotations

import dataclasses

import pytest

import vaelab
from vaelab.cli import main
from vaelab.models import model_class, names
from vaelab.options import options

# flag, the words after it, config field, value it must give (the hand-kept tables' behaviour)
MODEL_FLAGS = [
    ("--latent-dim", ["7"], "latent_dim", 7),
    ("--hidden", ["200,100"], "hidden", (200, 100)),
    ("--hidden", ["none"], "hidden", ()),
    ("--activation", ["tanh"], "activation", "tanh"),
    ("--backbone", ["conv"], "backbone", "conv"),
    ("--channels", ["16,32"], "channels", (16, 32)),
    ("--likelihood", ["gaussian"], "likelihood", "gaussian"),
    ("--sigma", ["0.5"], "sigma", 0.5),
    ("--beta", ["4"], "beta", 4.0),
    ("--kl-warmup", ["10"], "kl_warmup_epochs", 10.0),
    ("--init", ["glorot"], "init", "glorot"),
    ("--loss", ["bernoulli"], "loss", "bernoulli"),
    ("--corruption", ["gaussian"], "corruption", "gaussian"),
    ("--noise-level", ["0.3"], "noise_level", 0.3),
    ("--tied", [], "tied", True),
    ("--no-tied", [], "tied", False),
    ("--center", [], "center", True),
    ("--no-center", [], "center", False),
    ("--pretrain-epochs", ["2"], "pretrain_epochs", 2),
    ("--pretrain-lr", ["0.01"], "pretrain_lr", 0.01),
    ("--pretrain-batch-size", ["64"], "pretrain_batch_size", 64),
]
TRAIN_FLAGS = [
    ("--epochs", ["3"], "epochs", 3),
    ("--batch-size", ["64"], "batch_size", 64),
    ("--lr", ["0.002"], "lr", 0.002),
    ("--lr-schedule", ["cosine"], "lr_schedule", "cosine"),
    ("--adam-eps", ["1e-6"], "adam_eps", 1e-6),
    ("--weight-decay", ["0.01"], "weight_decay", 0.01),
    ("--grad-clip", ["5"], "grad_clip", 5.0),
    ("--seed", ["42"], "seed", 42),
    ("--binarize", ["static"], "binarize", "static"),
    ("--val-size", ["500"], "val_size", 500.0),
    ("--test-fraction", ["0.2"], "test_fraction", 0.2),
    ("--patience", ["3"], "patience", 3),
    ("--threads", ["1"], "threads", 1),
    ("--device", ["cpu"], "device", "cpu"),
    ("--nonfinite", ["skip"], "nonfinite", "skip"),
    ("--nonfinite-lr-factor", ["0.25"], "nonfinite_lr_factor", 0.25),
    ("--nonfinite-max-skips", ["4"], "nonfinite_max_skips", 4),
]


def _models_having(key):
    """The families that offer ``key`` as an option (m2 keeps the VAE's backbone fields but
    offers neither: it is built on the MLP)."""
    return [n for n in names() if key in {o.key for o in options(model_class(n).Config)}]


INVALID = {("stacked-ae", "hidden", ()),  # refused by the model's own checks, not by the parser
           ("dvae", "corruption", "gaussian")}  # gaussian noise on the default Bernoulli likelihood's binary data
MODEL_CASES = [(model, flag, words, key, value) for flag, words, key, value in MODEL_FLAGS
               for model in _models_having(key) if (model, key, value) not in INVALID]


def test_every_old_model_flag_has_a_model():
    assert {flag for _, flag, *_ in MODEL_CASES} == {flag for flag, *_ in MODEL_FLAGS}


@pytest.mark.parametrize("model, flag, words, key, value", MODEL_CASES,
                         ids=[f"{m}{f}{'=' + w[0] if w else ''}" for m, f, w, *_ in MODEL_CASES])
def test_old_model_flags_give_the_same_setting(parsed, model, flag, words, key, value):
    config, _ = parsed(model, flag, *words)
    assert getattr(config, key) == value


@pytest.mark.parametrize("flag, words, key, value", TRAIN_FLAGS, ids=[f for f, *_ in TRAIN_FLAGS])
@pytest.mark.parametrize("model", ["vae", "linear-ae"])
def test_old_training_flags_give_the_same_setting(parsed, model, flag, words, key, value):
    _, config = parsed(model, flag, *words)
    assert getattr(config, key) == value


def test_unset_options_keep_the_model_and_family_defaults(parsed):
    config, train = parsed("linear-ae")
    assert config == model_class("linear-ae").Config()
    assert (train.lr, train.lr_schedule, train.epochs) == (3e-3, "cosine", 20)
    config, train = parsed("vae")
    assert config == model_class("vae").Config() and (train.lr, train.lr_schedule) == (1e-3, "constant")


def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_each_model_help_lists_its_own_options_only(capsys):
    vae = _help(capsys, "train", "vae")
    assert "--beta X" in vae and "--kl-warmup X" in vae and "(default: 20)" in vae
    assert "--pretrain-epochs" not in vae and "--tied" not in vae
    stacked = _help(capsys, "train", "stacked-ae")
    assert "--pretrain-epochs N" in stacked and "(default: 500,250)" in stacked
    assert "--beta" not in stacked and "--kl-warmup" not in stacked
    for text in (vae, stacked):
        assert "--epochs N" in text and "--adam-betas X,X" in text and "--input-shape" not in text


def test_an_option_of_another_model_is_named_in_one_line(capsys):
    code = main(["train", "vae", "--data", "mnist", "--out", "r", "--pretrain-epochs", "2"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err == "error: model 'vae' has no setting 'pretrain_epochs' (--pretrain-epochs is an option of stacked-ae)\n"


def test_an_unknown_option_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "vae", "--data", "mnist", "--out", "r", "--latent-dims", "2"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --latent-dims 2" in capsys.readouterr().err


def test_fields_that_are_not_options_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["train", "vae", "--data", "mnist", "--out", "r", "--input-shape", "1,28,28"])
    assert "unrecognized arguments: --input-shape" in capsys.readouterr().err


@pytest.mark.parametrize("argv, key, value", [
    (["--no-output-bias-from-data"], "output_bias_from_data", False),
    (["--no-output-bias-from-data", "--output-bias-from-data"], "output_bias_from_data", True),
    (["--hidden", "300, 100,"], "hidden", (300, 100)),
    (["--hidden=none"], "hidden", ()),
    (["--channels", "8"], "channels", (8,)),
])
def test_bool_and_tuple_model_options(parsed, argv, key, value):
    config, _ = parsed("vae", *argv)
    assert getattr(config, key) == value


def test_a_pair_option_takes_exactly_two_values(parsed, capsys):
    _, train = parsed("vae", "--adam-betas", "0.5,0.9", "--eval-batch-size", "250")
    assert train.adam_betas == (0.5, 0.9) and train.eval_batch_size == 250
    for bad in ("0.5", "0.5,0.9,0.99", "a,b"):
        with pytest.raises(SystemExit) as exc:
            main(["train", "vae", "--data", "mnist", "--out", "r", "--adam-betas", bad])
        assert exc.value.code == 2
        assert "expected 2 comma-separated values like 0.9,0.9" in capsys.readouterr().err


def test_a_bad_list_names_the_format(capsys):
    with pytest.raises(SystemExit):
        main(["train", "vae", "--data", "mnist", "--out", "r", "--hidden", "200;200"])
    assert "expected comma-separated integers like 200,200, got '200;200'" in capsys.readouterr().err


def test_out_of_range_values_are_one_line_errors(capsys):
    code = main(["train", "vae", "--data", "mnist", "--out", "r", "--adam-betas", "0.9,1.5"])
    err = capsys.readouterr().err
    assert code == 2 and err == "error: --adam-betas must lie in [0, 1), got [0.9, 1.5]\n"


# A family that is not in the package: its options must appear with no edit of the CLI.
@dataclasses.dataclass(frozen=True)
class ToyConfig(vaelab.config.Config):
    input_shape: tuple[int, int, int] = dataclasses.field(default=(1, 28, 28), metadata={"option": False})
    width: int = dataclasses.field(default=3, metadata={"help": "toy width"})
    speed: float = dataclasses.field(default=0.5, metadata={"help": "toy speed", "flag": "--toy-speed"})
    sizes: tuple[int, ...] = dataclasses.field(default=(4, 2), metadata={"help": "toy sizes"})
    span: tuple[float, float] = dataclasses.field(default=(0.0, 1.0), metadata={"help": "toy span"})
    fancy: bool = dataclasses.field(default=False, metadata={"help": "toy switch"})
    mode: str = dataclasses.field(default="plain", metadata={"help": "toy mode", "metavar": "{plain,odd}"})


@dataclasses.dataclass(frozen=True)
class WideToyConfig(ToyConfig):
    width: int = 9  # a new default keeps the base's help


@pytest.fixture
def toy(monkeypatch):
    from vaelab.models import registry
    from vaelab.models.base import Model

    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))

    @registry.register("toy")
    class Toy(Model):
        """A toy family registered by a test."""

        Config = WideToyConfig
        train_defaults = {"epochs": 7}

    return Toy


def test_a_registered_config_gets_its_options_with_no_cli_edit(toy, parsed, capsys):
    text = _help(capsys, "train", "toy")
    for fragment in ("--width N toy width (default: 9)", "--toy-speed X toy speed (default: 0.5)",
                     "--sizes N[,N...] toy sizes (default: 4,2)", "--span X,X toy span (default: 0.0,1.0)",
                     "--fancy, --no-fancy toy switch (default: false)", "--mode {plain,odd} toy mode",
                     "--epochs N training epochs (with --resume: the new total) (default: 7)"):
        assert fragment in text, fragment
    assert "--input-shape" not in text and "--latent-dim" not in text
    assert "toy A toy family registered by a test" in _help(capsys, "train")
    config, train = parsed("toy", "--width", "5", "--toy-speed", "2", "--sizes", "1,2,3", "--span=-1,1",
                           "--fancy", "--mode", "odd")
    assert config == WideToyConfig(width=5, speed=2.0, sizes=(1, 2, 3), span=(-1.0, 1.0), fancy=True, mode="odd")
    assert train.epochs == 7


def test_settings_files_take_flag_and_field_names(toy, parsed, tmp_path):
    import json

    path = tmp_path / "s.json"
    path.write_text(json.dumps({"toy-speed": 3, "toy_speed": 3}))
    code = main(["train", "toy", "--data", "mnist", "--out", "r", "--config", str(path)])
    assert code == 2  # two spellings of one setting
    for key in ("toy-speed", "toy_speed", "speed"):
        path.write_text(json.dumps({key: 3, "sizes": [5], "fancy": True, "batch-size": 10, "lr_schedule": "cosine"}))
        config, train = parsed("toy", "--config", str(path), "--width", "1")
        assert (config.speed, config.sizes, config.fancy, config.width) == (3.0, (5,), True, 1), key
        assert (train.batch_size, train.lr_schedule) == (10, "cosine")


def test_an_unknown_settings_file_key_lists_the_valid_ones(toy, tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text("widht = 2\n")
    code = main(["train", "toy", "--data", "mnist", "--out", "r", "--config", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: --config {path}: unknown setting(s) widht (did you mean width?); valid keys")
    assert "toy-speed/toy_speed (speed)" in err and "width" in err and "batch-size/batch_size" in err
    assert "input" not in err and "latent" not in err


def test_a_field_without_help_is_refused_when_the_parser_is_built():
    from vaelab.options import options

    @dataclasses.dataclass(frozen=True)
    class Bare(vaelab.config.Config):
        depth: int = 2

    with pytest.raises(TypeError, match=r"Bare.depth has no help"):
        options(Bare)


def test_every_registered_config_field_is_an_option_or_marked():
    from vaelab.options import options
    from vaelab.training import TrainConfig

    for config_cls in [TrainConfig] + [model_class(n).Config for n in names()]:
        keys = {o.key for o in options(config_cls)}
        marked = {f.name for f in dataclasses.fields(config_cls) if f.metadata.get("option") is False}
        assert keys | marked == {f.name for f in dataclasses.fields(config_cls)}, config_cls
