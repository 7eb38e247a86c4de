"""Saving and loading: config.json + model.safetensors, strict checks, never unpickling."""
from __future__ import annotations

import json
import os
import pickle
import stat

import pytest
import torch

import vaelab
from vaelab.errors import VaelabError


def _model(**settings):
    torch.manual_seed(settings.pop("seed", 0))
    return vaelab.build("vae", **{"hidden": [32], "latent_dim": 4, **settings})


def _x(n=8, shape=(1, 28, 28)):
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.rand(n, *shape, generator=g), generator=g)


@pytest.mark.parametrize("settings", [
    {},
    {"likelihood": "gaussian-learned", "activation": "tanh", "hidden": [16, 8]},
    {"backbone": "conv", "channels": [4, 8], "hidden": [], "input_shape": [1, 13, 7], "beta": 3.0},
])
def test_save_load_round_trip_bit_identical(tmp_path, settings):
    model = _model(**settings)
    with torch.no_grad():  # make sure the saved weights are not just the initial ones
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    vaelab.save(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = vaelab.load(tmp_path / "m")
    assert type(loaded) is type(model)
    assert loaded.config == model.config
    assert not loaded.training  # loaded for inference
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    x = _x(4, model.input_shape)
    assert torch.equal(model.reconstruct(x), loaded.reconstruct(x))
    torch.manual_seed(3)
    a = model.loss(x)
    torch.manual_seed(3)
    b = loaded.loss(x)
    assert torch.equal(a.total, b.total)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(model.sample(5, generator=g1), loaded.sample(5, generator=g2))
    record = json.loads((tmp_path / "m" / "config.json").read_text())
    assert record["model"] == "vae" and record["format_version"] == 1
    assert record["config"]["latent_dim"] == 4


def test_saved_files_are_readable_like_normal_files(tmp_path):
    """Atomic writes go through a temporary file; the result must not be private (0600)."""
    vaelab.save(_model(), tmp_path / "m")
    (tmp_path / "plain").write_bytes(b"x")
    expected = stat.S_IMODE(os.stat(tmp_path / "plain").st_mode)
    for name in ("config.json", "model.safetensors"):
        assert stat.S_IMODE(os.stat(tmp_path / "m" / name).st_mode) == expected, name
    assert not [p for p in (tmp_path / "m").iterdir() if p.name.endswith(".tmp")]


def test_save_overwrites_previous_model(tmp_path):
    vaelab.save(_model(latent_dim=4), tmp_path / "m")
    vaelab.save(_model(latent_dim=6), tmp_path / "m")
    assert vaelab.load(tmp_path / "m").config.latent_dim == 6


def test_missing_directory(tmp_path):
    with pytest.raises(VaelabError, match="model directory not found"):
        vaelab.load(tmp_path / "nowhere")


def test_missing_config(tmp_path):
    vaelab.save(_model(), tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(VaelabError, match=r"no config.json in .*not a vaelab model directory") as err:
        vaelab.load(tmp_path)
    assert "pickle" not in str(err.value)


def test_missing_weights(tmp_path):
    vaelab.save(_model(), tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(VaelabError, match=r"weights file not found: .*model.safetensors"):
        vaelab.load(tmp_path)


def test_weights_from_another_config_do_not_match(tmp_path):
    vaelab.save(_model(latent_dim=4), tmp_path / "a")
    vaelab.save(_model(latent_dim=8), tmp_path / "b")
    (tmp_path / "b" / "model.safetensors").write_bytes((tmp_path / "a" / "model.safetensors").read_bytes())
    with pytest.raises(VaelabError, match=r"do not match its config.json .*shape \[8, 32\], config needs \[16, 32\]"):
        vaelab.load(tmp_path / "b")


def test_weights_with_missing_and_extra_tensors(tmp_path):
    from safetensors.torch import save_file

    model = _model()
    vaelab.save(model, tmp_path)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    dropped = sorted(state)[0]
    state.pop(dropped)
    state["surprise.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(VaelabError, match=rf"do not match.*missing {dropped}.*unexpected surprise.weight"):
        vaelab.load(tmp_path)


def _write_config(directory, record):
    (directory / "config.json").write_text(json.dumps(record))


@pytest.mark.parametrize("change, message", [
    (lambda r: r["config"].update(latent_dims=4), r"unknown setting\(s\) latent_dims; valid: .*latent_dim"),
    (lambda r: r["config"].update(latent_dim="4"), r"'latent_dim' must be an integer, got '4'"),
    (lambda r: r["config"].update(hidden=32), r"'hidden' must be a list"),
    (lambda r: r["config"].update(beta=None), r"'beta' must be a number"),
    (lambda r: r.update(model="vea"), r"unknown model 'vea'; choose one of: .*\bvae\b"),
    (lambda r: r.update(model=3), r"'model' must name a registered model"),
    (lambda r: r.update(format_version=99), r"unsupported format_version 99"),
    (lambda r: r.update(extra=1), r"unknown key\(s\) extra; valid: config, format_version, model"),
    (lambda r: r.update(config=[1, 2]), r"expected a JSON object"),
])
def test_bad_config_json(tmp_path, change, message):
    vaelab.save(_model(), tmp_path)
    record = json.loads((tmp_path / "config.json").read_text())
    change(record)
    _write_config(tmp_path, record)
    with pytest.raises(VaelabError, match=message):
        vaelab.load(tmp_path)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", ""])
def test_config_json_not_an_object(tmp_path, text):
    vaelab.save(_model(), tmp_path)
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(VaelabError, match=r"config.json"):
        vaelab.load(tmp_path)


class _Payload:
    """Unpickling this object runs ``open(marker, "w")``: the file must never appear."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _ShellPayload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("payload", [_Payload, _ShellPayload])
def test_pickle_named_safetensors_is_refused_without_running_it(tmp_path, protocol, payload):
    marker = tmp_path / "pwned"
    vaelab.save(_model(), tmp_path / "m")
    data = pickle.dumps({"state_dict": payload(marker)}, protocol=protocol)
    (tmp_path / "m" / "model.safetensors").write_bytes(data)
    with pytest.raises(VaelabError, match=r"model.safetensors") as err:
        vaelab.load(tmp_path / "m")
    assert not marker.exists(), "loading executed the pickle's payload"
    if protocol >= 2:
        assert "pickle" in str(err.value) and "never unpickles" in str(err.value)


def test_torch_save_zip_is_refused(tmp_path):
    model = _model()
    vaelab.save(model, tmp_path)
    torch.save(model.state_dict(), tmp_path / "model.safetensors")
    with pytest.raises(VaelabError, match=r"pickle/zip file, not safetensors"):
        vaelab.load(tmp_path)


def test_directory_with_only_a_pickle_gets_a_hint(tmp_path):
    torch.save(_model().state_dict(), tmp_path / "model.pt")
    with pytest.raises(VaelabError, match=r"no config.json") as err:
        vaelab.load(tmp_path)
    assert "pickle" in str(err.value) and "model.safetensors" in str(err.value)


@pytest.mark.parametrize("keep", [0, 5, 8, 100, "half", "minus1"])
def test_truncated_safetensors_refused(tmp_path, keep):
    vaelab.save(_model(), tmp_path)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    n = {"half": len(data) // 2, "minus1": len(data) - 1}.get(keep, keep)
    path.write_bytes(data[:n])
    with pytest.raises(VaelabError, match=r"not a valid safetensors file"):
        vaelab.load(tmp_path)


def test_load_to_device_and_eval_mode(tmp_path):
    model = _model()
    model.train()
    vaelab.save(model, tmp_path)
    loaded = vaelab.load(tmp_path, device="cpu")
    assert not loaded.training
    assert next(loaded.parameters()).device.type == "cpu"


def test_valid_file_whose_header_length_starts_like_a_pickle_loads(tmp_path):
    """The 8-byte little-endian header length starts with 0x80 for 1 header size in 256
    (multiples of 8 modulo 256); such a valid safetensors file must not be taken for a pickle."""
    from safetensors.torch import save as st_save

    model = _model()
    vaelab.save(model, tmp_path)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    for n in range(512):
        data = st_save(state, metadata={"format_version": "1", "model": "vae", "note": "x" * n})
        if data[0] == 0x80:
            break
    else:
        pytest.fail("could not build a header of the wanted length")
    (tmp_path / "model.safetensors").write_bytes(data)
    loaded = vaelab.load(tmp_path)
    for k, v in state.items():
        assert torch.equal(loaded.state_dict()[k], v)
