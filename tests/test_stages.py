"""Runs of stages: a second model trained on a first one's codes, resumed stage by stage."""
from __future__ import annotations

import json

import pytest
import torch

import vaelab
from vaelab.data import Dataset, encoded
from vaelab.errors import VaelabError
from vaelab.models.base import Loss
from vaelab.training.signals import TrainingInterrupted
from vaelab.models.pipeline import Stage
from vaelab.training.stages import train_stages

FAST = {"threads": 1, "batch_size": 100, "epochs": 2, "lr": 3e-3, "val_size": 0.1}


def _codes(models, ds, directory):
    """Stage 2's data: stage 1's codes of the images, as 1×1×D 'images' for a Gaussian VAE."""
    codes = encoded(models["ae"], ds, directory / "codes.safetensors")
    return Dataset(codes.name, codes.x.reshape(len(codes), 1, 1, -1), codes.y)


def _stages(first_latent=6):
    return [Stage("ae", "ae", {"hidden": [32], "latent_dim": first_latent}, FAST),
            Stage("prior", "vae", {"hidden": [16], "latent_dim": 2, "likelihood": "gaussian-real"}, FAST, _codes)]


@pytest.fixture(scope="module")
def images(synthetic_small):
    return synthetic_small.train.subset(slice(0, 600))


@pytest.fixture(scope="module")
def straight(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("stages") / "run"
    return out, train_stages(_stages(), images, out, progress=False)


def test_each_stage_is_a_complete_run_and_load_gives_the_composite(straight):
    out, results = straight
    plan = json.loads((out / "stages.json").read_text())
    assert [s["dir"] for s in plan["stages"]] == ["1-ae", "2-prior"]
    for sub in ("1-ae", "2-prior"):
        assert {"run.json", "model.safetensors", "metrics.jsonl"} <= {p.name for p in (out / sub).iterdir()}
    assert (out / "2-prior" / "codes.safetensors").exists()  # the derived data, cached in its stage
    composite = vaelab.load(out)
    assert composite["ae"].name == "ae" and composite["prior"].input_shape == (1, 1, 6)
    for name, result in results.items():
        saved = composite[name].state_dict()
        assert all(torch.equal(v, saved[k]) for k, v in result.model.state_dict().items())


def test_resume_of_a_finished_run_of_stages_trains_nothing(straight, images):
    out, _ = straight
    before = {p: p.read_bytes() for p in out.rglob("*.safetensors")}
    results = train_stages(_stages(), images, out, resume=True, progress=False)
    assert all(r.already_finished for r in results.values())
    assert {p: p.read_bytes() for p in out.rglob("*.safetensors")} == before


def test_a_stop_in_the_second_stage_resumes_there_bit_for_bit(straight, images, tmp_path, monkeypatch):
    out = tmp_path / "run"
    calls = {"n": 0}
    original = vaelab.models.vae.VAE.loss

    def stop_in_stage_two(self, batch):
        if self.training:
            calls["n"] += 1
            if calls["n"] == 8:  # stage 2, epoch 2 (6 steps an epoch): epoch 1's checkpoint exists
                raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(vaelab.models.vae.VAE, "loss", stop_in_stage_two)
    with pytest.raises(TrainingInterrupted, match="continue with --resume"):
        train_stages(_stages(), images, out, progress=False)
    monkeypatch.undo()
    first = (out / "1-ae" / "model.safetensors").read_bytes()
    results = train_stages(_stages(), images, out, resume=True, progress=False)
    assert results["ae"].already_finished and (out / "1-ae" / "model.safetensors").read_bytes() == first
    reference = straight[0] / "2-prior" / "model.safetensors"
    assert (out / "2-prior" / "model.safetensors").read_bytes() == reference.read_bytes()


def test_a_run_of_stages_resumed_with_another_first_stage_is_refused(straight, images):
    out, _ = straight
    with pytest.raises(VaelabError, match="stage 'ae' of .* was started with other settings"):
        train_stages(_stages(first_latent=5), images, out, resume=True, progress=False)
    with pytest.raises(VaelabError, match="already holds a run of stages; pass --resume"):
        train_stages(_stages(), images, out, progress=False)


def test_a_model_with_two_phases_trains_each_with_its_own_optimiser_and_resumes_bit_for_bit(images, tmp_path):
    def build():
        torch.manual_seed(0)
        return TwoPhase(vaelab.build("ae", input_shape=[1, 28, 28], hidden=[16], latent_dim=3).config)

    straight = vaelab.train(build(), images, tmp_path / "a", config=FAST, progress=False)
    assert set(straight.model.phases()) == {"recon", "decoder"}
    from vaelab.training.checkpoint import read_checkpoint
    tensors, state = read_checkpoint(tmp_path / "a" / "checkpoints" / "last.safetensors")
    assert set(state["optimizers"]) == {"recon", "decoder"}
    assert any(k.startswith("optim/decoder/") for k in tensors)
    lines = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert {"recon/recon", "decoder/recon"} <= set(lines[0]["train"])

    model = build()
    hook = {"n": 0}
    original = model.phases

    def phases():
        table = original()
        loss = table["decoder"].loss

        def interrupting(batch):
            hook["n"] += 1
            if hook["n"] == 9:
                raise KeyboardInterrupt
            return loss(batch)
        return {**table, "decoder": type(table["decoder"])(table["decoder"].parameters, interrupting,
                                                             table["decoder"].lr)}

    model.phases = phases
    with pytest.raises(TrainingInterrupted):
        vaelab.train(model, images, tmp_path / "b", config=FAST, progress=False)
    vaelab.train(build(), images, tmp_path / "b", config=FAST, resume=True, progress=False)
    assert (tmp_path / "b" / "model.safetensors").read_bytes() == (tmp_path / "a" / "model.safetensors").read_bytes()


class TwoPhase(vaelab.models.ae.AE):
    """An autoencoder updated twice a step: all weights on the reconstruction, then the
    decoder alone at a tenth of the rate (a stand-in for an adversarial model's phases)."""

    name = "ae"

    def phases(self):
        from vaelab.models.base import Phase

        def decoder_loss(batch):
            loss = self.loss(batch)
            return Loss(loss.total, {"recon": loss.terms["recon"]}, {"recon": 1.0})

        return {"recon": Phase(self.parameters, self.loss),
                "decoder": Phase(self.decoder.parameters, decoder_loss, lr=FAST["lr"] / 10)}
