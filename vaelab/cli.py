"""The ``vaelab`` command. Each command is a thin call of one public Python function."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
import warnings
from pathlib import Path

from .errors import VaelabError
from .options import Option, add_options, comma_list, file_settings, in_option_names, key_spellings, options
from .outputs import check_outputs
from .text_cli import print_interpolation, print_reconstructions, print_samples, reads_text
from .words import count


_ints = comma_list(int)  # --indices 3,17,42


def _data_args(p, required: bool = True) -> None:
    p.add_argument("--data", required=required, metavar="SPEC",
                   help="mnist, fashion-mnist, kmnist, digits, frey-faces, cifar10, ptb, fsdd, folder:PATH, npy:PATH, "
                        "wav:PATH or text:PATH (one sentence per line)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="dataset directory (default: $VAELAB_DATA_DIR, else the user cache directory)")


def _run_data_split(p, run_help: str = "run or model directory", data_required: bool = True) -> None:
    """RUN, --data SPEC, --data-dir DIR and --split: what every command reading a run's images takes."""
    p.add_argument("run", help=run_help)
    _data_args(p, required=data_required)
    p.add_argument("--split", default="test", choices=("train", "val", "test"),
                   help="dataset split (default: test; val: ptb's own validation file or the run's held-out rows)")


def _threads_arg(p) -> None:
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: 0 = all cores)")


def _use_threads(args) -> None:
    """``--threads`` of a command that computes: 0 = all cores."""
    from .threads import set_threads

    if args.threads < 0:
        raise VaelabError(f"--threads must be 0 (all cores) or more, got {args.threads}")
    set_threads(args.threads)


class _Parser(argparse.ArgumentParser):
    """No prefix matching (``--epoch 1`` is not ``--epochs 1``): a typo must fail, not guess.
    Sub-parsers are built with the parent's class, so every (sub-)command inherits this."""

    def __init__(self, *args, allow_abbrev: bool = False, **kwargs):
        super().__init__(*args, allow_abbrev=allow_abbrev, **kwargs)

    def error(self, message: str):
        """One line and where the options are listed, not argparse's usage block: the usage of
        a command with thirty options buries the one line that matters."""
        from .errors import one_line

        self.exit(2, f"error: {one_line(message)}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    from .version import __version__

    parser = _Parser(prog="vaelab", description="Train, measure and look inside autoencoders.")
    parser.add_argument("--version", action="version", version=f"vaelab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_train_command(sub)
    _add_train_prior_command(sub)
    _add_eval_command(sub)
    _add_sample_command(sub)
    _add_reconstruct_command(sub)
    _add_edit_command(sub)
    _add_encode_command(sub)
    _add_traverse_command(sub)
    _add_interpolate_command(sub)
    _add_manifold_command(sub)
    _add_scatter_command(sub)
    _add_analogies_command(sub)
    _add_curves_command(sub)
    _add_report_command(sub)
    _add_serve_command(sub)
    _add_demo_command(sub)
    _add_profiles_command(sub)
    from .compare.cli import add_compare_parser
    add_compare_parser(sub)
    from .speech_cli import add_convert_command
    add_convert_command(sub)
    return parser


def _add_train_command(sub) -> None:
    """``vaelab train MODEL``: one sub-parser per registered model."""
    from .models import names

    p = sub.add_parser("train", help="train a model and write its run directory",
                       description="Train a model on a dataset. The run directory records the full "
                                   "configuration, checkpoints every epoch and metrics.jsonl. "
                                   "Each model's settings: vaelab train MODEL --help.")
    models = p.add_subparsers(dest="model", required=True, metavar="MODEL", title="models")
    for name in names():
        _add_train_parser(models, name)


def _add_train_prior_command(sub) -> None:
    """``vaelab train-prior RUN``: the prior over a VQ-VAE's codes, a second stage in RUN/prior."""
    from .models.vq_prior import VQPrior
    from .training import TrainConfig

    p = sub.add_parser("train-prior", help="fit a PixelCNN prior to the codes of a VQ-VAE run (into RUN/prior), "
                                           "so that it can sample and bound log p(x)",
                       description="Train a gated PixelCNN over the code maps of a trained VQ-VAE's training "
                                   "images, as a second stage inside its run directory (RUN/prior). Afterwards "
                                   "`vaelab sample RUN` draws codes from it and decodes them, and `vaelab eval RUN` "
                                   "reports the bound log p(x) >= log p(x|z_q) + log p(z_q).",
                       epilog=_profiles_epilog(VQPrior.name), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="the VQ-VAE's run directory")
    _data_args(p, required=False)
    p.add_argument("--resume", action="store_true", help="continue the prior in RUN/prior from its last checkpoint")
    p.add_argument("--config", metavar="FILE", help="JSON or TOML file of settings (keys are the option names)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    add_options(p.add_argument_group("prior settings"), options(VQPrior.Config))
    honoured = [o for o in options(TrainConfig) if o.key not in PRIOR_FIXED]
    add_options(p.add_argument_group("training settings (the validation split follows the VQ-VAE run's)"),
                honoured, defaults=VQPrior.train_defaults)
    for o in options(TrainConfig):  # taken only to be refused in one line (see _refuse_prior_settings)
        if o.key in PRIOR_FIXED:
            p.add_argument(o.flag, dest=o.key, default=None, help=argparse.SUPPRESS)


# Training settings a prior over a VQ-VAE's codes does not take, and why.
_SPLIT = "its validation split follows the VQ-VAE run's (the same rows, drawn by the run's seed)"
_CODES = "it trains on every code map of the run's training images"
PRIOR_FIXED = {"val_size": _SPLIT, "val_rows": _SPLIT, "seed": _SPLIT,
               "test_fraction": "the prior is measured on the VQ-VAE run's test images (vaelab eval RUN)",
               "labels": _CODES, "label_seed": _CODES, "labelled_batch_size": _CODES,
               "binarize": "codes are integers, not pixels"}


def _refuse_prior_settings(args) -> None:
    """``train-prior --val-size 0.5`` (or the same in --config) refused in one line, not ignored."""
    from .training import TrainConfig

    flags = {o.key: o.flag for o in options(TrainConfig)}
    given = [k for k in PRIOR_FIXED if getattr(args, k, None) is not None]
    if not given and args.config:
        spellings = key_spellings(options(TrainConfig))
        given = [spellings[k] for k in _settings_file(args.config) if spellings.get(k) in PRIOR_FIXED]
    if given:
        raise VaelabError(f"train-prior has no {flags[given[0]]}: {PRIOR_FIXED[given[0]]}")


def _add_eval_command(sub) -> None:
    """``vaelab eval RUN``: the figures the model can report, on a split."""
    p = sub.add_parser("eval", help="measure a trained model (ELBO, IS-NLL, active units, MSE, PSNR)",
                       description="Evaluate a run or model directory on a dataset split.")
    _run_data_split(p)
    p.add_argument("--nll-samples", type=int, default=0, metavar="K",
                   help="importance samples for the log-likelihood estimate, e.g. 5000: nll = -log p(x), or "
                        "cnll = -log p(x|y) for a label-conditional model; VAE-family models only (default: 0 = skip)")
    p.add_argument("--binarize", default="auto", choices=("auto", "dynamic", "static", "none"),
                   help="binarize the evaluation images once with a fixed seed; auto follows the run "
                        "(default: auto)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="evaluate the first N images only (default: all)")
    p.add_argument("--batch-size", type=int, default=500, help="images per evaluation batch (default: 500)")
    p.add_argument("--seed", type=int, default=0, help="seed of the posterior samples (default: 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    _threads_arg(p)
    p.add_argument("--no-progress", action="store_true",
                   help="no progress report of the log-likelihood estimate (a bar on a terminal, else a "
                        "line every 5 %% on stderr)")


def _add_sample_command(sub) -> None:
    """``vaelab sample RUN``: decoded samples as a PNG grid."""
    p = sub.add_parser("sample", help="decode prior samples into an image grid")
    p.add_argument("run", help="run or model directory")
    p.add_argument("-n", type=int, default=64, help="number of samples (default: 64)")
    p.add_argument("-o", "--output", default="samples.png",
                   help="image file to write, .png, .jpg or .webp (default: samples.png)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--codes", default="prior", choices=("prior", "fitted"),
                   help="codes to decode: prior, z ~ N(0, I); or fitted, z ~ a Gaussian fitted to the codes of "
                        "the training images (deterministic autoencoders, which have no prior) (default: prior)")
    p.add_argument("--label", type=int, default=None, metavar="Y",
                   help="draw every sample given this class (label-conditional models such as cvae; "
                        "default: classes cycled 0, 1, ..., K-1)")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="with --codes fitted: the training data (default: the data recorded in the run)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="dataset directory (default: $VAELAB_DATA_DIR, else the user cache directory)")
    p.add_argument("--attributes", default=None, metavar="NAME=V[,NAME=V...]",
                   help="draw every sample given these attributes, e.g. class=3,thickness=2.5,slant=10 (pixels, "
                        "degrees; the rest at their training mean); models trained with attributes such as cmma")
    p.add_argument("--extrapolate", action="store_true",
                   help="with --attributes: allow values outside the training range")
    _threads_arg(p)


def _add_edit_command(sub) -> None:
    """``vaelab edit RUN``: a test digit, its reconstruction and the digit with attributes changed."""
    p = sub.add_parser("edit", help="change a digit's attributes (thickness, slant, class) and decode it",
                       description="Encode one image with its attributes, set some anew and decode: a PNG of "
                                   "the image, its reconstruction and the edit (models trained with attributes).")
    _run_data_split(p, run_help="run or model directory of a model trained with attributes (cmma)")
    p.add_argument("--index", type=int, required=True, metavar="I", help="the image of the split to edit (0-based)")
    p.add_argument("--set", dest="changes", required=True, metavar="NAME=V[,NAME=V...]",
                   help="the attributes to change, e.g. thickness=3.5 or slant=-10 (pixels, degrees)")
    p.add_argument("--extrapolate", action="store_true", help="allow values outside the training range")
    p.add_argument("-o", "--output", default="edit.png", help="image file, .png, .jpg or .webp (default: edit.png)")


def _add_reconstruct_command(sub) -> None:
    """``vaelab reconstruct RUN``: chosen images above their reconstructions."""
    p = sub.add_parser("reconstruct", help="PNG grid of inputs above their reconstructions (sentence models: "
                                            "printed text)")
    _run_data_split(p, data_required=False)
    p.add_argument("--text", action="append", default=None, metavar="SENTENCE",
                   help="sentence models: a sentence to reconstruct (repeatable)")
    p.add_argument("-n", type=int, default=None, help="number of images (default: 32)")
    p.add_argument("--indices", type=_ints, default=None, metavar="I[,I...]",
                   help="show these images of the split (0-based, e.g. 3,17,42) instead of N spread over it")
    p.add_argument("--seed", type=int, default=None,
                   help="show N images drawn at random with this seed (default: N spread evenly over the split, "
                        "one drawn from each of N equal stretches, so a class-sorted file shows every class)")
    p.add_argument("-o", "--output", default="reconstructions.png",
                   help="image file, .png, .jpg or .webp (default: reconstructions.png)")
    _threads_arg(p)


def _add_encode_command(sub) -> None:
    """``vaelab encode RUN``: a split's codes and labels as .npz."""
    p = sub.add_parser("encode", help="write a dataset's codes (posterior means, log-variances) and labels to .npz",
                       description="Encode a dataset split with a trained model and write one .npz of named "
                                   "arrays, row i for image i: mean and logvar (VAE) or code (autoencoders), "
                                   "and y (labels, where the data has them). Read it with numpy.load.")
    _run_data_split(p)
    p.add_argument("-o", "--output", default="codes.npz", help=".npz file to write (default: codes.npz)")
    p.add_argument("--binarize", default="auto", choices=("auto", "dynamic", "static", "none"),
                   help="binarize the images once with a fixed seed before encoding; auto follows the run, "
                        "none encodes grey levels (default: auto)")
    p.add_argument("--batch-size", type=int, default=500, help="images per batch (default: 500)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    _threads_arg(p)


def _add_traverse_command(sub) -> None:
    """``vaelab traverse RUN``: one latent dimension varied per row, PNG and GIF."""
    p = sub.add_parser("traverse", help="latent traversal: vary one dimension per row, keep the rest (PNG, GIF)",
                       description="Decode codes that differ in one latent dimension per row, the most informative "
                                   "dimensions first (mean KL for a VAE, code variance for an autoencoder), around "
                                   "the prior or around one image's code.")
    _run_data_split(p)
    p.add_argument("--index", type=int, default=None, metavar="I",
                   help="centre on this image's code (0-based in the split) instead of the prior")
    p.add_argument("--dims", type=_ints, default=None, metavar="J[,J...]", help="vary these dimensions, in this order")
    p.add_argument("--top", type=int, default=None, metavar="N",
                   help="vary the N highest-ranked dimensions (default: 10, or all if fewer)")
    p.add_argument("--steps", type=int, default=9, help="values per row (default: 9)")
    p.add_argument("--span", type=float, default=3.0,
                   help="reach of each row in standard deviations either side (default: 3)")
    p.add_argument("--label", type=int, default=None, metavar="Y",
                   help="class to decode with (label-conditional models; default: the --index image's label)")
    p.add_argument("-o", "--output", default="traverse.png",
                   help="image file, .png, .jpg or .webp (default: traverse.png)")
    p.add_argument("--gif", default=None, metavar="FILE", help="also write an animated GIF (.gif) sweeping the values")
    _threads_arg(p)


def _add_interpolate_command(sub) -> None:
    """``vaelab interpolate RUN``: pixel, linear-z and slerp-z paths between two images."""
    p = sub.add_parser("interpolate", help="interpolate between two images in pixels and in z (PNG + measures)",
                       description="Three rows from one image to another: blended pixels, decoded points on the "
                                   "straight line between their codes, and on the spherical path (slerp). Each "
                                   "path's mean step length and a digit classifier's confidence along it are printed.")
    _run_data_split(p, data_required=False)
    p.add_argument("--from", dest="start", default=None, metavar="I",
                   help="first image (index in the split); sentence models: the first sentence")
    p.add_argument("--to", dest="end", default=None, metavar="J",
                   help="last image (index in the split); sentence models: the last sentence")
    p.add_argument("--from-file", default=None, metavar="FILE", help="first image from a PNG/JPEG file instead")
    p.add_argument("--to-file", default=None, metavar="FILE", help="last image from a PNG/JPEG file instead")
    p.add_argument("--steps", type=int, default=10, help="points per path, endpoints included (default: 10)")
    p.add_argument("--label", type=int, default=None, metavar="Y",
                   help="class both images are encoded and decoded at (label-conditional models, required there)")
    p.add_argument("--classifier", default=None, metavar="DIR",
                   help="digit classifier directory; trained there on --data's training images when missing "
                        "(default: one per dataset in ~/.cache/vaelab/classifiers)")
    p.add_argument("--no-classifier", action="store_true", help="skip the classifier's confidence")
    p.add_argument("-o", "--output", default="interpolate.png",
                   help="image file, .png, .jpg or .webp (default: interpolate.png)")
    _threads_arg(p)


def _add_demo_command(sub) -> None:
    """``vaelab demo``: a small VAE on scikit-learn's digits."""
    p = sub.add_parser("demo", help="train a small VAE on scikit-learn's bundled digits (no download)")
    p.add_argument("--out", default="runs/demo", help="run directory; a free name is chosen if it exists "
                                                     "(default: runs/demo)")
    p.add_argument("--epochs", type=int, default=40, help="training epochs (default: 40)")
    _threads_arg(p)


def _add_curves_command(sub) -> None:
    """``vaelab curves RUN [RUN ...]``: training curves of runs, overlaid."""
    p = sub.add_parser("curves", help="plot loss terms, validation values and the learning rate against epoch",
                       description="Read each run's metrics.jsonl and draw one small panel per quantity, "
                                   "the runs overlaid (solid: training, dashed: validation).")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (a run of stages: one curve per stage)")
    p.add_argument("-o", "--output", default="curves.png",
                   help="image file to write, .png, .jpg or .webp (default: curves.png)")
    _threads_arg(p)


def _add_report_command(sub) -> None:
    """``vaelab report RUN [RUN ...]``: one self-contained HTML page of runs."""
    p = sub.add_parser("report", help="write one self-contained HTML report of runs (settings, metrics, curves, "
                                      "pictures)",
                       description="Write one HTML file, every image embedded, that opens from disk: per run "
                                   "its settings, data, wall time, metrics (best and last epoch, a quick test "
                                   "evaluation), curves and the pictures that fit the model; several runs are "
                                   "compared in one table.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    p.add_argument("-o", "--output", default="report.html", help="HTML file to write (default: report.html)")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="data for the test evaluation and the reconstructions (default: the data each run records)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="dataset directory (default: $VAELAB_DATA_DIR, else the user cache directory)")
    p.add_argument("--eval-images", type=int, default=1000, metavar="N",
                   help="test images evaluated per run (default: 1000; 0 = no evaluation)")
    p.add_argument("--nll-samples", type=int, default=0, metavar="K",
                   help="importance samples for the test log-likelihood (default: 0 = skip; it costs minutes)")
    p.add_argument("--label", type=int, default=None, metavar="Y",
                   help="label-conditional models: samples of this class (default: classes cycled)")
    p.add_argument("--seed", type=int, default=0, help="seed of samples and evaluation (default: 0)")
    _threads_arg(p)
def _add_serve_command(sub) -> None:
    """``vaelab serve RUN [RUN ...]``: the local latent explorer."""
    p = sub.add_parser("serve", help="open a local web page to explore runs' latent spaces",
                       description="Serve the latent explorer: a map of test images by their codes, a slider per "
                                   "latent dimension, interpolation, a class picker for conditional models and "
                                   "uploads of your own images. Listens on this machine only unless --host says "
                                   "otherwise; Ctrl-C stops it.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run or model directories")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="dataset of every run (default: the data each run recorded)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="dataset directory (default: $VAELAB_DATA_DIR, else the user cache directory)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; anything but the loopback lets other machines in (default: 127.0.0.1)")
    p.add_argument("--map-size", type=int, default=2000, metavar="N", help="test images on the map (default: 2000)")
    p.add_argument("--pool-size", type=int, default=5000, metavar="N",
                   help="training images an upload's nearest neighbours are drawn from (default: 5000)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for encoding and decoding; one suffices for one image at a time (default: 1; "
                        "0 = all cores)")


def _add_manifold_command(sub) -> None:
    """``vaelab manifold RUN``: the decoded latent grid, style grids, or continuity panels."""
    p = sub.add_parser("manifold", help="PNG of the decoded latent manifold (style grids per class for "
                                        "label-conditional models), or continuity/completeness panels",
                       description="Decode an n×n grid of codes through the inverse Gaussian CDF over a plane of "
                                   "the latent space (other coordinates at the prior mean 0); an autoencoder's "
                                   "grid spans quantiles of its codes on --data. Label-conditional models decode "
                                   "the grid once per class.")
    p.add_argument("run", help="run or model directory")
    p.add_argument("-n", "--n", type=int, default=20, dest="n",
                   help="tiles per side of the grid (2 to 50); with --coverage, images per panel (default: 20)")
    p.add_argument("--dims", type=_ints, default=None, metavar="I,J",
                   help="latent dimensions to draw, 0-based (default: the two of highest KL or code variance "
                        "on --data, else 0,1)")
    _data_args(p, required=False)
    p.add_argument("--split", default="test", choices=("train", "test"), help="dataset split (default: test)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="use the first N images only (default: all)")
    p.add_argument("--by-class", action="store_true",
                   help="one grid per class (label-conditional models; their default)")
    p.add_argument("--label", type=int, default=None, metavar="Y", help="only the grid of this class")
    p.add_argument("--coverage", action="store_true",
                   help="instead of the grid: random prior codes, and midpoints between codes of pairs of "
                        "real images beside them (needs --data)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --coverage draws (default: 0)")
    _threads_arg(p)
    p.add_argument("-o", "--output", default=None,
                   help="image file, .png, .jpg or .webp (default: manifold.png, or coverage.png with --coverage)")


def _add_scatter_command(sub) -> None:
    """``vaelab scatter RUN``: the 2-D latent map of a split, coloured by label."""
    p = sub.add_parser("scatter", help="PNG map of a split's codes coloured by label (2-D, or projected)",
                       description="Encode a dataset split and draw one point per image at its code, coloured "
                                   "by label; codes wider than 2 are projected (pca, tsne, or umap where "
                                   "umap-learn is installed).")
    _run_data_split(p)
    p.add_argument("--limit", type=int, default=0, metavar="N", help="map the first N images only (default: all)")
    p.add_argument("--projection", default="pca", metavar="METHOD",
                   help="pca, tsne or umap, for codes wider than 2 (default: pca)")
    p.add_argument("--seed", type=int, default=0, help="seed of t-SNE or UMAP (default: 0)")
    p.add_argument("--save-codes", default=None, metavar="FILE.npz",
                   help="also write the points, codes and labels to this .npz")
    _threads_arg(p)
    p.add_argument("-o", "--output", default="latent_map.png",
                   help="image file, .png, .jpg or .webp (default: latent_map.png)")


def _add_analogies_command(sub) -> None:
    """``vaelab analogies RUN``: test digits' styles decoded as every class (label-conditional models)."""
    p = sub.add_parser("analogies", help="PNG grid of test digits, each decoded as every class (cvae)",
                       description="Encode each chosen digit's style z = E[q(z|x, y)] with its own label and "
                                   "decode it with every class: one row per digit, the digit first, then "
                                   "classes 0..K-1. Needs a label-conditional model such as cvae.")
    _run_data_split(p)
    p.add_argument("-n", type=int, default=None, help="number of source digits (default: 8)")
    p.add_argument("--indices", type=_ints, default=None, metavar="I[,I...]",
                   help="use these images of the split (0-based, e.g. 3,17,42) instead of N spread over it")
    p.add_argument("--seed", type=int, default=None, help="draw the N digits at random with this seed")
    p.add_argument("-o", "--output", default="analogies.png",
                   help="image file, .png, .jpg or .webp (default: analogies.png)")


def _add_train_parser(models, name: str) -> None:
    """``vaelab train NAME``: the common options, then NAME's settings and the training
    settings, all generated from the config dataclasses (help shows NAME's own defaults)."""
    from .models import model_class
    from .training import TrainConfig

    cls = model_class(name)
    summary = _summary(cls)
    p = models.add_parser(name, help=summary, description=f"Train {name}: {summary}", epilog=_profiles_epilog(name),
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    _data_args(p)
    p.add_argument("--out", required=True, metavar="DIR", help="run directory to create (or continue with --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint "
                                                          "(where none was written yet, start it)")
    p.add_argument("--config", metavar="FILE", help="JSON or TOML file of settings (keys are the option names, "
                                                   "with dashes or underscores); options given on the command line win")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    add_options(p.add_argument_group(f"{name} settings"), options(cls.Config))
    add_options(p.add_argument_group("training settings"), options(TrainConfig), defaults=cls.train_defaults)


def _profiles_epilog(family: str) -> str:
    from .profiles import epilog

    return epilog(family)


def _add_profiles_command(sub) -> None:
    """``vaelab profiles [FAMILY]``: the packaged settings files and what each sets."""
    p = sub.add_parser("profiles", help="list the named settings files (--profile NAME) of each model family",
                       description="Without FAMILY: every family and its profiles. With FAMILY: each of its "
                                   "profiles, what it is for and every setting it sets, as options.")
    p.add_argument("family", nargs="?", help="a model family, e.g. vae (vq-prior: the prior of train-prior)")


def cmd_profiles(args) -> None:
    from .profiles import listing

    print(listing(args.family))


def _profile_settings(args, model_cls, out: Path, from_file: dict) -> dict:
    """The settings of the profile named by ``--profile`` (or the ``--config`` file's
    ``profile``), with ``profile`` itself so that run.json records it. ``--resume`` of a
    recorded run applies none: the record holds them, and a different profile is refused."""
    from .files import read_run_record
    from .profiles import read_profile

    name = getattr(args, "profile", None) or from_file.get("profile")
    if args.resume and (out / "run.json").exists():
        recorded = read_run_record(out / "run.json").get("train", {}).get("profile") or ""
        if name and name != recorded:
            was = f"with profile '{recorded}'" if recorded else "without a profile"
            raise VaelabError(f"--resume continues the recorded run, which was trained {was}; drop "
                              f"--profile {name}" + (f" or pass --profile {recorded}" if recorded else ""))
        return {}
    return {**read_profile(model_cls.name, name), "profile": name} if name else {}


def _summary(cls) -> str:
    """The first sentence of a model class's docstring (else of its module's), for the list
    of models; a long one loses its parenthesis."""
    import inspect
    import re

    doc = cls.__dict__.get("__doc__") or inspect.getmodule(cls).__doc__ or cls.name
    text = " ".join(doc.strip().split("\n\n")[0].split()).replace("``", "")
    text = re.split(r"\.\s+(?=[A-Z])", text)[0].rstrip(".")
    return text.split(" (")[0] if len(text) > 90 else text


def _settings_file(path: str) -> dict:
    from .files import read_settings

    return read_settings(path, "--config file")


def _pick(settings: dict, opts: list[Option]) -> dict:
    return {o.key: settings[o.key] for o in opts if o.key in settings}


def _given(args, opts: list[Option]) -> dict:
    """The settings given on the command line (an option left out is None)."""
    return {o.key: getattr(args, o.key) for o in opts if getattr(args, o.key, None) is not None}


def cmd_train(args) -> None:
    from . import train
    from .models import model_class

    out = Path(args.out)
    model_config, config = _run_settings(args, model_class(args.model), out)
    result = train(args.model, args.data, out, model_config=model_config, config=config,
                   data_dir=args.data_dir, resume=args.resume, progress=not args.no_progress)
    _trained(result)


def _run_settings(args, model_cls, out: Path, inherited: dict | None = None):
    """(model settings or None, TrainConfig) from ``--config FILE`` and the options given; with
    ``--resume`` of a recorded run, the recorded ones (only RESUME_MAY_CHANGE may differ).
    ``inherited`` training settings sit under the family's defaults and the given ones."""
    from .files import read_run_record
    from .models.registry import as_trained
    from .training import TrainConfig, train_config
    from .training.trainer import RESUME_MAY_CHANGE

    model_opts, train_opts = options(model_cls.Config), options(TrainConfig)
    flags = {o.key: o.flag for o in model_opts + train_opts}
    from_file = file_settings(args.config, model_opts + train_opts) if args.config else {}
    from_file = {**_profile_settings(args, model_cls, out, from_file), **from_file}
    model_settings = {**_pick(from_file, model_opts), **_given(args, model_opts)}
    train_settings = {**_pick(from_file, train_opts), **_given(args, train_opts)}
    recorded = read_run_record(out / "run.json") if args.resume and (out / "run.json").exists() else None
    if not recorded:
        return model_settings or None, train_config(model_cls, {**(inherited or {}), **train_settings})
    trained = as_trained(model_cls, recorded["config"])
    for key, value in model_settings.items():
        old = trained.get(key)
        if _norm(old) != _norm(value):
            raise VaelabError(f"--resume continues the recorded run; {flags[key]} "
                              f"differs (recorded {old}, given {value})")
    changed = [k for k in train_settings if k not in RESUME_MAY_CHANGE
               and _norm(recorded["train"].get(k)) != _norm(train_settings[k])]
    if changed:
        k = changed[0]
        raise VaelabError(f"--resume continues the recorded run; {flags[k]} differs "
                          f"(recorded {recorded['train'].get(k)}, given {train_settings[k]}); only "
                          f"{', '.join(flags[r] for r in RESUME_MAY_CHANGE)} may change")
    return None, TrainConfig.from_dict({**recorded["train"], **train_settings}, where="training settings")


def _trained(result) -> None:
    """What a finished ``train`` or ``train-prior`` says."""
    best = "" if result.best_val is None else \
        f"; best validation {result.monitor} {result.best_val:.2f} at epoch {result.best_epoch}"
    if result.already_finished:
        print(_nothing_to_do(result, best))
        return
    skipped = f"; {count(result.skipped_steps, 'non-finite step')} skipped" if result.skipped_steps else ""
    print(f"trained {count(result.epochs_run, 'epoch')}{best}{skipped}{' (stopped early)' if result.stopped_early else ''}")
    files = [n for n in ("model.safetensors", "samples.png", "reconstructions.png", "text.txt", "metrics.jsonl")
             if (result.run_dir / n).exists()]
    print(f"run directory: {result.run_dir}  ({', '.join(files)})")


def cmd_train_prior(args) -> None:
    from .io import PRIOR_DIR
    from .models.vq_prior import VQPrior
    from .training.prior import inherited_settings, train_prior

    _refuse_prior_settings(args)
    run = Path(args.run)
    if not run.is_dir():
        raise VaelabError(f"run directory not found: {run}; train a VQ-VAE first (vaelab train vqvae --out {run})")
    model_config, config = _run_settings(args, VQPrior, run / PRIOR_DIR, inherited=inherited_settings(run))
    _trained(train_prior(run, model_config=model_config, config=config, data=args.data, data_dir=args.data_dir,
                         resume=args.resume, progress=not args.no_progress))


def _nothing_to_do(result, best: str) -> str:
    """What ``--resume`` of a finished run says instead of a training summary: how to go on."""
    done = f"nothing left to do: the run in {result.run_dir} finished {count(result.epochs_run, 'epoch')}{best}"
    if result.stopped_early:
        return f"{done}; it stopped early (no better validation {result.monitor} for --patience epochs)"
    return f"{done}; to train longer, pass --resume --epochs N with N larger than {result.epochs_run}"


def _norm(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _eval_data(args, model, run: Path):
    """The Dataset of ``--split`` as the run saw it (its carved test split, if any), labels
    included: a conditional model needs them, as do classification figures."""
    from .data.kinds import check_reads
    from .training import run_split
    from .training.run import conditioned

    ds = run_split(run, args.data, args.split, data_dir=args.data_dir)
    check_reads(model, ds)
    if tuple(ds.shape) != tuple(model.input_shape):
        raise VaelabError(f"{args.data} images have shape {list(ds.shape)}, the model expects "
                          f"{list(model.input_shape)}")
    return conditioned(model, ds.subset(slice(0, args.limit)) if getattr(args, "limit", 0) else ds)


def _eval_images(args, model, run: Path):
    """As :func:`_eval_data`, with a note on stderr when the images are training images, or
    other data than the run's."""
    from .training.run import held_out

    ds = _eval_data(args, model, run)
    note = held_out(run, args.data, args.split)[1]
    if note:
        print(f"note: {note}", file=sys.stderr)
    return ds


def _reference_data(args, model, run: Path):
    """The training split of the same data, labelled, for a model with cluster or binary codes
    (it names the clusters and is the retrieval database); None for other models."""
    from .evaluation import has_codes
    from .training import run_split

    return run_split(run, args.data, "train", data_dir=args.data_dir) if has_codes(model) else None


def cmd_eval(args) -> None:
    from . import evaluate, load
    from .data.samplers import resolve_binarize
    from .threads import set_threads
    from .training.run import held_out
    from .training.trainer import resolve_device

    if args.nll_samples < 0:
        raise VaelabError(f"--nll-samples must be >= 0 (0 skips the estimate), got {args.nll_samples}")
    set_threads(args.threads)
    run = Path(args.run)
    model = load(run, device=resolve_device(args.device))
    ds = _eval_data(args, model, run)
    unseen, note = held_out(run, args.data, args.split)
    if unseen and note:  # other data than the run's: said at once, whatever the output form
        print(f"note: {note}", file=sys.stderr)
    reference = _reference_data(args, model, run)
    result = evaluate(model, ds, nll_samples=args.nll_samples, binarize=resolve_binarize(args.binarize, model, run),
                      batch_size=args.batch_size, seed=args.seed, progress=not args.no_progress,
                      reference=reference)
    result = {"run": str(run), "data": args.data, "split": args.split, "held_out": unseen,
              **({"note": note} if note else {}), **result}
    if args.json:
        print(json.dumps(result))
        return
    for key in ("run", "data", "split"):
        print(f"{key:>19}  {result[key]}")
    if not unseen:
        print(f"{'note':>19}  {note}")
    for key in _table_keys(result):
        value = result[key]
        print(f"{key:>19}  {value:.4f}" if isinstance(value, float) else f"{key:>19}  {value}")


TABLE_ORDER = ("n", "k", "binarize", "elbo", "celbo", "recon", "kl", "mse", "psnr", "nll", "nll_stderr",
               "bits_per_dim", "nll_bound", "nll_bound_stderr", "bits_per_dim_bound", "cnll", "cnll_stderr",
               "cbits_per_dim", "target_cnll", "target_cnll_stderr", "target_bits_per_dim", "target_mse",
               "classification_error", "cluster_error", "cluster_error_most_confident", "clusters_used",
               "precision_at_100", "codebook_usage", "code_perplexity", "active_units",
               "nelbo", "ppl", "ppl_bound", "tokens_per_sentence", "mutual_information")  # sentence models


def _table_keys(result: dict) -> list[str]:
    """The figures worth a table row: the usual ones first, then any other number the model
    reported (its own loss terms, timings); per-dimension lists stay in --json."""
    skip = {"run", "data", "split", "held_out", "note"}
    rest = [k for k, v in result.items() if k not in TABLE_ORDER and k not in skip and not isinstance(v, (list, dict))]
    return [k for k in TABLE_ORDER if k in result] + rest


def cmd_sample(args) -> None:
    from . import load
    from .codes import training_code_gaussian
    from .viz.grids import capped, save_samples

    _use_threads(args)
    if args.n < 1:
        raise VaelabError(f"-n must be at least 1, got {args.n}")
    model = load(args.run)
    if reads_text(model):
        return print_samples(model, args.n, args.seed)
    args.n = capped(args.n, model.input_shape)
    if args.attributes is not None:
        return _sample_attributes(args, model)
    if args.extrapolate:
        raise VaelabError("--extrapolate goes with --attributes")
    codes = None
    if args.codes == "fitted":
        codes, spec, count = training_code_gaussian(args.run, model, args.data, args.data_dir)
        print(f"decoding codes drawn from the Gaussian fitted to the codes of {count} training images of {spec}")
    elif hasattr(model, "code_gaussian"):
        print(f"note: an '{model.name}' has no prior; decoding z ~ N(0, I), codes it was never trained on "
              "(--codes fitted draws from a Gaussian fitted to its training codes)")
    save_samples(model, args.output, n=args.n, seed=args.seed, codes=codes, label=args.label)
    print(f"wrote {args.output}")


def _sample_attributes(args, model) -> None:
    from .attributes import parse_attributes, sample_attributes
    from .viz.grids import grid, save_png

    if args.label is not None or args.codes != "prior":
        raise VaelabError("--attributes chooses what to draw itself; give it without --label and --codes")
    request = parse_attributes(args.attributes)
    save_png(grid(sample_attributes(model, request, args.n, args.seed, args.extrapolate)), args.output)
    print(f"wrote {args.output}")


def cmd_edit(args) -> None:
    from .attributes import parse_attributes, save_edit

    figures = save_edit(args.run, args.data, args.index, parse_attributes(args.changes), args.output,
                        split=args.split, data_dir=args.data_dir, extrapolate=args.extrapolate)
    for what, row in figures.items():
        print(f"{what:>14}: thickness {row['thickness']:.2f} px, slant {row['slant']:.1f}°")
    print(f"wrote {args.output} (image, reconstruction, edit)")


def cmd_reconstruct(args) -> None:
    from . import load
    from .data import binarize_static
    from .data.samplers import resolve_binarize
    from .evaluation import TEST_BINARIZATION_SEED
    from .viz.grids import capped, choose_images, save_reconstructions

    _use_threads(args)
    run = Path(args.run)
    model = load(run)
    if reads_text(model):
        data = _eval_images(args, model, run) if args.data else None
        return print_reconstructions(model, args.text, data, args.n or 5, args.seed or 0)
    _need_data(args)
    ds = _eval_images(args, model, run)
    if ds.front_end.get("kind") == "log-mel":  # speech: spectrograms of clips above their reconstructions
        from .convert import speech_reconstructions
        batch = ds.subset(choose_images(len(ds), args.n or 6, args.indices, args.seed)).batch()
        print(f"wrote {speech_reconstructions(model, batch, args.output)}")
        return
    n = capped(args.n, model.input_shape, pairs=True) if args.n and args.n > 0 else args.n
    batch = ds.subset(choose_images(len(ds), n, args.indices, args.seed)).batch()
    if resolve_binarize("auto", model, run) != "none":
        batch = batch.with_x(binarize_static(batch.x, TEST_BINARIZATION_SEED))
    save_reconstructions(model, batch, args.output)
    print(f"wrote {args.output}")


def cmd_encode(args) -> None:
    from . import export_codes

    _use_threads(args)
    arrays = export_codes(args.run, args.data, args.output, split=args.split, data_dir=args.data_dir,
                          binarize=args.binarize, batch_size=args.batch_size, device=args.device)
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items())
    print(f"wrote {args.output} ({shapes})")


def cmd_traverse(args) -> None:
    from . import load
    from .viz.traversal import save_traversal

    _use_threads(args)
    run = Path(args.run)
    model = load(run)
    ds = _eval_images(args, model, run)
    t = save_traversal(model, args.output, ds, gif=args.gif, index=args.index, dims=args.dims, top=args.top,
                       steps=args.steps, span=args.span, label=args.label)
    print(f"rows vary {', '.join(t.captions())} (score: {t.measure}), around {t.around}, "
          f"± {args.span:g} {t.spread}")
    print(f"wrote {args.output}" + (f" and {args.gif}" if args.gif else ""))


def cmd_interpolate(args) -> None:
    from . import load
    from .viz.interpolation import PATHS, save_interpolation

    _use_threads(args)
    run = Path(args.run)
    model = load(run)
    if reads_text(model):
        return print_interpolation(model, args.start, args.end, args.steps)
    _need_data(args)
    args.start, args.end = _index(args.start, "--from"), _index(args.end, "--to")
    a, b = _interpolation_ends(args, model, run)
    classifier = None
    if args.no_classifier and args.classifier:
        raise VaelabError("--no-classifier skips the score that --classifier gives; drop one of them")
    if not args.no_classifier:
        from .viz.judge import classifier_if_labelled
        classifier = classifier_if_labelled(args.data, model.input_shape, args.data_dir, args.classifier,
                                            why="to score how digit-like each interpolated image is")
    result = save_interpolation(model, args.output, a, b, steps=args.steps, label=args.label, classifier=classifier)
    print(f"{'path':>7}  {'step_length':>11}  " + ("confidence: interior mean, min; endpoints" if classifier else ""))
    for p in PATHS:
        m = result.measures[p]
        conf = (f"  {m['confidence_mean']:.3f}, {m['confidence_min']:.3f}; {m['endpoint_confidence']:.3f}"
                if classifier else "")
        print(f"{p:>7}  {m['step_length']:>11.3f}{conf}")
    print(f"step_length: mean L2 distance between consecutive images over {count(a.numel(), 'pixel value')} in [0, 1]")
    print(f"wrote {args.output}")


def _need_data(args) -> None:
    if args.data is None:
        raise VaelabError("give --data SPEC: the dataset whose images to use")


def _index(value: str | None, flag: str) -> int | None:
    """An image index given to --from / --to (which take sentences for sentence models)."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise VaelabError(f"{flag} {value!r}: an image model takes an image index (0-based) here") from None


def _interpolation_ends(args, model, run: Path):
    """The two images: each end from an index of the split or from an image file."""
    from .viz.interpolation import read_image_files

    ends = [("--from", args.start, "--from-file", args.from_file), ("--to", args.end, "--to-file", args.to_file)]
    for flag, index, file_flag, file in ends:
        if (index is None) == (file is None):
            raise VaelabError(f"give one of {flag} I (an image of the split) and {file_flag} FILE")
    ds = _eval_images(args, model, run) if args.start is not None or args.end is not None else None
    images = []
    for flag, index, _, file in ends:
        if file is not None:
            images.append(read_image_files([file], model.input_shape)[0])
        elif not 0 <= index < len(ds):
            raise VaelabError(f"{flag} {index}: the split has {len(ds)} images, so indices run from 0 to {len(ds) - 1}")
        else:
            images.append(ds.x[index])
    return images


def cmd_demo(args) -> None:
    from . import evaluate, train
    from .data import load_dataset

    _use_threads(args)
    out = Path(args.out)
    i = 2
    while (out / "run.json").exists() or (out / "checkpoints").exists():
        out = Path(f"{args.out}-{i}")
        i += 1
    print(f"training a VAE (64-128-8, Bernoulli, dynamic binarization) on scikit-learn's digits -> {out}")
    result = train("vae", "digits", out, model_config={"latent_dim": 8, "hidden": [128]},
                   config={"epochs": args.epochs, "batch_size": 64, "lr": 3e-3, "val_size": 0.1,
                           "threads": args.threads})
    test = load_dataset("digits", "test").x
    m = evaluate(result.model, test, nll_samples=500, binarize="dynamic")
    print(f"test: ELBO {m['elbo']:.2f} nats, NLL (500 importance samples) {m['nll']:.2f} nats, "
          f"{m['active_units']}/8 active units")
    for name in ("samples.png", "reconstructions.png", "model.safetensors", "metrics.jsonl"):
        print(f"  {out / name}")


def cmd_curves(args) -> None:
    from .viz.curves import plot_curves

    _use_threads(args)
    print(f"wrote {plot_curves(args.runs, args.output)}")


def cmd_report(args) -> None:
    from .viz.report import make_report

    _use_threads(args)
    path = make_report(args.runs, args.output, data=args.data, data_dir=args.data_dir,
                       eval_images=args.eval_images, nll_samples=args.nll_samples, label=args.label,
                       seed=args.seed)
    print(f"wrote {path}")
def cmd_serve(args) -> None:
    from .serve import serve
    from .threads import set_threads

    if args.threads < 0:
        raise VaelabError(f"--threads must be 0 (all cores) or more, got {args.threads}")
    set_threads(args.threads)
    serve(args.runs, args.data, host=args.host, port=args.port, data_dir=args.data_dir,
          map_size=args.map_size, pool_size=args.pool_size)


def cmd_manifold(args) -> None:
    from .threads import set_threads
    from .viz.manifold import draw_manifold

    set_threads(args.threads)
    output, lines = draw_manifold(args.run, args.output, n=args.n, dims=args.dims, data=args.data,
                                  data_dir=args.data_dir, split=args.split, limit=args.limit, by_class=args.by_class,
                                  label=args.label, coverage=args.coverage, seed=args.seed)
    for line in lines:
        print(line)
    print(f"wrote {output}")


def cmd_scatter(args) -> None:
    from .threads import set_threads
    from .viz.latent_map import draw_latent_map

    set_threads(args.threads)
    m = draw_latent_map(args.run, args.data, args.output, split=args.split, limit=args.limit,
                        projection=args.projection, seed=args.seed, data_dir=args.data_dir, save_codes=args.save_codes)
    if m.note:
        print(f"note: {m.note}", file=sys.stderr)
    print(f"wrote {args.output}" + (f" and {args.save_codes}" if args.save_codes else ""))


def cmd_analogies(args) -> None:
    from . import load
    from .viz.analogy import analogy_view, save_analogies
    from .viz.grids import choose_images

    run = Path(args.run)
    model = load(run)
    view = analogy_view(model)  # a model without labels is refused before any data is read
    ds = _eval_images(args, model, run)
    if ds.y is None:
        raise VaelabError(f"{args.data} has no labels; analogies encode each digit with its own class")
    picked = ds.subset(choose_images(len(ds), 8 if args.n is None and args.indices is None else args.n,
                                     args.indices, args.seed))
    save_analogies(model, picked.x, picked.y, args.output)
    print(f"wrote {args.output} ({count(len(picked), 'digit')} × {view.num_classes} classes)")


def _cmd_convert(args) -> None:
    from .speech_cli import cmd_convert
    cmd_convert(args)


def _cmd_compare(args) -> None:
    from .compare.cli import cmd_compare
    cmd_compare(args)


@contextlib.contextmanager
def _one_line_warnings(quiet: bool = False):
    """Show vaelab's warnings as ``warning: <message>`` lines on stderr, every time (none
    where ``quiet``: every rank of a job reads the same data, rank 0 says it once)."""
    from .errors import VaelabWarning, one_line

    with warnings.catch_warnings():
        original = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, VaelabWarning):
                if not quiet:
                    print(f"warning: {one_line(str(message))}", file=sys.stderr)
            else:
                original(message, category, filename, lineno, file, line)

        warnings.simplefilter("always", VaelabWarning)
        warnings.showwarning = show
        yield


def _check_model_name(argv: list[str]) -> None:
    """``vaelab train nope``: one line naming the models, not argparse's usage block."""
    from .models import model_class

    if len(argv) > 1 and argv[0] == "train" and not argv[1].startswith("-"):
        model_class(argv[1])


def _refuse_unknown(parser, args, extra: list[str]) -> None:
    """Unrecognised arguments end the command as ``parse_args`` would, except an option of
    another model, which is named as such: ``model 'vae' has no setting 'tied'``."""
    if getattr(args, "command", None) == "train":
        for word in extra:
            flag = word.split("=", 1)[0]
            key, having = _option_elsewhere(flag)
            if having:
                raise VaelabError(f"model '{args.model}' has no setting '{key}' ({flag} is an option of "
                                  f"{', '.join(having)})")
    leaf = _command_parser(parser, args)
    leaf.error(f"unrecognized arguments: {' '.join(extra)}{_closest_option(leaf, extra)}")


def _command_parser(parser, args):
    """The (sub-)parser of the command ``args`` ran, ``vaelab train vae``'s for ``train vae``."""
    while True:
        chosen = [a.choices[getattr(args, a.dest)] for a in parser._actions
                  if isinstance(a, argparse._SubParsersAction) and getattr(args, a.dest, None) in a.choices]
        if not chosen:
            return parser
        parser = chosen[0]


def _closest_option(parser, extra: list[str]) -> str:
    """`` (did you mean --epochs?)`` for ``--epoch``, as settings files are answered."""
    import difflib

    flags = [s for s in parser._option_string_actions if s.startswith("--")]
    for word in extra:
        if word.startswith("--"):
            close = difflib.get_close_matches(word.split("=", 1)[0], flags, n=1)
            if close:
                return f" (did you mean {close[0]}?)"
    return ""


def _option_elsewhere(flag: str) -> tuple[str | None, list[str]]:
    """The field a flag sets and the models that have it: ``--no-tied`` -> tied, [linear-ae]."""
    from .models import model_class, names

    key, having = None, []
    for name in names():
        for o in options(model_class(name).Config):
            if flag == o.flag or (o.kind is bool and flag == "--no-" + o.name):
                key, having = o.key, having + [name]
    return key, having


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        _check_model_name(words)
        args, extra = parser.parse_known_args(words)
        if extra:
            _refuse_unknown(parser, args, extra)
    except VaelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    handlers = {"train": cmd_train, "train-prior": cmd_train_prior, "eval": cmd_eval, "sample": cmd_sample,
                "edit": cmd_edit,
                "reconstruct": cmd_reconstruct, "encode": cmd_encode, "demo": cmd_demo, "compare": _cmd_compare,
                "traverse": cmd_traverse, "interpolate": cmd_interpolate, "manifold": cmd_manifold,
                "scatter": cmd_scatter, "curves": cmd_curves, "report": cmd_report, "serve": cmd_serve,
                "analogies": cmd_analogies,
                "profiles": cmd_profiles, "convert": _cmd_convert}
    quiet = _other_rank()
    try:
        with _one_line_warnings(quiet), _no_stdout(quiet):
            check_outputs(args.command, args)
            handlers[args.command](args)
    except VaelabError as exc:
        code = getattr(exc, "exit_code", 2)  # 130 when Ctrl-C stopped training
        if code == 130 and argv is None:
            _leaving()
        if quiet:
            _other_rank_error(exc)
        else:
            print(f"error: {in_option_names(str(exc), getattr(exc, 'config', None))}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        if argv is None:
            _leaving()
        if not quiet:
            print("interrupted", file=sys.stderr)
        return 130
    return 0


@contextlib.contextmanager
def _no_stdout(quiet: bool):
    """Results printed once per job, not once per rank."""
    if not quiet:
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


RANK0_GRACE = 1.0  # seconds


def _other_rank_error(exc: VaelabError) -> None:
    """Another rank's error, said after a moment and only if it is this rank's alone: torchrun
    ends every rank once one exits, so where all ranks failed alike rank 0 has said it and
    this process is stopped before it repeats it."""
    time.sleep(RANK0_GRACE)
    if not getattr(exc, "job_wide", False):
        print(f"error: rank {os.environ.get('RANK')}: {exc}", file=sys.stderr)


def _other_rank() -> bool:
    """Whether this process is a rank other than 0 of a ``torchrun`` job: rank 0 speaks for
    the job; another rank says only what went wrong on it alone."""
    return os.environ.get("RANK", "0") not in ("", "0") and os.environ.get("WORLD_SIZE", "1") not in ("", "1")


def _leaving() -> None:
    """The command was stopped and its checkpoint is saved: a further Ctrl-C has nothing left
    to stop, and landing in the interpreter's shutdown it would only print a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
