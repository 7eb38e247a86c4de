"""The ``vaelab`` command. Each command is a thin call of one public Python function."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
import warnings
from pathlib import Path

from .errors import VaelabError
from .words import count

# (flag, config key, parser, help); help gets the model's default appended.
MODEL_OPTIONS = [
    ("--latent-dim", "latent_dim", int, "size of the latent code z"),
    ("--hidden", "hidden", "ints", "hidden layer sizes, e.g. 400 or 200,200 (conv: dense layers after the convolutions)"),
    ("--activation", "activation", str, "relu, tanh, elu, leaky-relu, softplus, gelu, silu or sigmoid"),
    ("--backbone", "backbone", str, "mlp or conv"),
    ("--channels", "channels", "ints", "conv backbone channels per stride-2 stage, e.g. 32,64"),
    ("--likelihood", "likelihood", str, "bernoulli, gaussian (fixed --sigma) or gaussian-learned"),
    ("--sigma", "sigma", float, "σ of the fixed-σ gaussian likelihood"),
    ("--beta", "beta", float, "weight of the KL term (1 = the ELBO; >1 = β-VAE)"),
    ("--kl-warmup", "kl_warmup_epochs", float, "epochs over which the KL weight rises linearly from 0 to β (0 = off)"),
    ("--init", "init", str, "weight initialisation: torch or glorot"),
    ("--loss", "loss", str, "reconstruction loss: mse (squared error summed over pixels) or bernoulli (cross-entropy with logits)"),
    ("--corruption", "corruption", str, "input corruption while training (denoising): none, gaussian, masking or salt-pepper"),
    ("--noise-level", "noise_level", float, "corruption strength: σ for gaussian, the per-pixel probability for masking and salt-pepper"),
    ("--tied", "tied", "bool", "decoder matrix = encoder matrix transposed (--no-tied: a separate decoder matrix)"),
    ("--center", "center", "bool", "subtract the training-data mean before encoding, so the optimum is PCA's subspace (--no-center: no offset)"),
    ("--pretrain-epochs", "pretrain_epochs", int, "greedy layer-wise pretraining epochs per layer before fine-tuning (0 = off)"),
    ("--pretrain-lr", "pretrain_lr", float, "Adam learning rate of the layer-wise pretraining"),
    ("--pretrain-batch-size", "pretrain_batch_size", int, "minibatch size of the layer-wise pretraining"),
]
TRAIN_OPTIONS = [
    ("--epochs", "epochs", int, "training epochs (with --resume: the new total)"),
    ("--batch-size", "batch_size", int, "minibatch size"),
    ("--lr", "lr", float, "Adam learning rate"),
    ("--lr-schedule", "lr_schedule", str, "constant, cosine, or iwae (10^(-i/7) for 3^i epochs, compressed to --epochs)"),
    ("--adam-eps", "adam_eps", float, "Adam epsilon"),
    ("--weight-decay", "weight_decay", float, "Adam weight decay"),
    ("--grad-clip", "grad_clip", float, "clip the gradient norm to this value (0 = off)"),
    ("--seed", "seed", int, "seed for weights, data order, binarization and sampling"),
    ("--binarize", "binarize", str, "auto (dynamic for Bernoulli likelihoods), dynamic, static or none"),
    ("--val-size", "val_size", float, "validation split carved from train: a fraction (<1) or a count"),
    ("--test-fraction", "test_fraction", float, "hold out this fraction of folder:/npy: data without a test split as its test split (fixed seed; eval and reconstruct reuse it)"),
    ("--patience", "patience", int, "stop after this many epochs without a better validation loss (0 = off)"),
    ("--threads", "threads", int, "CPU threads (0 = all cores)"),
    ("--device", "device", str, "auto (CUDA when present, else CPU), cpu or cuda[:N]"),
    ("--nonfinite", "nonfinite", str, "on a NaN/inf loss or gradient: stop (naming the step and term) or skip the step"),
    ("--nonfinite-lr-factor", "nonfinite_lr_factor", float, "with --nonfinite skip: multiply the learning rate by this at each skip"),
    ("--nonfinite-max-skips", "nonfinite_max_skips", int, "with --nonfinite skip: stop after this many skipped steps"),
]


RESUME_MAY_CHANGE = ("epochs", "threads", "device")


def _ints(text: str) -> tuple[int, ...]:
    if text.strip().lower() == "none":  # no layers, e.g. --hidden none for a conv backbone
        return ()
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 200,200, got {text!r}") from None


def _add(group, options, defaults) -> None:
    for flag, key, kind, text in options:
        default = getattr(defaults, key, None)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        group.add_argument(flag, dest=key, type=_ints if kind == "ints" else kind, default=None,
                           metavar={int: "N", float: "X", str: "NAME"}.get(kind, "N[,N...]"),
                           help=f"{text} (default: {shown}{_family_defaults(key)})")


def _family_defaults(key: str) -> str:
    """``; 0.003 for linear-ae``: the model families whose own training default replaces TrainConfig's."""
    from .models import model_class, names

    own = {n: model_class(n).train_defaults[key] for n in names() if key in model_class(n).train_defaults}
    return "".join(f"; {value} for {name}" for name, value in own.items())


def _shown(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value else "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _add_model_options(group, options) -> None:
    """Model options for every registered model; the help names the models that have
    each setting and their defaults, e.g. ``(default: 20 for vae; 32 for ae, dae)``."""
    from .models import model_class, names

    order = sorted(names(), key=lambda n: (n != "vae", n))
    defaults = {n: {f.name: f.default for f in dataclasses.fields(model_class(n).Config)} for n in order}
    for flag, key, kind, text in options:
        having = [n for n in order if key in defaults[n]]
        groups: dict[str, list[str]] = {}
        for n in having:
            groups.setdefault(_shown(defaults[n][key]), []).append(n)
        if len(groups) == 1:
            (value,) = groups
            scope = "" if len(having) == len(order) else (
                f"{having[0]} only; " if len(having) == 1 else f"{', '.join(having)}; ")
            note = f"{scope}default: {value}"
        else:
            note = "default: " + "; ".join(f"{v} for {', '.join(ns)}" for v, ns in groups.items())
        if kind == "bool":
            group.add_argument(flag, dest=key, action=argparse.BooleanOptionalAction, default=None,
                               help=f"{text} ({note})")
        else:
            group.add_argument(flag, dest=key, type=_ints if kind == "ints" else kind, default=None,
                               metavar={int: "N", float: "X", str: "NAME"}.get(kind, "N[,N...]"),
                               help=f"{text} ({note})")


def _data_args(p, required: bool = True) -> None:
    p.add_argument("--data", required=required, metavar="SPEC",
                   help="mnist, fashion-mnist, kmnist, digits, frey-faces, folder:PATH or npy:PATH")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="dataset directory (default: $VAELAB_DATA_DIR, else the user cache directory)")


class _Parser(argparse.ArgumentParser):
    """No prefix matching (``--epoch 1`` is not ``--epochs 1``): a typo must fail, not guess.
    Sub-parsers are built with the parent's class, so every (sub-)command inherits this."""

    def __init__(self, *args, allow_abbrev: bool = False, **kwargs):
        super().__init__(*args, allow_abbrev=allow_abbrev, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .training import TrainConfig

    parser = _Parser(prog="vaelab", description="Train, measure and look inside autoencoders.")
    parser.add_argument("--version", action="version", version=f"vaelab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model and write its run directory",
                       description="Train a model on a dataset. The run directory records the full "
                                   "configuration, checkpoints every epoch and metrics.jsonl.")
    from .models import names
    p.add_argument("model", help=f"model name: {', '.join(names())}")
    _data_args(p)
    p.add_argument("--out", required=True, metavar="DIR", help="run directory to create (or continue with --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint "
                                                          "(where none was written yet, start it)")
    p.add_argument("--config", metavar="FILE", help="JSON or TOML file of settings (keys are the option names, "
                                                   "with dashes or underscores); options given on the command line win")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    _add_model_options(p.add_argument_group("model settings (each names the models it applies to)"), MODEL_OPTIONS)
    _add(p.add_argument_group("training settings"), TRAIN_OPTIONS, TrainConfig)

    p = sub.add_parser("eval", help="measure a trained model (ELBO, IS-NLL, active units, MSE, PSNR)",
                       description="Evaluate a run or model directory on a dataset split.")
    p.add_argument("run", help="run or model directory")
    _data_args(p)
    p.add_argument("--split", default="test", choices=("train", "test"), help="dataset split (default: test)")
    p.add_argument("--nll-samples", type=int, default=0, metavar="K",
                   help="importance samples for the log-likelihood estimate, e.g. 5000; VAE-family "
                        "models only (default: 0 = skip)")
    p.add_argument("--binarize", default="auto", choices=("auto", "dynamic", "static", "none"),
                   help="binarize the evaluation images once with a fixed seed; auto follows the run "
                        "(default: auto)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="evaluate the first N images only (default: all)")
    p.add_argument("--batch-size", type=int, default=500, help="images per evaluation batch (default: 500)")
    p.add_argument("--seed", type=int, default=0, help="seed of the posterior samples (default: 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: 0 = all cores)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress report of the log-likelihood estimate (a bar on a terminal, else a "
                        "line every 5 %% on stderr)")

    p = sub.add_parser("sample", help="decode prior samples into a PNG grid")
    p.add_argument("run", help="run or model directory")
    p.add_argument("-n", type=int, default=64, help="number of samples (default: 64)")
    p.add_argument("-o", "--output", default="samples.png", help="PNG file to write (default: samples.png)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--codes", default="prior", choices=("prior", "fitted"),
                   help="codes to decode: prior, z ~ N(0, I); or fitted, z ~ a Gaussian fitted to the codes of "
                        "the training images (deterministic autoencoders, which have no prior) (default: prior)")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="with --codes fitted: the training data (default: the data recorded in the run)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="dataset directory (default: $VAELAB_DATA_DIR, else the user cache directory)")

    p = sub.add_parser("reconstruct", help="PNG grid of inputs above their reconstructions")
    p.add_argument("run", help="run or model directory")
    _data_args(p)
    p.add_argument("--split", default="test", choices=("train", "test"), help="dataset split (default: test)")
    p.add_argument("-n", type=int, default=None, help="number of images (default: 32)")
    p.add_argument("--indices", type=_ints, default=None, metavar="I[,I...]",
                   help="show these images of the split (0-based, e.g. 3,17,42) instead of the first N")
    p.add_argument("--seed", type=int, default=None,
                   help="show N images drawn at random with this seed instead of the first N")
    p.add_argument("-o", "--output", default="reconstructions.png", help="PNG file (default: reconstructions.png)")

    p = sub.add_parser("encode", help="write a dataset's codes (posterior means, log-variances) and labels to .npz",
                       description="Encode a dataset split with a trained model and write one .npz of named "
                                   "arrays, row i for image i: mean and logvar (VAE) or code (autoencoders), "
                                   "and y (labels, where the data has them). Read it with numpy.load.")
    p.add_argument("run", help="run or model directory")
    _data_args(p)
    p.add_argument("--split", default="test", choices=("train", "test"), help="dataset split (default: test)")
    p.add_argument("-o", "--output", default="codes.npz", help=".npz file to write (default: codes.npz)")
    p.add_argument("--binarize", default="auto", choices=("auto", "dynamic", "static", "none"),
                   help="binarize the images once with a fixed seed before encoding; auto follows the run, "
                        "none encodes grey levels (default: auto)")
    p.add_argument("--batch-size", type=int, default=500, help="images per batch (default: 500)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")

    p = sub.add_parser("demo", help="train a small VAE on scikit-learn's bundled digits (no download)")
    p.add_argument("--out", default="runs/demo", help="run directory; a free name is chosen if it exists "
                                                     "(default: runs/demo)")
    p.add_argument("--epochs", type=int, default=40, help="training epochs (default: 40)")

    from .compare.cli import add_compare_parser
    add_compare_parser(sub)
    return parser


def _settings_file(path: str) -> dict:
    from .io import read_settings

    return read_settings(path, "--config file")


def _flag(key: str) -> str:
    """The command-line option that sets config field ``key`` (``kl_warmup_epochs`` -> ``--kl-warmup``)."""
    flags = {k: f for f, k, _, _ in MODEL_OPTIONS + TRAIN_OPTIONS}
    return flags.get(key, "--" + key.replace("_", "-"))


def _key_spellings(keys: set[str]) -> dict[str, str]:
    """Every settings-file key -> its field: the option name with dashes or underscores
    (what ``--help`` shows) and the field name (what ``run.json`` records)."""
    spellings = {}
    for key in keys:
        name = _flag(key)[2:]
        for spelling in (name, name.replace("-", "_"), key, key.replace("_", "-")):
            spellings[spelling] = key
    return spellings


def _valid_keys(keys: set[str]) -> str:
    """``latent-dim/latent_dim, kl-warmup/kl_warmup (kl_warmup_epochs), lr, ...`` for an error."""
    shown = []
    for key in sorted(keys, key=lambda k: _flag(k)):
        name = _flag(key)[2:]
        text = "/".join(dict.fromkeys((name, name.replace("-", "_"))))
        shown.append(text if name.replace("-", "_") == key else f"{text} ({key})")
    return ", ".join(shown)


def _file_settings(path: str, keys: set[str]) -> dict:
    """The settings in a ``--config`` file, keyed by config field; unknown or doubled keys are refused."""
    import difflib

    raw = _settings_file(path)
    spellings = _key_spellings(keys)
    unknown = [k for k in raw if k not in spellings]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(spellings), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise VaelabError(f"--config {path}: unknown setting(s) {', '.join(sorted(unknown))}{hint}; valid keys "
                          f"are the option names, with dashes or underscores: {_valid_keys(keys)}")
    settings, given_as = {}, {}
    for spelling, value in raw.items():
        key = spellings[spelling]
        if key in settings:
            raise VaelabError(f"--config {path}: '{given_as[key]}' and '{spelling}' both set {_flag(key)}; keep one")
        settings[key], given_as[key] = value, spelling
    return settings


def cmd_train(args) -> None:
    from . import train
    from .io import read_run_record
    from .models import model_class
    from .training import TrainConfig, train_config

    model_cls = model_class(args.model)
    model_keys = {f.name for f in dataclasses.fields(model_cls.Config)} - {"input_shape"}
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    file_settings = _file_settings(args.config, model_keys | train_keys) if args.config else {}
    given = {k: v for k, v in vars(args).items() if v is not None}
    for _, key, _, _ in MODEL_OPTIONS:
        if key in given and key not in model_keys:
            raise VaelabError(f"model '{args.model}' has no setting '{key}'")
    model_settings = {k: v for k, v in {**file_settings, **given}.items() if k in model_keys}
    train_settings = {k: v for k, v in {**file_settings, **given}.items() if k in train_keys}
    out = Path(args.out)
    model_config = model_settings or None
    config = None
    if args.resume:
        recorded = read_run_record(out / "run.json") if (out / "run.json").exists() else None
        if recorded:
            for key, value in model_settings.items():
                old = recorded["config"].get(key)
                if _norm(old) != _norm(value):
                    raise VaelabError(f"--resume continues the recorded run; {_flag(key)} "
                                      f"differs (recorded {old}, given {value})")
            model_config = None
            merged = {**recorded["train"], **train_settings}
            changed = [k for k in train_settings if k not in RESUME_MAY_CHANGE
                       and _norm(recorded["train"].get(k)) != _norm(train_settings[k])]
            if changed:
                k = changed[0]
                raise VaelabError(f"--resume continues the recorded run; {_flag(k)} differs "
                                  f"(recorded {recorded['train'].get(k)}, given {train_settings[k]}); only {', '.join('--' + k for k in RESUME_MAY_CHANGE)} may change")
            config = TrainConfig.from_dict(merged, where="training settings")
    if config is None:
        config = train_config(model_cls, train_settings)
    result = train(args.model, args.data, out, model_config=model_config, config=config,
                   data_dir=args.data_dir, resume=args.resume, progress=not args.no_progress)
    best = "" if result.best_val is None else f"; best validation loss {result.best_val:.2f} at epoch {result.best_epoch}"
    if result.already_finished:
        print(_nothing_to_do(result, best))
        return
    skipped = f"; {count(result.skipped_steps, 'non-finite step')} skipped" if result.skipped_steps else ""
    print(f"trained {count(result.epochs_run, 'epoch')}{best}{skipped}{' (stopped early)' if result.stopped_early else ''}")
    print(f"run directory: {result.run_dir}  (model.safetensors, samples.png, reconstructions.png, metrics.jsonl)")


def _nothing_to_do(result, best: str) -> str:
    """What ``--resume`` of a finished run says instead of a training summary: how to go on."""
    done = f"nothing left to do: the run in {result.run_dir} finished {count(result.epochs_run, 'epoch')}{best}"
    if result.stopped_early:
        return f"{done}; it stopped early (no better validation loss for --patience epochs)"
    return f"{done}; to train longer, pass --resume --epochs N with N larger than {result.epochs_run}"


def _norm(value):
    return list(value) if isinstance(value, (list, tuple)) else value


TRAINING_IMAGES = "computed on training images (the train split), not on held-out data"


def _eval_data(args, model, run: Path):
    """The images of ``--split`` as the run saw them (its carved test split, if any)."""
    from .training import run_split

    ds = run_split(run, args.data, args.split, data_dir=args.data_dir)
    if tuple(ds.shape) != tuple(model.input_shape):
        raise VaelabError(f"{args.data} images have shape {list(ds.shape)}, the model expects "
                          f"{list(model.input_shape)}")
    x = ds.x[: args.limit] if getattr(args, "limit", 0) else ds.x
    return x


def _eval_images(args, model, run: Path):
    """As :func:`_eval_data`, with a note on stderr when the images are training images."""
    x = _eval_data(args, model, run)
    if args.split == "train":
        print(f"note: {TRAINING_IMAGES}", file=sys.stderr)
    return x


def _binarization(setting: str, model, run: Path) -> str:
    if setting != "auto":
        return setting
    run_json = run / "run.json"
    if run_json.exists():
        try:
            return json.loads(run_json.read_text())["resolved"]["binarize"]
        except (json.JSONDecodeError, KeyError, TypeError):
            pass
    return "dynamic" if getattr(model.config, "likelihood", None) == "bernoulli" else "none"


def cmd_eval(args) -> None:
    from . import evaluate, load
    from .training.trainer import resolve_device, set_threads

    if args.nll_samples < 0:
        raise VaelabError(f"--nll-samples must be >= 0 (0 skips the estimate), got {args.nll_samples}")
    set_threads(args.threads)
    run = Path(args.run)
    model = load(run, device=resolve_device(args.device))
    x = _eval_data(args, model, run)
    result = evaluate(model, x, nll_samples=args.nll_samples, binarize=_binarization(args.binarize, model, run),
                      batch_size=args.batch_size, seed=args.seed, progress=not args.no_progress)
    held_out = args.split == "test"
    result = {"run": str(run), "data": args.data, "split": args.split, "held_out": held_out,
              **({} if held_out else {"note": TRAINING_IMAGES}), **result}
    if args.json:
        print(json.dumps(result))
        return
    if not held_out:
        print(f"{'note':>14}  {TRAINING_IMAGES}")
    for key in ("n", "k", "binarize", "elbo", "recon", "kl", "mse", "psnr", "nll", "nll_stderr", "bits_per_dim",
                "active_units", "nll_seconds"):
        if key in result:
            value = result[key]
            print(f"{key:>14}  {value:.4f}" if isinstance(value, float) else f"{key:>14}  {value}")


def cmd_sample(args) -> None:
    from . import load
    from .codes import training_code_gaussian
    from .viz.grids import save_samples

    if args.n < 1:
        raise VaelabError(f"-n must be at least 1, got {args.n}")
    model = load(args.run)
    codes = None
    if args.codes == "fitted":
        codes, spec, count = training_code_gaussian(args.run, model, args.data, args.data_dir)
        print(f"decoding codes drawn from the Gaussian fitted to the codes of {count} training images of {spec}")
    elif hasattr(model, "code_gaussian"):
        print(f"note: an '{model.name}' has no prior; decoding z ~ N(0, I), codes it was never trained on "
              "(--codes fitted draws from a Gaussian fitted to its training codes)")
    save_samples(model, args.output, n=args.n, seed=args.seed, codes=codes)
    print(f"wrote {args.output}")


def cmd_reconstruct(args) -> None:
    from . import load
    from .data import binarize_static
    from .evaluation import TEST_BINARIZATION_SEED
    from .viz.grids import choose_images, save_reconstructions

    run = Path(args.run)
    model = load(run)
    x = _eval_images(args, model, run)
    x = x[choose_images(len(x), args.n, args.indices, args.seed)]
    if _binarization("auto", model, run) != "none":
        x = binarize_static(x, TEST_BINARIZATION_SEED)
    save_reconstructions(model, x, args.output)
    print(f"wrote {args.output}")


def cmd_encode(args) -> None:
    from . import export_codes

    arrays = export_codes(args.run, args.data, args.output, split=args.split, data_dir=args.data_dir,
                          binarize=args.binarize, batch_size=args.batch_size, device=args.device)
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items())
    print(f"wrote {args.output} ({shapes})")


def cmd_demo(args) -> None:
    from . import evaluate, train
    from .data import load_dataset

    out = Path(args.out)
    i = 2
    while (out / "run.json").exists() or (out / "checkpoints").exists():
        out = Path(f"{args.out}-{i}")
        i += 1
    print(f"training a VAE (64-128-8, Bernoulli, dynamic binarization) on scikit-learn's digits -> {out}")
    result = train("vae", "digits", out, model_config={"latent_dim": 8, "hidden": [128]},
                   config={"epochs": args.epochs, "batch_size": 64, "lr": 3e-3, "val_size": 0.1})
    test = load_dataset("digits", "test").x
    m = evaluate(result.model, test, nll_samples=500, binarize="dynamic")
    print(f"test: ELBO {m['elbo']:.2f} nats, NLL (500 importance samples) {m['nll']:.2f} nats, "
          f"{m['active_units']}/8 active units")
    for name in ("samples.png", "reconstructions.png", "model.safetensors", "metrics.jsonl"):
        print(f"  {out / name}")


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"train": cmd_train, "eval": cmd_eval, "sample": cmd_sample,
                "reconstruct": cmd_reconstruct, "encode": cmd_encode, "demo": cmd_demo, "compare": _cmd_compare}
    quiet = _other_rank()
    try:
        with _one_line_warnings(quiet), _no_stdout(quiet):
            handlers[args.command](args)
    except VaelabError as exc:
        code = getattr(exc, "exit_code", 2)  # 130 when Ctrl-C stopped training
        if code == 130 and argv is None:
            _leaving()
        if quiet:
            _other_rank_error(exc)
        else:
            print(f"error: {exc}", file=sys.stderr)
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
