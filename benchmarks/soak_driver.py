"""The runs ``benchmarks/soak.py --kind two-phase|stages|aae|aae-cluster`` kills and resumes.

    python benchmarks/soak_driver.py two-phase npy:IMAGES.npy OUT --epochs 6 --batch-size 50 --val-size 200

Every start is the same command, with ``resume=True``: it starts the run where there is none
and continues it otherwise, as a script or an elastic restart would.

- ``two-phase``: an autoencoder trained by two phases a step, each with its own optimiser
  (all weights on the reconstruction, then the decoder alone at a tenth of the rate), the
  shape of an adversarial model's step.
- ``aae``: the adversarial autoencoder, three phases a step (reconstruction, discriminator,
  generator), each with its own optimiser, prior draws from the torch stream.
- ``aae-cluster``: the clustering adversarial autoencoder: the same three phases with two
  discriminators (one-hot Cat(16) draws against q(y|x), N(0, I) against the style).
- ``stages``: a run of two stages, an autoencoder and then a Gaussian VAE trained on its
  codes (cached in the second stage's directory).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import vaelab
from vaelab.data import Dataset, encoded
from vaelab.models.ae import AE
from vaelab.models.base import Loss, Phase
from vaelab.models.pipeline import Stage
from vaelab.training.signals import TrainingInterrupted


class TwoPhaseAE(AE):
    """``ae`` updated twice a step: every weight on the reconstruction, then the decoder."""

    def phases(self):
        def decoder_loss(batch):
            loss = self.loss(batch)
            return Loss(loss.total, {"recon": loss.terms["recon"]}, {"recon": 1.0})
        return {"recon": Phase(self.parameters, self.loss),
                "decoder": Phase(self.decoder.parameters, decoder_loss, lr_scale=0.1)}


def _codes(models, ds, directory):
    codes = encoded(models["ae"], ds, directory / "codes.safetensors")
    return Dataset(codes.name, codes.x.reshape(len(codes), 1, 1, -1), codes.y)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("kind", choices=("two-phase", "stages", "aae", "aae-cluster"))
    p.add_argument("data")
    p.add_argument("out")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--val-size", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    settings = {"epochs": args.epochs, "batch_size": args.batch_size, "val_size": args.val_size,
                "seed": args.seed, "lr": 3e-3, "threads": 1}
    ae = {"hidden": [64], "latent_dim": 8, "loss": "bernoulli"}
    try:
        if args.kind == "two-phase":
            images = vaelab.load_dataset(args.data, "train")
            torch.manual_seed(args.seed)
            model = TwoPhaseAE(AE.Config.from_dict({"input_shape": list(images.shape), **ae}))
            vaelab.train(model, images, args.out, config=settings, resume=True, progress=False)
        elif args.kind == "aae":
            vaelab.train("aae", vaelab.load_dataset(args.data, "train"), args.out,
                         model_config={"hidden": [64], "latent_dim": 2, "prior": "mixture", "disc_hidden": [32]},
                         config=settings, resume=True, progress=False)
        elif args.kind == "aae-cluster":
            vaelab.train("aae-cluster", vaelab.load_dataset(args.data, "train"), args.out,
                         model_config={"hidden": [64], "latent_dim": 2, "clusters": 16, "disc_hidden": [32]},
                         config=settings, resume=True, progress=False)
        else:
            stages = [Stage("ae", "ae", ae, settings),
                      Stage("prior", "vae", {"hidden": [32], "latent_dim": 2, "likelihood": "gaussian-learned"},
                            settings, _codes)]
            vaelab.train_stages(stages, args.data, Path(args.out), resume=True, progress=False)
    except TrainingInterrupted as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
