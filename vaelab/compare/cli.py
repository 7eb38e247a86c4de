"""``vaelab compare NAME``: one subcommand per comparison, each a thin call of its function."""
from __future__ import annotations

import argparse

from ..errors import VaelabError
from .conditional import EPOCHS as CVAE_EPOCHS, NETWORK as CVAE_NETWORK


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _epochs_by_model(text: str) -> dict:
    """``pixelcnn=2,vqvae=20`` → {"pixelcnn": 2, "vqvae": 20}."""
    out = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected NAME=EPOCHS,NAME=EPOCHS, got {text!r}") from None
    return out


def _levels(text: str) -> dict:
    """``gaussian=0.1,0.3;masking=0.5`` → {"gaussian": (0.1, 0.3), "masking": (0.5,)}."""
    out = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        kind, _, values = part.partition("=")
        try:
            out[kind.strip()] = tuple(float(v) for v in values.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected KIND=l1,l2;KIND=l1, got {text!r}") from None
        if not out[kind.strip()]:
            raise argparse.ArgumentTypeError(f"no levels given for {kind.strip()!r} in {text!r}")
    return out


# name: (help, [(flag, dest, type, default, help)])
SPECIFIC = {
    "pca": ("PCA vs linear-ae, ae and conv-ae: test MSE per latent size, principal angles", [
        ("--latent-dims", "latent_dims", _ints, (2, 5, 10, 20, 50), "latent sizes"),
        ("--models", "models", _names, ("pca", "linear-ae", "ae", "conv-ae"), "models to compare"),
        ("--epochs", "epochs", int, 10, "training epochs per model"),
        ("--test-size", "test_size", int, 0, "first N test images (0 = all)"),
    ]),
    "codes-2d": ("2-D PCA map beside autoencoder / VAE codes, coloured by label", [
        ("--run", "runs", str, None, "use this trained run's codes (repeatable) instead of training models; "
                                     "it must have been trained on --data"),
        ("--models", "models", _names, ("ae", "vae"), "models to train when no --run is given"),
        ("--latent-dim", "latent_dim", int, 2, "code size of the trained models (>2 is projected)"),
        ("--projection", "projection", str, "pca", "projection of codes wider than 2: pca or tsne"),
        ("--epochs", "epochs", int, 10, "training epochs per model"),
        ("--test-size", "test_size", int, 5000, "first N test images plotted (0 = all)"),
    ]),
    "denoise": ("PSNR of noisy input vs DAE vs plain AE for each corruption and level", [
        ("--corruptions", "corruptions", _names, ("gaussian", "masking", "salt-pepper"), "corruption types"),
        ("--levels", "levels", _levels, None, "levels per type, e.g. 'gaussian=0.1,0.3;masking=0.5' "
                                              "(default: gaussian 0.1,0.3,0.5; masking 0.25,0.5,0.75; "
                                              "salt-pepper 0.1,0.2,0.4)"),
        ("--epochs", "epochs", int, 10, "training epochs per model"),
        ("--test-size", "test_size", int, 0, "first N test images (0 = all)"),
    ]),
    "generate": ("an AE cannot generate, a VAE can: samples scored by a digit classifier", [
        ("--latent-dim", "latent_dim", int, 16, "code size of both models"),
        ("--samples", "samples", int, 2000, "decoded samples scored per model"),
        ("--epochs", "epochs", int, 20, "training epochs per model"),
    ]),
    "interpolation": ("AE vs VAE paths between test images of different classes: step length, classifier confidence", [
        ("--run", "runs", str, None, "use this trained run (repeatable) instead of training an ae and a vae; "
                                     "it must have been trained on --data"),
        ("--latent-dim", "latent_dim", int, 16, "code size of the trained models"),
        ("--pairs", "pairs", int, 300, "pairs of test images (seeded, different classes)"),
        ("--steps", "steps", int, 10, "points per path, endpoints included"),
        ("--epochs", "epochs", int, 5, "training epochs per model"),
    ]),
    "mixtures": ("Bernoulli / Gaussian mixtures vs VAEs by test log-likelihood (MNIST, Frey Face)", [
        ("--components", "components", _ints, (10, 100, 500), "Bernoulli mixture component counts"),
        ("--em-iters", "em_iters", int, 50, "maximum EM iterations"),
        ("--vae-run", "vae_run", str, None, "score this VAE run, trained on MNIST, instead of training one"),
        ("--vae-epochs", "vae_epochs", int, 50, "epochs of the MNIST VAE trained when no --vae-run"),
        ("--nll-samples", "nll_samples", int, 1000, "importance samples for the VAEs' log-likelihood"),
        ("--frey-components", "frey_components", _ints, (1, 5, 10, 20), "Gaussian mixture component counts"),
        ("--frey-vae-epochs", "frey_vae_epochs", int, 1000, "maximum epochs of the Frey Face VAE (early-stopped)"),
        ("--test-size", "test_size", int, 0, "first N MNIST test images (0 = all)"),
    ]),
    "conditional": ("cvae checks (sample / analogy accuracy, style kept) and -log p(x|y) beside a VAE's -log p(x)", [
        ("--run", "runs", str, None, "use this trained cvae run instead of training one; it must have been "
                                     "trained on --data"),
        ("--vae-run", "vae_run", str, None, "use this unconditional VAE run (the cvae's networks and latent size) "
                                            "instead of training one"),
        ("--latent-dim", "latent_dim", int, CVAE_NETWORK["latent_dim"], "latent size of the trained cvae and vae "
                                                                       "(the cvae's default)"),
        ("--hidden", "hidden", _ints, tuple(CVAE_NETWORK["hidden"]), "hidden layer sizes of the trained cvae and vae"),
        ("--beta", "beta", float, CVAE_NETWORK["beta"], "KL weight of the trained cvae (its default; the vae is "
                                                        "trained with 1)"),
        ("--epochs", "epochs", int, CVAE_EPOCHS, "training epochs per model (the cvae's default)"),
        ("--nll-samples", "nll_samples", int, 5000, "importance samples for -log p(x|y) and -log p(x)"),
        ("--sources", "sources", int, 200, "test digits used as analogy sources"),
        ("--per-class", "per_class", int, 100, "samples per class scored by the classifier"),
        ("--split", "split", str, "val", "images measured: val (the run's validation split, else the last "
                                         "--val-size training images, held out of training; for choosing "
                                         "settings) or test (the final figures)"),
        ("--val-size", "val_size", int, 10000, "with --split val and no --run: training images held out"),
        ("--test-size", "test_size", int, 0, "first N images of --split measured (0 = all)"),
    ]),
    "completion": ("Sohn et al.: complete digits from 1, 2 or 3 quadrants; NN, CVAE, GSNN, hybrid by CLL", [
        ("--quadrants", "quadrants", _ints, (1, 2, 3), "settings: quadrants given"),
        ("--models", "models", _names, ("nn", "cvae", "gsnn", "hybrid"), "models per setting"),
        ("--epochs", "epochs", int, 100, "maximum training epochs per model"),
        ("--patience", "patience", int, 3, "early stopping: epochs without a better validation loss"),
        ("--lr-schedule", "lr_schedule", str, "constant",
         "constant, or cosine (decays over --epochs; pair it with --patience 0)"),
        ("--alpha", "alpha", float, 0.5, "the hybrid's weight of L_CVAE"),
        ("--latent-dim", "latent_dim", int, 200, "z size of the CVAE family"),
        ("--hidden", "hidden", _ints, (500, 500), "hidden layer sizes of every network"),
        ("--ks", "ks", _ints, (100, 1000), "importance sample counts of the CLL"),
        ("--val-size", "val_size", int, 10000, "validation images: the last N of the training split"),
        ("--test-size", "test_size", int, 0, "first N test images (0 = all)"),
    ]),
    "ssl": ("Kingma et al.'s table: MNIST test error of M1, M2 and M1+M2 with N labels, mean ± std over label seeds", [
        ("--labels", "labels", _ints, (100, 600, 1000, 3000), "labelled training images N (N/10 per class)"),
        ("--seeds", "seeds", int, 3, "labelled subsets drawn per N (label seeds 0..S-1)"),
        ("--models", "models", _names, ("m1", "m2", "m1m2"), "models per N"),
        ("--epochs", "epochs", int, 100, "training epochs of each m2 (on images, or on M1's codes for m1m2)"),
        ("--m1-epochs", "m1_epochs", int, 100, "training epochs of M1's VAE, trained once for every m1 and m1m2 row"),
        ("--alpha", "alpha", float, 0.1, "m2's weight of the classification term per example"),
        ("--lr", "lr", float, 3e-4, "Adam learning rate"),
        ("--labelled-batch-size", "labelled_batch_size", int, 0, "labelled rows per step (0 = in proportion)"),
        ("--test-size", "test_size", int, 0, "first N test images (0 = all)"),
    ]),
    "dvae": ("denoising VAE vs VAE: test -log p(x) per noise level, the bound question, robustness to noise", [
        ("--levels", "levels", _floats, (0.0, 0.05, 0.1, 0.2, 0.3), "MNIST noise levels (pixel probabilities)"),
        ("--corruption", "corruption", str, "salt-pepper", "MNIST corruption: salt-pepper or masking"),
        ("--frey-levels", "frey_levels", _floats, (0.0, 0.025, 0.05, 0.1, 0.2, 0.3), "Frey Face Gaussian σ levels"),
        ("--corruptions-m", "corruptions_m", int, 1, "M, corruptions per image in the DVAE objective"),
        ("--samples-k", "samples_k", int, 1, "K, codes per corruption in the DVAE objective"),
        ("--epochs", "epochs", int, 20, "training epochs per MNIST model"),
        ("--frey-epochs", "frey_epochs", int, 1000, "maximum epochs per Frey Face model (early-stopped)"),
        ("--nll-samples", "nll_samples", int, 1000, "importance samples for -log p(x)"),
        ("--test-size", "test_size", int, 0, "first N MNIST test images (0 = all)"),
    ]),
    "aae-vs-vae": ("AAE vs VAE 2-D codes under one prior: MMD² of test codes to the prior, Parzen log-likelihood", [
        ("--priors", "priors", _names, ("normal", "mixture"), "priors compared: normal, mixture"),
        ("--hidden", "hidden", _ints, (1000, 1000), "hidden layer sizes of every encoder and decoder"),
        ("--epochs", "epochs", int, 20, "training epochs per model"),
        ("--lr", "lr", float, 1e-3, "Adam learning rate (every phase)"),
        ("--batch-size", "batch_size", int, 100, "minibatch size"),
        ("--adversarial-lr-scale", "adversarial_lr_scale", float, 0.5,
         "the aae's discriminator and generator learning rates as multiples of --lr"),
        ("--val-size", "val_size", int, 1000, "last N training images held out: validation and Parzen's σ"),
        ("--parzen-samples", "parzen_samples", int, 10000, "decoded prior draws of the Parzen estimate"),
        ("--sigmas", "sigmas", _floats, None, "Parzen window widths tried on the held-out images "
                                              "(default: 0.05 to 0.30 by 0.01)"),
        ("--mmd-points", "mmd_points", int, 0, "test codes and prior draws in MMD² (0 = every test image)"),
        ("--test-size", "test_size", int, 0, "first N test images (0 = all)"),
    ]),
    "discrete": ("VAE, IWAE-size VAE, PixelCNN, VQ-VAE + prior, Gumbel-softmax VAE: test -log p(x) or its bound, "
                 "samples of each", [
        ("--models", "models", _names, ("vae", "vae-iwae", "pixelcnn", "vqvae", "catvae"), "models in the table"),
        ("--epochs", "epochs", int, 10, "training epochs per model"),
        ("--model-epochs", "model_epochs", _epochs_by_model, None,
         "epochs of particular models instead of --epochs, e.g. pixelcnn=2,vqvae=20"),
        ("--prior-epochs", "prior_epochs", int, 10, "training epochs of the VQ-VAE's PixelCNN prior"),
        ("--nll-samples", "nll_samples", int, 1000, "importance samples for -log p(x)"),
        ("--test-size", "test_size", int, 0, "first N test images (0 = all)"),
    ]),
    "text-collapse": ("the plain sentence VAE beside each fix for posterior collapse (PTB): -ELBO, IS-NLL, KL, "
                      "I(x;z), active units, KL and reconstruction curves", [
        ("--variants", "variants_", _names, (), "variants to train (default: plain, anneal, cyclical, "
                                                "word-dropout, free-bits, anneal+dropout)"),
        ("--epochs", "epochs", int, 6, "training epochs per variant"),
        ("--sentences", "sentences", int, 3000, "first N PTB training sentences (--train-size overrides)"),
        ("--eval-size", "eval_size", int, 200, "first N sentences of --split measured (0 = all)"),
        ("--split", "split", str, "val", "val (ptb.valid: choices) or test (ptb.test, read once for a table)"),
        ("--hidden", "hidden", int, 128, "LSTM state size"),
        ("--embedding", "embedding", int, 128, "word embedding size"),
        ("--latent-dim", "latent_dim", int, 32, "size of z"),
        ("--nll-samples", "nll_samples", int, 500, "importance samples for -log p(x)"),
        ("--curve-points", "curve_points", int, 20, "points per epoch on the KL and reconstruction curves"),
    ]),
    "secret-code": ("seq3's middle sequence without and with the language-model prior (PTB): its perplexity "
                    "under the lstm-lm against real sentences of its length, copied words, reconstruction", [
        ("--lm-run", "lm_run", str, None, "run directory of the trained lstm-lm (prior and judge)"),
        ("--weights", "weights", _floats, (0.0, 0.1, 0.3), "language-model prior weights"),
        ("--epochs", "epochs", int, 4, "training epochs per weight"),
        ("--sentences", "sentences", int, 6000, "first N PTB training sentences (--train-size overrides)"),
        ("--eval-size", "eval_size", int, 200, "first N sentences of --split measured (0 = all)"),
        ("--split", "split", str, "val", "val (ptb.valid: choices) or test (ptb.test, read once for a table)"),
        ("--hidden", "hidden", int, 128, "LSTM state size"),
        ("--embedding", "embedding", int, 64, "word embedding size"),
        ("--ratio", "ratio", float, 0.5, "middle sequence length as a fraction of the words"),
        ("--word-keep", "word_keep", float, 0.5, "probability that a reconstructor input word is kept (else <unk>)"),
        ("--topic-weight", "topic_weight", float, 10.0, "weight of the topic loss (0 = none)"),
        ("--tau", "tau", float, 0.5, "Gumbel-softmax temperature"),
        ("--tau-decay", "tau_decay", float, 0.0, "τ annealing rate per epoch, floored at 0.1 (0 = a constant τ)"),
        ("--draw", "draw", str, "greedy", "training middle words: greedy (q's most probable word, as evaluation "
                                          "reads; chosen on validation) or sample (Gumbel-max draws from q, the "
                                          "paper's)"),
        ("--batch-size", "batch_size", int, 32, "sentences per training step"),
        ("--lr", "lr", float, 0.0, "Adam learning rate (0 = seq3's default, 1e-3)"),
    ]),
    "voice-conversion": ("speech runs on FSDD: speaker and digit judges on real, resynthesised, reconstructed and "
                         "converted clips; speaker x speaker matrix; spectrogram panels", [
        ("--run", "runs", str, None, "a trained speech run (repeatable): ae-speech, adain-vc, vq-vc on fsdd"),
        ("--griffin-lim-iters", "griffin_lim_iters", int, 0, "Griffin-Lim iterations (0 = the front end's)"),
        ("--sources-per-pair", "sources_per_pair", int, 0,
         "source clips per speaker pair, spread over the digits (0 = all 50 test clips)"),
        ("--split", "split", str, "val", "clips measured: val (the runs' validation clips, left out of the judges' "
                                         "fit; for choosing settings) or test (the test takes, for the final table)"),
    ]),
}
# comparisons whose claim is about these data
FIXED_DATA = {"mixtures": "binarized MNIST and Frey Face", "dvae": "binarized MNIST and Frey Face",
              "text-collapse": "PTB", "secret-code": "PTB", "voice-conversion": "FSDD (the speakers and takes are its)"}


def add_compare_parser(sub) -> None:
    p = sub.add_parser("compare", help="the lectures' comparisons: tables (stdout + file) and figures",
                       description="Run one comparison; it writes table.md, results.json and PNG figures "
                                   "into --out and reuses models it trained there before.")
    which = p.add_subparsers(dest="comparison", required=True, metavar="COMPARISON")
    for name, (help_text, options) in SPECIFIC.items():
        # no abbreviations: --data must never be read as --data-dir
        q = which.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        q.add_argument("--out", required=True, metavar="DIR", help="directory for tables, figures and models")
        q.add_argument("--data", default=None if name in FIXED_DATA else "mnist", metavar="SPEC",
                       help=argparse.SUPPRESS if name in FIXED_DATA else
                       "mnist, fashion-mnist, kmnist, digits, frey-faces, cifar10, folder:PATH or npy:PATH (default: mnist)")
        q.add_argument("--data-dir", default=None, metavar="DIR",
                       help="dataset directory (default: $VAELAB_DATA_DIR, else the user cache directory)")
        for flag, dest, kind, default, text in options:
            if dest == "runs":
                q.add_argument(flag, dest=dest, action="append", default=[], metavar="DIR", help=text)
                continue
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            q.add_argument(flag, dest=dest, type=kind, default=default,
                           metavar="DIR" if flag.endswith("-run") else None,
                           help=f"{text} (default: {shown})" if default is not None else text)
        if name == "completion":
            q.add_argument("--binarize", action="store_true",
                           help="binarized targets (the paper's setting) instead of grey levels (Pyro's)")
        if name == "secret-code":
            q.add_argument("--init-from-lm", action="store_true",
                           help="start each seq3's embedding from the --lm-run language model's")
            q.add_argument("--copy", action="store_true",
                           help="a pointer-generator reconstructor (See et al. 2017; beyond SEQ³'s): it may copy "
                                "the middle words it attends to")
            q.add_argument("--point", action="store_true",
                           help="a pointer compressor (Vinyals et al. 2015; beyond SEQ³'s): each middle word is "
                                "one of the input's, chosen by its attention over the sentence")
        if name in ("mixtures", "dvae"):
            q.add_argument("--no-frey", dest="frey", action="store_false", help="skip the Frey Face part")
        q.add_argument("--train-size", type=int, default=0, help="first N training images (default: 0 = all)")
        q.add_argument("--seed", type=int, default=0, help="seed for models, noise and samples (default: 0)")
        q.add_argument("--threads", type=int, default=0, help="CPU threads (default: 0 = all cores)")
        q.add_argument("--no-progress", action="store_true", help="hide training progress bars")


def cmd_compare(args) -> None:
    from . import COMPARISONS

    settings = {k: v for k, v in vars(args).items() if k not in ("command", "comparison", "out", "no_progress")}
    if args.comparison in FIXED_DATA:
        if settings.pop("data") is not None:
            raise VaelabError(f"compare {args.comparison} is defined on {FIXED_DATA[args.comparison]} only; "
                              "it takes no --data (drop it)")
    if args.comparison == "denoise" and settings.get("levels"):
        unknown = sorted(set(settings["levels"]) - set(settings["corruptions"]))
        if unknown:
            raise VaelabError(f"--levels names {', '.join(unknown)}, which is not in --corruptions")
    if settings.get("sigmas", 0) is None:  # not given: the comparison's own grid
        del settings["sigmas"]
    result = COMPARISONS[args.comparison](args.out, progress=not args.no_progress, **settings)
    result.write(args.out)
    print(f"data: {result.settings.get('data')}")
    print(result.markdown())
    print(f"written: {args.out}/table.md, {args.out}/results.json, " + ", ".join(result.figures))
