"""Which settings take effect: a config field's ``applies`` metadata names the settings under
which it does (sigma only with the fixed-σ Gaussian likelihood, channels only with the conv
backbone), and the report's settings table shows only those."""
from __future__ import annotations

import dataclasses

import pytest

from vaelab.config import applicable_settings
from vaelab.errors import VaelabError
from vaelab.models import model_class, names
from vaelab.models.ae import AEConfig, DAEConfig
from vaelab.models.vae import VAEConfig
from vaelab.models.vqvae import VQVAEConfig
from vaelab.options import _metadata
from vaelab.training import TrainConfig


def _left_out(config) -> set[str]:
    return set(config.to_dict()) - set(config.applicable())


def test_settings_that_do_not_apply_are_left_out():
    assert _left_out(VAEConfig()) == {"sigma", "channels"}  # Bernoulli likelihood, MLP backbone
    assert _left_out(VAEConfig(likelihood="gaussian", backbone="conv")) == set()
    assert _left_out(VAEConfig(likelihood="gaussian-learned")) == {"sigma", "channels"}  # σ is learned
    assert "noise_level" in _left_out(AEConfig()) and "noise_level" not in _left_out(AEConfig(corruption="gaussian"))
    assert "noise_level" not in _left_out(DAEConfig())  # redeclared without metadata: the rule is inherited
    assert {"decay", "revive_after"} <= _left_out(VQVAEConfig(revive=False))
    assert not {"decay", "revive_after"} & _left_out(VQVAEConfig(ema=True))
    assert {"nonfinite_lr_factor", "nonfinite_max_skips"} <= _left_out(TrainConfig())
    assert not _left_out(TrainConfig(nonfinite="skip")) & {"nonfinite_lr_factor", "nonfinite_max_skips"}


def test_a_record_is_judged_only_on_what_it_holds():
    assert applicable_settings(VAEConfig, {"sigma": 0.1, "likelihood": "bernoulli"}) == {"likelihood": "bernoulli"}
    assert applicable_settings(VAEConfig, {"sigma": 0.1}) == {"sigma": 0.1}  # no likelihood recorded: kept
    assert applicable_settings(VAEConfig, {"unknown": 1, "channels": [8], "backbone": "mlp"}) == \
        {"unknown": 1, "backbone": "mlp"}


CONFIGS = sorted({model_class(n).Config for n in names()} | {TrainConfig}, key=lambda c: c.__name__)


@pytest.mark.parametrize("config_cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_condition_names_a_field_and_values_it_accepts(config_cls):
    for f in dataclasses.fields(config_cls):
        for other, allowed in _metadata(config_cls, f.name).get("applies", {}).items():
            assert other in {g.name for g in dataclasses.fields(config_cls)}, (f.name, other)
            assert isinstance(allowed, tuple) and allowed, (f.name, other)
            for value in allowed:  # each listed value is one the config accepts (a typo would be refused)
                try:
                    config_cls.from_dict({other: value})
                except VaelabError as exc:  # another check of that config may object; not the name or type
                    assert "unknown" not in str(exc) and f"'{other}' must be" not in str(exc), (f.name, value, exc)
