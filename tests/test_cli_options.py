"""Options of ``vaelab train`` generated from the config dataclasses: every flag that existed
when they were a hand-kept table parses to the same setting, per-model help, settings files."""
from __future__ import annotations

import dataclasses

import pytest

import vaelab
from vaelab.cli import main
from vaelab.models import model_class, names

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


class _Called(Exception):
    """Stops ``vaelab train`` at the API call, holding what the command line asked for."""


@pytest.fixture
def parsed(monkeypatch):
    """``parsed(*argv)`` -> (model config, training config) that ``vaelab train`` would train with."""

    def fake_train(model, data, out, model_config=None, config=None, **kwargs):
        raise _Called(model, model_config, config)

    monkeypatch.setattr(vaelab, "train", fake_train)

    def run(*argv):
        with pytest.raises(_Called) as called:
            main(["train", *argv, "--data", "mnist", "--out", "unused-run"])
        model, model_config, config = called.value.args
        cls = model_class(model)
        return cls.Config.from_dict(model_config or {}), config

    return run


def _models_having(key):
    return [n for n in names() if key in {f.name for f in dataclasses.fields(model_class(n).Config)}]


INVALID = {("stacked-ae", "hidden", ())}  # refused by the model's own checks, not by the parser
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
