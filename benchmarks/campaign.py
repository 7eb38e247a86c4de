"""The reproduction campaign: every family's headline figure run toward the paper's length,
one row after another, within a CPU-hour budget per row (issue 27's table).

    python benchmarks/campaign.py [--only ROW] [--runs DIR]      # run (or carry on)
    python benchmarks/campaign.py --status                       # done / running / left, time
    python benchmarks/campaign.py --confirm ROW [ROW ...]        # a stale figure still holds? (no retraining)
    python benchmarks/campaign.py --rerun ROW [--only ROW]       # train and measure a measured row again

Each row trains with ``vaelab train FAMILY --profile paper ...`` under ``nice`` (and, when the
campaign leads its own session, its scheduling group lowered too: :func:`yield_to_foreground`), one thread, one
job at a time, each step a subprocess. A row whose paper length exceeds its budget trains in
chunks (``--resume --epochs N``, extending) until its recorded training time (the per-epoch
``cpu_seconds`` of metrics.jsonl, or ``seconds`` where a line lacks them) reaches the budget; then the test figure is measured once, on the
best weights (the epoch validation chose), with ``vaelab eval ... --split test --json``.

Everything the campaign knows comes from the run directories and from small files it writes
atomically beside them (RUNS/ROW/progress.json after every step, RUNS/ROW/test.json and
RUNS/ROW/result.json when measured), so it survives SIGKILL at any moment: the next start
resumes every run where its last checkpoint left it. ``benchmarks/reproduction_table.py``
turns the results into docs/reproduction.md.

Run directories are scratch (ignored by git, gone with their machine); what a row measured is
also kept in benchmarks/results/ROW.json, committed with the table (``save_result``). A row
whose result is there and whose directory is not is done; its figure can no longer be confirmed
(there are no weights to evaluate), so a later change to its paths leaves it stale until
``--rerun ROW`` trains it again. A row whose directory exists without a result is in progress.

A headline that is a comparison (AAE's Parzen log-likelihood, the sentence and speech tables,
PCA against the autoencoders, ...) is a row with a ``Compare``: its step is
``vaelab compare NAME ... --out RUNS/compare/KEY`` (with ``--split test`` where the comparison
has one), its figure the column ``metric`` of the results.json row that ``pick`` names. Rows
that read the same comparison share its directory and run it once; a finished comparison (its
results.json and the campaign's marker beside it, same command) is never run again, and a killed
one, run again, reuses the models it had trained. A row may train first and hand its run to
the comparison (``{run}``), or read another row's run (``{row:ID}``, e.g. seq3 reads the
language model of ``lstm-lm-ptb``) and wait until that row is measured. A family with no
measurable headline is a row with a ``reason``: listed in the table, never run.

A figure measured before a change to its paths is stale (``stale``). ``--confirm ROW`` vouches
that it still holds without training it again: the recorded evaluation at HEAD gives the same
figure, and a short training probe (``--probe-epochs``) saves bit-identical weights and metrics
with the measured commit's code (a temporary git worktree) and with HEAD's; result.json then
records ``confirmed``, and staleness counts from there (``confirm_row``). The campaign does this
itself for every stale row it passes (``refresh``): it confirms a trained row, and runs a
comparison's row again (after the same training probe where the row trains), keeping the
earlier comparison under RUNS/superseded/; a row it cannot bring up to HEAD stays stale.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RUNS = REPO / "runs" / "campaign"
RESULTS = REPO / "benchmarks" / "results"  # committed copies of each row's result.json
CODE = (".", ":(exclude)benchmarks/results", ":(exclude)docs")  # what a probe needs committed: not what the campaign writes
SHARED_DATA = REPO.parent / "shared" / "data"
HOUR = 3600.0
sys.path.insert(0, str(REPO))  # this checkout's vaelab, in this process and (PYTHONPATH) in every step
CHUNK_HOURS = 1.0  # at most this much training per subprocess, so estimates and progress stay fresh


@dataclass(frozen=True)
class Compare:
    """A row's test step as a comparison: ``vaelab compare NAME *options --out RUNS/compare/KEY``."""
    name: str                       # the comparison (`vaelab compare NAME`)
    options: tuple[str, ...] = ()   # its options; "{run}": the row's trained run, "{row:ID}": another row's run
    pick: tuple[tuple[str, object], ...] = ()  # the results.json row whose columns hold these values
    key: str = ""                   # its directory under RUNS/compare (rows sharing one run it once); default: row id


@dataclass(frozen=True)
class Row:
    """One line of the reproduction table: what to run, what it is compared with, how long."""
    id: str
    family: str
    title: str
    train: tuple[str, ...]          # the row's own options after `vaelab train FAMILY --profile P`
    metric: str                     # key of `vaelab eval --json`'s output
    paper: str                      # the paper's figure as printed, with provenance tag
    goal: float | str | None        # reached when the figure (in `unit`) is <= goal (>= with better="higher")
    unit: str                       # "%" (metric is a fraction, shown x100), nats, perplexity, dB, degrees, MSE, goals
    protocol: str                   # the paper's protocol and where it is written down
    budget_hours: float             # CPU-hours on one thread (issue 27's table)
    paper_epochs: int               # the paper's length; 0: not in the sources, train until the budget
    eval: tuple[str, ...] = ()      # extra `vaelab eval` options (--nll-samples 5000)
    data: str = "mnist"
    profile: str = "paper"
    prior: tuple[str, ...] | None = None  # `vaelab train-prior RUN` options, for a two-stage row
    earlier: str = ""               # measurements in the docs that are not the campaign's (markdown)
    note: str = ""
    first_chunk: int = 1            # epochs of the first chunk, before seconds per epoch are known
    compare: Compare | None = None  # the test step is this comparison (the figure: column `metric` of its row)
    check: str = ""                 # the test step is `python -m CHECK RUN --data D --split test` (JSON)
    trains: bool = True             # False: the comparison trains its own models (no `vaelab train` step)
    better: str = "lower"           # "lower" or "higher": which side of `goal` reaches it
    also: tuple[str, ...] = ()      # other families this row's headline stands for (vq-prior with vqvae)
    reason: str = ""                # why the family has no measurable headline: listed, never run
    group: str = "campaign"         # "campaign": issue 27's long rows; "headline": every other family's figure
    # `goal`: a number in `unit`; a column name of the picked comparison row (that row's value,
    # e.g. PCA's MSE beside the autoencoder's); or None: reported, with no goal to reach

    def figure(self, value: float) -> float:
        return 100.0 * value if self.unit == "%" else value

    @property
    def families(self) -> tuple[str, ...]:
        return (self.family, *self.also)

    @property
    def measured_by(self) -> str:
        return "compare" if self.compare else "check" if self.check else "eval"


# Comparisons that several rows read (run once, in RUNS/compare/KEY).
AAE_VS_VAE = Compare("aae-vs-vae", ("--hidden", "512,512", "--epochs", "8", "--adversarial-lr-scale", "0.2"),
                     key="aae-vs-vae")
PCA = Compare("pca", (), pick=(("latent", 10),), key="pca")
COMPLETION = Compare("completion", (), key="completion")
DISCRETE = Compare("discrete", ("--models", "vqvae,catvae", "--epochs", "5", "--prior-epochs", "3"), key="discrete")
_VC = "docs/speech.md#measured"


def _vc(run_name: str) -> Compare:
    """The voice-conversion table of one trained speech run, on the test takes."""
    return Compare("voice-conversion", ("--run", "{run}"),
                   pick=(("audio", f"{run_name}: conversions, 30 speaker pairs"),))


_SSL = "docs/semi-supervised.md"
ROWS: list[Row] = [  # campaign order: the gap we expect to close per CPU-hour, largest first
    Row("m2-100", "m2", "M2, 100 labels, label seed 0", ("--labels", "100", "--label-seed", "0"),
        "classification_error", "11.97 ± 1.71 % [S]", 11.97, "%",
        "Kingma et al. 2014, Table 1: MNIST test error, 100 class-balanced labels, 50k/10k/10k; official "
        "code dpkingma/nips14-ssl [O], 3000 epochs (paper-tables.md §3)", 4.0, 3000,
        earlier=f"34.91 ± 1.81 % after 10 epochs, seeds 0–2 ([{_SSL}]({_SSL.split('/')[1]}"
                "#error-the-papers-table-on-a-budget-profile))"),
    # The language model next: its 30 epochs fit its budget (7.5 min an epoch on one quiet thread), so
    # it can close its goal, and seq3's row needs it.
    Row("lstm-lm-ptb", "lstm-lm", "LSTM language model, PTB (Bowman et al.'s baseline)", (), "ppl",
        "116 perplexity [M]", 116.0, "perplexity",
        "Bowman et al. 2016: test perplexity of the LSTM LM (paper-tables.md §12, from memory, beside NLL ≈ 100 "
        "nats a sentence: the two agree at about 21.0 tokens a sentence, ptb.test's 20.9 words without <eos>; "
        "vaelab counts words + <eos>, on which 100 nats is perplexity 95.8); the profile follows Texar's "
        "optimiser, 30 epochs", 4.0, 30, data="ptb",
        earlier="253.2 perplexity after 1 epoch ([text.md](text.md))"),
    # -- headline rows of every other family, each at most half a CPU-hour (run before the long rows)
    Row("cmma-goals", "cmma", "CMMA, attribute goals (latent 50, β 1.5)", ("--latent-dim", "50", "--beta", "1.5"),
        "met", "– (the paper reports no MNIST figures)", 7, "goals",
        "docs/conditional.md's seven goals for generating and editing digits from class, thickness and slant "
        "(r ≥ 0.9, class accuracy ≥ 95 %, the other attribute moved ≤ 1/4 std), the setting chosen on validation "
        "images; checked once on test digits by `python -m vaelab.evaluation.attribute_checks`", 0.5, 20,
        check="vaelab.evaluation.attribute_checks", better="higher", group="headline",
        earlier="6 of 7 goals on test digits ([conditional.md](conditional.md#chosen-again-on-validation-images))"),
    Row("aae-parzen-normal", "aae", "AAE, Parzen log-likelihood, N(0, I) prior (2-D codes)", (), "parzen_nats",
        "340 ± 2 nats [S]", 340.0, "nats",
        "Makhzani et al. 2015, Table 1: Parzen-window log-likelihood of MNIST test images under 10,000 samples "
        "(their likelihood AAE, not 2-D codes); here `vaelab compare aae-vs-vae` as docs/aae.md measured it "
        "(784-512-512-2, 8 epochs), σ chosen on 1,000 held-out training images", 0.5, 8,
        compare=dataclasses.replace(AAE_VS_VAE, pick=(("prior", "normal"), ("model", "aae"))), trains=False,
        better="higher", group="headline", profile="",
        earlier="146.20 nats ([aae.md](aae.md#measured))"),
    Row("aae-parzen-mixture", "aae", "AAE, Parzen log-likelihood, mixture prior (2-D codes)", (), "parzen_nats",
        "340 ± 2 nats [S]", 340.0, "nats", "as the N(0, I) row, the 10-Gaussian mixture prior (same comparison)",
        0.0, 8, compare=dataclasses.replace(AAE_VS_VAE, pick=(("prior", "mixture"), ("model", "aae"))),
        trains=False, better="higher", group="headline", profile="",
        earlier="128.09 nats ([aae.md](aae.md#measured))"),
    Row("vae-prior-mmd", "vae-prior", "VAE under the AAE's mixture prior: MMD² of its test codes", (), "mmd2",
        "– (the comparison's own, not a paper's)", None, "MMD²",
        "docs/aae.md: the aae's codes should match the mixture better than this VAE's (a one-sample Monte-Carlo "
        "KL); reported beside the aae's (same comparison)", 0.0, 8,
        compare=dataclasses.replace(AAE_VS_VAE, pick=(("prior", "mixture"), ("model", "vae-prior"))),
        trains=False, group="headline", profile="",
        earlier="0.2870, the aae's 0.0109 ([aae.md](aae.md#measured))"),
    Row("dae-masking", "dae", "DAE, masking 25 %: PSNR of denoised test digits", (), "psnr_dae",
        "– (Vincent et al. 2008 report no PSNR)", "psnr_ae", "dB",
        "docs/comparisons.md: a dae denoises better than a plain ae of the same shape (784-512-256-64, 10 epochs) "
        "on the same corrupted test images; goal: above the plain ae's PSNR", 0.5, 10,
        compare=Compare("denoise", ("--corruptions", "masking", "--levels", "masking=0.25"),
                        pick=(("corruption", "masking"), ("level", 0.25))),
        trains=False, better="higher", group="headline", profile="",
        earlier="21.36 dB, plain ae 18.25 ([comparisons.md](comparisons.md#denoising))"),
    Row("cvae-samples", "cvae", "cvae, class accuracy of label-conditioned samples", (), "value",
        "– (Kingma et al. report no sample accuracy)", 97.0, "%",
        "issue 10's goal in docs/conditional.md: ≥ 97 % of label-conditioned samples read as their class by a "
        "digit classifier trained apart; `vaelab compare conditional` at the cvae's defaults (784-400-16, "
        "β = 4, 40 epochs), its first 1,000 test images", 0.5, 40,
        compare=Compare("conditional", ("--test-size", "1000"),
                        pick=(("model", "cvae"), ("measure", "sample_accuracy"))),
        trains=False, better="higher", group="headline", profile="",
        earlier="99.0 % on validation digits, defaults ([conditional.md](conditional.md"
                "#the-defaults-chosen-on-validation-digits))"),
    Row("stacked-ae-mse", "stacked-ae", "stacked-ae, test MSE (Hinton & Salakhutdinov's 784-1000-500-250-30)", (),
        "mse", "– (not in the sources)", None, "MSE",
        "the paper profile (layer-wise pretraining, then fine-tuning with Adam); the docs claim no figure, so the "
        "test MSE per pixel is reported", 0.5, 0, group="headline"),
    Row("binvae-nll", "binvae", "binvae, 32 bits (straight-through): test −log p(x)", ("--bits", "32",
        "--straight-through"), "nll", "– (not in the sources)", None, "nats",
        "docs/discrete.md's binary code (`--bits 32 --straight-through`), importance-sampled −log p(x) with hard "
        "codes, k = 1,000; no paper figure for binary codes is in the sources: reported", 0.5, 0,
        eval=("--nll-samples", "1000"), group="headline"),
    Row("ae-speech-vc", "ae-speech", "ae-speech, conversions read as the source speaker", ("--batch-size", "32"),
        "speaker: read as source", "– (the control of the voice-conversion table)", None, "%",
        "docs/speech.md: a plain autoencoder has nothing to swap, so its conversions stay with the source "
        "(reported, expected high); trained as documented (10 epochs, batch 32), judged on the test takes", 0.3, 10,
        compare=_vc("run"), group="headline", profile="", data="fsdd",
        earlier=f"79.7 % as source, 4.1 % as target ([speech.md]({_VC.split('/')[1]}))"),
    Row("vq-vc-vc", "vq-vc", "vq-vc, conversions read as the target speaker", ("--batch-size", "32"),
        "speaker: read as target", "– (no paper figure on FSDD)", None, "%",
        "docs/speech.md's table, trained as documented (10 epochs, batch 32), judged on the test takes; reported",
        0.3, 10, compare=_vc("run"), group="headline", profile="", data="fsdd",
        earlier=f"18.7 % ([speech.md]({_VC.split('/')[1]}))"),
    Row("adain-vc-vc", "adain-vc", "adain-vc, conversions read as the target speaker", ("--batch-size", "32"),
        "speaker: read as target", "– (no paper figure on FSDD)", 85.0, "%",
        "docs/speech.md's goal: ≥ 85 % of conversions (30 speaker pairs × 50 test takes, one reference take) read "
        "as the target by a speaker judge trained on real takes; trained as documented (40 epochs, batch 32)",
        0.75, 40, compare=_vc("run"), better="higher", group="headline", profile="", data="fsdd",
        earlier=f"69.3 % after 20 epochs with the critic before its spectral norm, 48.3 % before the critic, 69.3 % "
                f"with the paper's own-clip training ([speech.md]({_VC.split('/')[1]}))"),
    # The sentence VAE before the long image rows: one epoch closes more of its gap than any other row's
    Row("text-vae-ptb", "text-vae", "text-vae, PTB (Texar's reproduction of Bowman et al.)", (), "nelbo",
        "102.06–102.10 nats [P]", 102.1, "nats",
        "Texar examples/vae_text README: test −ELBO per sentence (recon + KL, one sample: a bound), LSTM 256, "
        "z 32, ≤ 100 epochs (paper-tables.md §12, confirmed)", 6.0, 100, data="ptb",
        earlier="127.30 nats after 1 epoch ([text.md](text.md))"),
    Row("seq3-secret-code", "seq3", "seq3 with the language-model prior (λ 0.4, pointer compressor): token accuracy",
        (), "token_accuracy", "– (Baziotis et al. report ROUGE on Gigaword)", 50.0, "%",
        "issue 26's goal in docs/text.md: with the prior, the middle sequence reads like text and the sentence "
        "comes back (token accuracy ≥ 50 %); `vaelab compare secret-code` as documented, judged by the "
        "lstm-lm-ptb row's language model, on the first 200 test sentences, with the setting chosen on "
        "validation sentences (the pointer compressor, λ 0.4, the whole of PTB for 2 epochs, the greedy training "
        "draw, the embedding from the language model, batch 16)", 0.75, 2,
        compare=Compare("secret-code", ("--lm-run", "{row:lstm-lm-ptb}", "--weights", "0.4", "--topic-weight", "10",
                                        "--point", "--draw", "greedy", "--init-from-lm", "--batch-size", "16",
                                        "--epochs", "2", "--sentences", "0", "--eval-size", "200"),
                        pick=(("lm_weight", 0.4),)),
        trains=False, better="higher", group="headline", profile="", data="ptb",
        earlier="33.5 % on test sentences (1.25× real perplexity), a 1-epoch language model "
                "([text.md](text.md#the-secret-code))"),
    Row("aae-semi-100", "aae-semi", "aae-semi, 100 labels, label seed 0", ("--labels", "100", "--label-seed", "0"),
        "classification_error", "1.90 ± 0.10 % [M]", 1.90, "%",
        "Makhzani et al. 2015: MNIST test error at 100 labels; the paper's text was not found, figure from "
        "memory (paper-tables.md §5); its length is not in the sources", 4.0, 0,
        earlier="8.71 ± 1.97 % after 7 epochs, seeds 0–2 ([aae.md](aae.md#measured-semi-supervised-100-labels))"),
    Row("m1m2-100", "m1m2", "M1 + M2, 100 labels, label seed 0", ("--labels", "100", "--label-seed", "0"),
        "classification_error", "3.33 ± 0.14 % [S]", 3.33, "%",
        "Kingma et al. 2014, Table 1: M1 (VAE 784-500-500-50) then M2 on its codes, official script "
        "run_2layer_ssl.py [O], 3000 epochs (paper-tables.md §3)", 4.0, 3000,
        earlier=f"6.42 % after 400 epochs, seed 0 ([semi-supervised.md]({_SSL.split('/')[1]}"
                "#error-m1--m2-with-100-labels-400-epochs))",
        note="the budget includes M1's VAE (its --m1-epochs)"),
    Row("aae-cluster-16", "aae-cluster", "aae-cluster, 16 clusters", ("--clusters", "16"),
        "cluster_error_most_confident", "9.55 ± 2.05 % [M]", 9.55, "%",
        "Makhzani et al. 2015: MNIST test error, each cluster named by its most confident training image "
        "(paper-tables.md §5, from memory)", 3.0, 0,
        earlier="33.27 % after 8 epochs, logit batch norm on ([aae.md](aae.md#measured-clustering))"),
    Row("aae-cluster-30", "aae-cluster", "aae-cluster, 30 clusters", ("--clusters", "30"),
        "cluster_error_most_confident", "4.10 ± 1.13 % [M]", 4.10, "%",
        "as the 16-cluster row, 30 clusters (paper-tables.md §5, from memory)", 3.0, 0,
        earlier="28.91 % after 8 epochs, logit batch norm on ([aae.md](aae.md#measured-clustering))"),
    Row("pixelcnn", "pixelcnn", "PixelCNN, binarized MNIST", (), "nll", "81.30 nats [M]", 81.3, "nats",
        "van den Oord et al. 2016 (PixelRNN paper): exact −log p(x) on binarized MNIST test images, quoted "
        "from memory (docs/pixelcnn.md); the profile is vaelab's long setting, not the paper's network", 6.0, 30,
        earlier="87.74 ± 0.21 nats after 2 epochs, `--profile quick` ([pixelcnn.md](pixelcnn.md"
                "#quality-binarized-mnist-test-set))"),
    Row("pixelrnn", "pixelrnn", "Row LSTM, binarized MNIST", (), "nll", "80.54 nats [M]", 80.54, "nats",
        "van den Oord et al. 2016: Row LSTM, exact −log p(x) on binarized MNIST, quoted from memory "
        "(docs/pixelcnn.md#pixel-rnns-row-lstm-pixelrnn); depth and schedule not in the sources", 3.0, 0),
    Row("vae-iwae-t1", "vae", "VAE (IWAE Table 1 architecture)", (), "nll", "86.76 nats [P]", 86.76, "nats",
        "Burda et al. 2016, Table 1: one stochastic layer, k = 1; test L_5000 on dynamically binarized "
        "MNIST, 3280 epochs (paper-tables.md §1, paper text)", 0.0, 3280, eval=("--nll-samples", "5000"),
        earlier="86.50 ± 0.23 nats after 900 epochs, `benchmarks/iwae_vae.py --profile long` "
                "([benchmarks.md](benchmarks.md#quality-the-iwae-papers-vae-on-mnist))",
        note="no campaign budget: the earlier measurement reached the goal; give it hours to confirm it "
             "on the paper profile"),
    # -- headline rows longer than half a CPU-hour
    Row("m1-100", "m1", "M1 (VAE codes + SVM), 100 labels, label seed 0", ("--labels", "100", "--label-seed", "0"),
        "classification_error", "11.82 ± 0.25 % [S]", 11.82, "%",
        "Kingma et al. 2014, Table 1: M1 + TSVM at 100 labels (here an RBF SVM on the codes, "
        "docs/semi-supervised.md); M1's length is not recorded (paper-tables.md §3)", 1.0, 0, group="headline",
        earlier=f"18.08 ± 1.22 % after 30 epochs, seeds 0–2 ([semi-supervised.md]({_SSL.split('/')[1]}"
                "#error-the-papers-table-on-a-budget-profile))"),
    Row("linear-ae-pca", "linear-ae", "linear-ae, largest angle to PCA's top-10 subspace", (), "max_angle_deg",
        "0° (Baldi & Hornik 1989: the optimum spans PCA's subspace)", 3.0, "degrees",
        "docs/comparisons.md: `vaelab compare pca`, every model 10 epochs on all 60,000 training images; goal "
        "a few degrees at most (3°)", 1.0, 10, compare=PCA, trains=False, group="headline", profile="",
        earlier="1.06° ([comparisons.md](comparisons.md#pca-vs-autoencoders))"),
    Row("ae-pca", "ae", "ae (784-512-256-10): test MSE per pixel against PCA's", (), "ae",
        "– (PCA's at the same code size)", "pca", "MSE",
        "docs/comparisons.md: a nonlinear autoencoder beats PCA at every code size; goal: below PCA's MSE at 10 "
        "(same comparison)", 0.0, 10, compare=PCA, trains=False, group="headline", profile="",
        earlier="0.0124 against PCA's 0.0341 ([comparisons.md](comparisons.md#pca-vs-autoencoders))"),
    Row("conv-ae-pca", "conv-ae", "conv-ae (32,64): test MSE per pixel against PCA's", (), "conv-ae",
        "– (PCA's at the same code size)", "pca", "MSE", "as the ae row (same comparison)", 0.0, 10, compare=PCA,
        trains=False, group="headline", profile="",
        earlier="0.0152 against PCA's 0.0341 ([comparisons.md](comparisons.md#pca-vs-autoencoders))"),
    Row("sohn-nn-q2", "sohn-nn", "Sohn et al.'s NN baseline, left half given: −log p(y|x)", (), "cll_k100",
        "61.9 nats (Pyro's reproduction)", "pyro_anchor", "nats",
        "Sohn et al. 2015 as Pyro's example reproduces it: complete the right half of MNIST test digits, grey "
        "targets, nats over the hidden pixels (exact for the NN); `vaelab compare completion` with its defaults "
        "(at most 100 epochs, patience 3)", 1.5, 100,
        compare=dataclasses.replace(COMPLETION, pick=(("quadrants", 2), ("model", "nn"))), trains=False,
        group="headline", profile="",
        earlier="62.21 nats ([conditional.md](conditional.md#structured-output-prediction-sohn-et-al))"),
    Row("sohn-cvae-q2", "sohn-cvae", "Sohn et al.'s CVAE, left half given: −ELBO of the hidden half", (),
        "target_nelbo", "51.0 nats (Pyro's reproduction)", "pyro_anchor", "nats", "as the NN row (same comparison)",
        0.0, 100, compare=dataclasses.replace(COMPLETION, pick=(("quadrants", 2), ("model", "cvae"))), trains=False,
        group="headline", profile="",
        earlier="47.16 nats ([conditional.md](conditional.md#structured-output-prediction-sohn-et-al))"),
    Row("sohn-gsnn-q2", "sohn-gsnn", "Sohn et al.'s GSNN, left half given: −log p(y|x), k = 100", (), "cll_k100",
        "– (no anchor in the sources)", None, "nats", "as the NN row (same comparison); reported", 0.0, 100,
        compare=dataclasses.replace(COMPLETION, pick=(("quadrants", 2), ("model", "gsnn"))), trains=False,
        group="headline", profile=""),
    Row("sohn-hybrid-q2", "sohn-hybrid", "Sohn et al.'s hybrid (α 0.5), left half given: −log p(y|x), k = 100", (),
        "cll_k100", "– (no anchor in the sources)", None, "nats", "as the NN row (same comparison); reported", 0.0,
        100, compare=dataclasses.replace(COMPLETION, pick=(("quadrants", 2), ("model", "hybrid"))), trains=False,
        group="headline", profile=""),
    Row("dvae-nll", "dvae", "DVAE, salt-and-pepper 0.1: test −log p(x) against the VAE's", (), "dvae_nll",
        "Im et al. 2017: the denoising criterion lowers −log p(x) (their tables were not found)", "vae_nll", "nats",
        "docs/dvae.md: `vaelab compare dvae` on binarized MNIST (784-200-50, 20 epochs, IS k = 1,000, clean "
        "encoder as proposal), Frey Face left out; goal: at or below the same-size VAE's", 1.0, 20,
        compare=Compare("dvae", ("--epochs", "20", "--nll-samples", "1000", "--no-frey"),
                        pick=(("data", "mnist"), ("level", 0.1))), trains=False, group="headline", profile="",
        earlier="above the VAE's 94.67 at every level ([comparisons.md](comparisons.md#denoising-vae-vs-vae))"),
    Row("vqvae-bound", "vqvae", "VQ-VAE (K 512) + PixelCNN prior: test bound on −log p(x)", (), "nats",
        "– (the paper reports no MNIST figure)", None, "nats",
        "docs/comparisons.md: `vaelab compare discrete` (5 epochs, the prior 3), the bound −log p(x|z_q) − "
        "log p(z_q) ≥ −log p(x); reported", 1.0, 5,
        compare=dataclasses.replace(DISCRETE, pick=(("model", "VQ-VAE (K = 512) + PixelCNN prior"),)), trains=False,
        also=("vq-prior",), group="headline", profile="",
        earlier="264.55 nats ([comparisons.md](comparisons.md#discrete-codes-and-autoregressive-models))"),
    Row("catvae-nll", "catvae", "Gumbel-softmax VAE (30 × 10): test −log p(x)", (), "nats",
        "– (Jang et al.'s length is not in the sources)", None, "nats",
        "as the VQ-VAE row (same comparison), importance-sampled with hard codes, k = 1,000; reported", 0.0, 5,
        compare=dataclasses.replace(DISCRETE, pick=(("model", "Gumbel-softmax VAE (30 × 10 categorical)"),)),
        trains=False, group="headline", profile="",
        earlier="118.51 nats ([comparisons.md](comparisons.md#discrete-codes-and-autoregressive-models))"),
]


# -- what the run directories say ---------------------------------------------------------
@dataclass
class RunState:
    epochs: int = 0                 # epochs of the run's last (or only) stage
    train_seconds: float = 0.0      # sum of every epoch's CPU seconds (epoch_cost), every stage, every retry
    epoch_seconds: list = field(default_factory=list)  # the last stage's, for the estimate
    best_epoch: int = 0
    stopped_early: bool = False


def _metrics(path: Path) -> list[dict]:
    """metrics.jsonl's lines; a line cut by a kill is skipped."""
    lines = []
    with contextlib.suppress(OSError):
        for text in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(text))
    return [line for line in lines if isinstance(line, dict) and "epoch" in line]


def main_stage(run: Path) -> Path:
    """The directory whose epochs `--epochs` counts: a run of stages' last stage, else the run."""
    if (run / "stages.json").exists():
        stages = sorted(p.parent for p in run.glob("*/run.json"))
        if stages:
            return stages[-1]
    return run


def checkpoint_counters(stage: Path) -> dict:
    """The loop counters in the stage's last checkpoint (read from its header, no torch)."""
    for name in ("last.safetensors", "last.prev.safetensors"):
        path = stage / "checkpoints" / name
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            with open(path, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(n))
            return json.loads(header["__metadata__"]["state"])["counters"]
    return {}


def epoch_cost(line: dict) -> float:
    """An epoch's share of the budget: the CPU seconds its process spent (on a shared machine
    a niced run waits for the cores, and waiting costs no budget), or its wall seconds where
    the line predates the trainer recording CPU time."""
    return float(line.get("cpu_seconds", line.get("seconds")) or 0)


def run_state(run: Path) -> RunState:
    st = RunState()
    for path in sorted(run.rglob("metrics.jsonl")) if run.exists() else []:
        st.train_seconds += sum(epoch_cost(line) for line in _metrics(path))
    stage = main_stage(run)
    counters = checkpoint_counters(stage)
    st.epochs = int(counters.get("epoch") or 0)
    st.best_epoch = int(counters.get("best_epoch") or 0)
    st.epoch_seconds = [epoch_cost(line) for line in _metrics(stage / "metrics.jsonl")]
    patience = _recorded_train(stage).get("patience") or 0
    st.stopped_early = bool(patience) and int(counters.get("bad_epochs") or 0) >= patience
    return st


def _recorded_train(stage: Path) -> dict:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((stage / "run.json").read_text()).get("train", {})
    return {}


# -- the row's own files --------------------------------------------------------------------
def row_dir(runs: Path, row: Row) -> Path:
    return runs / row.id


def results_dir(runs: Path) -> Path:
    """Where measured results outlive their run directories: benchmarks/results/ (committed)
    for the default runs, RUNS/results/ for any other (a test's, a user's own campaign)."""
    return RESULTS if runs.resolve() == DEFAULT_RUNS.resolve() else runs / "results"


def kept_result(runs: Path, row_id: str) -> dict | None:
    """The copy of the row's last measured result in ``results_dir``."""
    return read_json(results_dir(runs) / f"{row_id}.json")


def saved_result(runs: Path, row_id: str) -> dict | None:
    """The row's measured result as the campaign sees it: its own result.json, else the kept
    copy when the row's directory is gone (a directory without a result is a run in progress,
    a rerun's included: to be trained on, not skipped)."""
    rd = runs / row_id
    if rd.exists():
        return read_json(rd / "result.json")
    return kept_result(runs, row_id)


def shown_result(runs: Path, row_id: str) -> tuple[dict | None, bool]:
    """(the figure to show, whether the row is being measured again meanwhile): a rerun in
    progress shows its last measured figure until the new one replaces it."""
    result = saved_result(runs, row_id)
    if result is not None:
        return result, False
    kept = kept_result(runs, row_id)
    return kept, kept is not None


def save_result(runs: Path, result: dict) -> None:
    """result.json beside the run, and its kept copy in ``results_dir``."""
    write_json(runs / result["row"] / "result.json", result)
    write_json(results_dir(runs) / f"{result['row']}.json", result)


def rerun(runs: Path, row_id: str) -> str:
    """Make a measured row train and measure again: its result is moved aside (the kept copy
    stays until the new one replaces it) and its directory made, so the row reads as in progress."""
    rd = runs / row_id
    rd.mkdir(parents=True, exist_ok=True)
    if (rd / "result.json").exists():
        os.replace(rd / "result.json", rd / f"result.before-{int(time.time())}.json")
    return f"[{row_id}] runs again: its earlier figure stays in {results_dir(runs) / (row_id + '.json')} until then"


def read_json(path: Path) -> dict | None:
    with contextlib.suppress(OSError, ValueError):
        obj = json.loads(path.read_text())
        return obj if isinstance(obj, dict) else None
    return None


def write_json(path: Path, obj: dict) -> None:
    from vaelab.files import atomic_write_json

    atomic_write_json(path, obj)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- commands ---------------------------------------------------------------------------------
def train_command(row: Row, run: Path) -> list[str]:
    """The command a reader types (the campaign adds --resume --epochs N --threads 1); a row
    with profile "" trains at the family's defaults plus its own options, as its docs page did."""
    profile = ["--profile", row.profile] if row.profile else []
    return ["vaelab", "train", row.family, "--data", row.data, *profile, *row.train, "--out", str(run)]


def prior_command(row: Row, run: Path) -> list[str]:
    return ["vaelab", "train-prior", str(run), "--profile", row.profile, *(row.prior or ())]


def eval_command(row: Row, run: Path) -> list[str]:
    if row.check:  # a check module prints its JSON and runs on one thread of its own
        return ["python", "-m", row.check, str(run), "--data", row.data, "--split", "test"]
    return ["vaelab", "eval", str(run), "--data", row.data, "--split", "test", *row.eval, "--json"]


def compare_dir(runs: Path, row: Row) -> Path:
    """Where the row's comparison writes: RUNS/compare/KEY, shared by the rows that read it."""
    return runs / "compare" / (row.compare.key or row.id)


def has_split(name: str) -> bool:
    """Whether `vaelab compare NAME` takes --split (then the campaign passes --split test)."""
    from vaelab.compare.cli import SPECIFIC

    return any(flag == "--split" for flag, *_ in SPECIFIC.get(name, ("", []))[1])


def compare_command(row: Row, runs: Path, out: Path | None = None) -> list[str]:
    """``vaelab compare NAME`` with the row's options, ``{run}`` and ``{row:ID}`` filled in,
    ``--split test`` where the comparison has a split (the test set read once, for the table)."""
    c = row.compare

    def fill(option: str) -> str:
        if option == "{run}":
            return str(runs / row.id / "run")
        if option.startswith("{row:") and option.endswith("}"):
            return str(runs / option[5:-1] / "run")
        return option

    split = ["--split", "test"] if has_split(c.name) else []
    return ["vaelab", "compare", c.name, *map(fill, c.options), *split,
            "--out", str(out if out is not None else compare_dir(runs, row))]


def waits_for(row: Row) -> list[str]:
    """The rows whose runs this row's comparison reads (``{row:ID}``)."""
    return [o[5:-1] for o in (row.compare.options if row.compare else ()) if o.startswith("{row:") and o.endswith("}")]


def yield_to_foreground(autogroup: Path = Path("/proc/self/autogroup"), nice: int = 19, *,
                        own_session: bool | None = None) -> bool:
    """Lower this process's scheduling group to ``nice`` if the group is its own; whether it did.
    Linux shares the CPU between sessions' groups before ``nice`` counts within one, so a campaign
    started in a session of its own (``setsid``) competes with the user's work as an equal whatever
    each step's ``nice``; lowered, its group takes only what the user's work leaves. Steps inherit
    the group. Only a session leader owns its group: run from a terminal, the group is the
    terminal's, shared with the user's other work (which lowering would slow too, for as long as the
    terminal lives), and there ``nice`` already ranks the campaign below that work. Where there are
    no groups (or no permission) nothing changes."""
    if not (os.getsid(0) == os.getpid() if own_session is None else own_session):
        return False
    try:
        autogroup.write_text(f"{nice}\n")
        return True
    except OSError:
        return False


def run_step(cmd: list[str], log: Path, stdout: Path | None = None, tree: Path = REPO) -> dict:
    """One subprocess under nice, one thread; its wall and CPU seconds and exit status.
    ``vaelab ...`` runs the vaelab of ``tree`` (this checkout, or an older commit's worktree
    for ``--confirm``) with --threads 1; ``python -m MODULE ...`` (a check, one thread of its
    own) runs as written."""
    if cmd[0] == "python":
        argv = ["nice", "-n", "10", sys.executable, *cmd[1:]]
    else:
        argv = ["nice", "-n", "10", sys.executable, "-m", "vaelab", *cmd[1:], "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))}
    before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as err, open(stdout, "wb") if stdout else contextlib.nullcontext(err) as out:
        rc = subprocess.run(argv, stdout=out, stderr=err, env=env, cwd=tree).returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"command": " ".join(cmd), "rc": rc, "wall": round(time.monotonic() - t0, 3), "cpu": round(cpu, 3),
            "finished": _now()}


def record_step(rd: Path, step: dict) -> dict:
    """Append a finished step to progress.json (atomically) and return the new record."""
    progress = read_json(rd / "progress.json") or {"steps": []}
    progress["steps"].append(step)
    progress.update(cpu_seconds=round(sum(s["cpu"] for s in progress["steps"]), 3),
                    wall_seconds=round(sum(s["wall"] for s in progress["steps"]), 3), updated=_now())
    st = run_state(rd / "run")
    progress.update(epochs=st.epochs, train_seconds=round(st.train_seconds, 3), best_epoch=st.best_epoch)
    write_json(rd / "progress.json", progress)
    return progress


# -- the budget ----------------------------------------------------------------------------------
def next_target(row: Row, st: RunState) -> int | None:
    """The epoch the next chunk trains to, or None when the row's training is over."""
    paper, budget = row.paper_epochs, row.budget_hours * HOUR
    if st.stopped_early or (paper and st.epochs >= paper) or st.train_seconds >= budget:
        return None
    if not st.epoch_seconds:
        n = row.first_chunk
    else:
        per_epoch = statistics.median(st.epoch_seconds)
        left = budget - st.train_seconds
        if left < per_epoch / 2:  # less than half an epoch left: the budget is spent
            return None
        n = max(1, min(round(left / per_epoch), int(CHUNK_HOURS * HOUR / per_epoch)))
    return min(paper, st.epochs + n) if paper else st.epochs + n


def why_stopped(row: Row, st: RunState) -> str:
    if st.stopped_early:
        return "stopped early (validation)"
    if row.paper_epochs and st.epochs >= row.paper_epochs:
        return "paper's length"
    return "budget"


class StepFailed(Exception):
    pass


def _checked(rd: Path, step: dict) -> dict:
    progress = record_step(rd, step)
    if step["rc"] != 0:
        raise StepFailed(f"`{step['command']}` exited with status {step['rc']}; see {rd / 'log.txt'}")
    return progress


def train_row(row: Row, rd: Path) -> None:
    run = rd / "run"
    while True:
        st = run_state(run)
        target = next_target(row, st)
        if target is None:
            return
        cmd = train_command(row, run) + ["--resume", "--epochs", str(target), "--no-progress"]
        print(f"[{row.id}] training to epoch {target} ({st.train_seconds / HOUR:.2f} of "
              f"{row.budget_hours:g} CPU-hours used)", flush=True)
        _checked(rd, {"step": "train", "target": target, **run_step(cmd, rd / "log.txt")})
        _curves(rd)  # the learning curve so far, for the table while the row trains
        after = run_state(run)
        if after.epochs < target and not after.stopped_early:
            raise StepFailed(f"training stopped at epoch {after.epochs} of {target}; see {rd / 'log.txt'}")


def git(*args: str, repo: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)


def stale(result: dict, repo: Path = REPO, paths: list[str] | None = None) -> str:
    """Why the figure may no longer hold ('' if it does): a commit after the one it was measured
    at, or after the one a confirmation (``--confirm``) last vouched for it at, changed one of
    ``paths`` (by default the paths recorded with the figure)."""
    paths = paths if paths is not None else result.get("paths") or []
    if not result.get("commit"):
        return "no commit recorded"
    base = since(result)
    if git("cat-file", "-e", f"{base}^{{commit}}", repo=repo).returncode != 0:
        return f"commit {base[:7]} is not in this repository"
    if git("diff", "--quiet", base, "HEAD", "--", *paths, repo=repo).returncode == 1:
        changed = git("diff", "--name-only", base, "HEAD", "--", *paths, repo=repo).stdout.split()
        return f"changed since: {', '.join(changed[:3])}{' …' if len(changed) > 3 else ''}"
    return "measured with uncommitted changes" if result.get("dirty") else ""


def since(result: dict) -> str:
    """The commit whose code the figure is known to hold for: the last confirmation's, else the
    commit it was measured at."""
    confirmed = result.get("confirmed")
    return confirmed["commit"] if isinstance(confirmed, dict) and confirmed.get("commit") else result["commit"]


def relevant_paths(row: Row) -> list[str]:
    """What could move the row's figure: its model file with the model and layer modules it
    imports, the data, training and evaluation code, and its profile (the staleness test of
    the table); for a comparison's row, also the comparison's module, the comparison modules
    and layers it imports, and the comparisons' command line (their defaults). A layer module
    no family of the row imports moves none of its figures, nor another comparison's module."""
    import inspect

    from vaelab.compare import COMPARISONS
    from vaelab.models import model_class

    files = {Path(inspect.getsourcefile(model_class(f))).resolve() for f in row.families}
    if row.compare:
        files |= {Path(inspect.getsourcefile(COMPARISONS[row.compare.name])).resolve(),
                  (REPO / "vaelab" / "compare" / "cli.py").resolve()}
    code = sorted(str(p.relative_to(REPO)) for p in _imported_code(files))
    return [*code, "vaelab/data/", "vaelab/training/", "vaelab/evaluation/",
            *(f"vaelab/profiles/{f}/" for f in row.families)]


def _imported_code(files: set[Path]) -> set[Path]:
    """``files`` and every module of vaelab/models/, vaelab/nn/ and vaelab/compare/ they import,
    transitively (read from their ``import`` statements, nothing executed)."""
    import ast

    roots = (REPO / "vaelab" / "models", REPO / "vaelab" / "nn", REPO / "vaelab" / "compare")
    seen, todo = set(), list(files)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = path.parent
            for _ in range(max(node.level - 1, 0)):
                base = base.parent
            if node.level == 0:
                if not (node.module or "").startswith("vaelab."):
                    continue
                base, parts = REPO, node.module.split(".")
            else:
                parts = node.module.split(".") if node.module else []
            stem = base.joinpath(*parts)
            for name in [alias.name for alias in node.names] + [""]:
                target = (stem / name).with_suffix(".py") if name else stem.with_suffix(".py")
                if target.is_file() and target.resolve().parent in roots:
                    todo.append(target.resolve())
    return seen


def _curves(rd: Path) -> dict:
    """``vaelab curves RUN -o RUNS/ROW/curves.png``: validation figures against epoch."""
    return _checked(rd, {"step": "curves", **run_step(["vaelab", "curves", str(rd / "run"), "-o",
                                                       str(rd / "curves.png")], rd / "log.txt")})


def _pick_text(row: Row) -> str:
    return ", ".join(f"{k} = {v!r}" for k, v in row.compare.pick) or "(the first)"


def pick_row(results: dict, row: Row, source: str) -> dict:
    """The results.json row that the row's ``pick`` names (every column equal)."""
    rows = [r for r in results.get("rows") or [] if isinstance(r, dict)]
    want = dict(row.compare.pick)
    found = [r for r in rows if all(r.get(k) == v for k, v in want.items())]
    if not found:
        seen = "; ".join(", ".join(f"{k} = {r.get(k)!r}" for k in want) for r in rows[:8]) or "none"
        raise StepFailed(f"{source} has no row with {_pick_text(row)} (its rows: {seen}); fix the row's pick")
    return found[0]


def read_figure(obj: dict, row: Row, source: str, what: str = "") -> tuple[float, int | None]:
    """The number under ``row.metric``; a dict of goals met (``{name: bool}``) counts the met
    ones, and says of how many."""
    value = obj.get(row.metric)
    if isinstance(value, dict) and value and all(isinstance(v, bool) for v in value.values()):
        return float(sum(value.values())), len(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        keys = ", ".join(map(str, obj)) or "none"
        raise StepFailed(f"{source} gave no {row.metric}{what} (its keys: {keys}); fix the row's metric")
    return float(value), None


def goal_value(row: Row, picked: dict, source: str) -> float | None:
    """The row's goal in its unit: the number it declares, the named column of the same
    comparison row (another model's figure), or None (reported, no goal)."""
    if row.goal is None:
        return None
    if isinstance(row.goal, str):
        value = picked.get(row.goal)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise StepFailed(f"{source} gave no {row.goal} to compare with (the row's goal); fix the row's goal")
        return row.figure(float(value))
    return float(row.goal)


def is_reached(row: Row, figure: float, goal: float | None) -> bool | None:
    if goal is None:
        return None
    return figure >= goal if row.better == "higher" else figure <= goal


def run_compare(row: Row, rd: Path, runs: Path) -> tuple[dict, Path, str]:
    """The row's comparison, once: a comparison whose results.json is there beside the
    campaign's marker for the same command (a finished step, this row's or another row's that
    shares it) is read, not run again; otherwise it runs (reusing the models it trained there)."""
    out = compare_dir(runs, row)
    cmd = compare_command(row, runs)
    marker, results = read_json(out / "campaign.json"), read_json(out / "results.json")
    if marker is not None and marker.get("command") == " ".join(cmd) and results is not None:
        return results, out, str(marker.get("row") or "")
    print(f"[{row.id}] `vaelab compare {row.compare.name}` into {out}", flush=True)
    step = run_step(cmd + ["--no-progress"], rd / "log.txt")
    _checked(rd, {"step": "compare", **step})
    results = read_json(out / "results.json")
    if results is None:
        raise StepFailed(f"`vaelab compare {row.compare.name}` wrote no results.json in {out}; see {rd / 'log.txt'}")
    write_json(out / "campaign.json", {"command": " ".join(cmd), "row": row.id, "cpu": step["cpu"],
                                       "commit": git("rev-parse", "HEAD", repo=REPO).stdout.strip(),
                                       "wall": step["wall"], "finished": step["finished"]})
    return results, out, row.id


def measure_row(row: Row, rd: Path, runs: Path | None = None) -> dict:
    """The test figure (at the best weights, or the comparison's), once; then result.json with the commit."""
    runs = rd.parent if runs is None else runs
    run = rd / "run"
    rd.mkdir(parents=True, exist_ok=True)
    if row.prior is not None:
        _checked(rd, {"step": "prior", **run_step(prior_command(row, run) + ["--resume", "--no-progress"],
                                                  rd / "log.txt")})
    if row.compare:
        results, out, ran_by = run_compare(row, rd, runs)
        source = f"{out / 'results.json'}"
        picked = pick_row(results, row, source)
        value, of = read_figure(picked, row, source, f" in its row {_pick_text(row)}")
        settings = results.get("settings") or {}
        test = {"comparison": results.get("comparison"), "row": picked, "split": settings.get("split", "test"),
                "n": picked.get("n", settings.get("n_test")), "settings": settings}
    else:
        _checked(rd, {"step": "eval", **run_step(eval_command(row, run) + (["--no-progress"] if not row.check else []),
                                                 rd / "log.txt", stdout=rd / "test.out")})
        test = read_json(rd / "test.out")
        if test is None:
            raise StepFailed(f"`{eval_command(row, run)[0]}` gave no JSON (see {rd / 'test.out'})")
        picked, source = test, f"`{' '.join(eval_command(row, Path('RUN'))[:3])}` (see {rd / 'test.out'})"
        value, of = read_figure(test, row, source)
        test, ran_by = {**test, "n": test.get("n", test.get("n_checked"))}, row.id
    goal = goal_value(row, picked, source)
    write_json(rd / "test.json", test)
    if row.trains and not (rd / "curves.png").exists():
        _curves(rd)
    progress = read_json(rd / "progress.json") or {}
    st, paths = run_state(run), relevant_paths(row)
    figure = row.figure(value)
    trained = row.trains
    shared = ran_by != row.id  # another row ran the comparison, and its time is counted there
    result = {
        "row": row.id, "family": row.family, "metric": row.metric, "value": value, "figure": figure, "of": of,
        "unit": row.unit, "split": test.get("split", "test"), "n": test.get("n"), "goal": goal,
        "reached": is_reached(row, figure, goal), "better": row.better,
        "epochs": st.epochs if trained else (picked.get("epochs") or (test.get("settings") or {}).get("epochs") or 0),
        "best_epoch": st.best_epoch, "paper_epochs": row.paper_epochs,
        "stopped": why_stopped(row, st) if trained else "comparison",
        "train_seconds": round(st.train_seconds, 3), "wall_seconds": progress.get("wall_seconds", 0.0),
        "cpu_seconds": progress.get("cpu_seconds", 0.0), "budget_hours": row.budget_hours,
        "profile": _recorded_train(main_stage(run)).get("profile") if trained else None,
        "command": " ".join(row_command(row, Path("RUNS"))),
        "eval_command": " ".join(test_command(row, Path("RUNS"))),
        "shared": ran_by if shared else "",
        "commit": git("rev-parse", "HEAD", repo=REPO).stdout.strip(),
        "dirty": bool(git("status", "--porcelain", "--", *paths, repo=REPO).stdout.strip()), "paths": paths,
        "curves": "curves.png" if trained else None, "measured": _now()}
    save_result(runs, result)
    return result


def row_command(row: Row, runs: Path) -> list[str]:
    """What a reader types first: the training command, or for a comparison alone the comparison."""
    return train_command(row, runs / row.id / "run") if row.trains else compare_command(row, runs)


def test_command(row: Row, runs: Path) -> list[str]:
    """The command whose output holds the row's figure."""
    return compare_command(row, runs) if row.compare else eval_command(row, runs / row.id / "run")


def shown(row: Row, figure: float, of: int | None = None) -> str:
    return f"{figure:g} of {of} {row.unit}" if of else f"{figure:.4g} {row.unit}" if row.unit in ("MSE", "MMD²") \
        else f"{figure:.2f} {row.unit}"


def goal_text(row: Row) -> str:
    side = "≥" if row.better == "higher" else "≤"
    if row.goal is None:
        return "reported (no goal)"
    if isinstance(row.goal, str):
        return f"{side} its `{row.goal}`"
    return f"{side} {row.goal:g} {row.unit}"


def run_row(row: Row, runs: Path) -> dict | None:
    rd = row_dir(runs, row)
    done = saved_result(runs, row.id)
    if done is not None:
        return refresh(row, runs, done)
    if row.reason:
        print(f"[{row.id}] not measured: {row.reason}", flush=True)
        return None
    if row.budget_hours <= 0 and row.trains:
        print(f"[{row.id}] no budget: not run ({row.note or 'give it hours to run it'})", flush=True)
        return None
    missing = [w for w in waits_for(row) if read_json(runs / w / "result.json") is None]
    if missing:
        lost = saved_result(runs, missing[0]) is not None
        print(f"[{row.id}] waits for row {missing[0]}: its comparison reads that row's run"
              + (f", which is not on this machine (its figure is kept; train it again: --rerun {missing[0]})"
                 if lost else ""), flush=True)
        return None
    write_json(runs / "current.json", {"row": row.id, "pid": os.getpid(), "since": _now()})
    if row.trains:
        train_row(row, rd)
    result = measure_row(row, rd, runs)
    mark = {True: "reached", False: "not reached", None: "reported"}[result["reached"]]
    where = f"after {result['epochs']} epochs ({result['stopped']})" if row.trains else "(comparison)"
    print(f"[{row.id}] {result['metric']} {shown(row, result['figure'], result['of'])} on {result['split']} {where}; "
          f"goal {goal_text(row)}: {mark}", flush=True)
    return result


def refresh(row: Row, runs: Path, done: dict) -> dict:
    """A measured row whose figure a later commit made stale (a change to its paths, not
    uncommitted changes) is brought up to HEAD where that is cheap: a trained row by
    ``confirm_row`` (no retraining); a comparison's row by running its comparison again, its
    earlier output kept under RUNS/superseded/, after (for a row that trains) the same training
    probe as ``confirm_row``. Where a check is refused or disagrees, the row stays stale, said in
    one line. Returns the row's result as it stands."""
    why = stale(done, REPO, relevant_paths(row))
    if not why.startswith("changed since"):
        return done
    try:
        if not row.compare:
            result = confirm_row(row, runs, REPO)
            print(f"[{row.id}] confirmed at {result['confirmed']['commit'][:7]}: {result['confirmed']['how']}",
                  flush=True)
            return result
        if row.trains:
            _probe_for(row, done, runs)
    except (Refused, NotConfirmed) as exc:
        print(f"[{row.id}] stale ({why}) and left so: {exc}", flush=True)
        return done
    head = git("rev-parse", "HEAD", repo=REPO).stdout.strip()
    out = compare_dir(runs, row)
    if out.exists() and (read_json(out / "campaign.json") or {}).get("commit") != head:
        keep = runs / "superseded" / f"{out.name}-{done['commit'][:7]}"
        keep.parent.mkdir(parents=True, exist_ok=True)
        os.replace(out, keep if not keep.exists() else keep.with_name(f"{keep.name}-{int(time.time())}"))
    print(f"[{row.id}] stale ({why}): its comparison runs again at {head[:7]}", flush=True)
    write_json(runs / "current.json", {"row": row.id, "pid": os.getpid(), "since": _now()})
    result = measure_row(row, row_dir(runs, row), runs)
    print(f"[{row.id}] {result['metric']} {shown(row, result['figure'], result['of'])} on {result['split']}, measured "
          f"again at {head[:7]} (it was {shown(row, done['figure'], done.get('of'))})", flush=True)
    return result


def _probe_for(row: Row, done: dict, runs: Path) -> None:
    """``confirm_row``'s training probe for a trained comparison's row (its checks of the tree first)."""
    if done.get("dirty"):
        raise Refused("it was measured with uncommitted changes, so no commit holds the code that trained it")
    if git("status", "--porcelain", "--", *CODE, repo=REPO).stdout.strip():
        raise Refused("the working tree has uncommitted changes; the training probe needs a committed HEAD")
    if not (row_dir(runs, row) / "run" / "run.json").is_file():
        raise Refused(f"its run directory {row_dir(runs, row) / 'run'} is gone; train it again: --rerun {row.id}")
    confirm_training(done, REPO, since(done), 2, row_dir(runs, row) / "confirm.log")


# -- confirming a stale figure without training it again ------------------------------------------
class Refused(Exception):
    """The row cannot be confirmed (one line: why, and what to do instead)."""


class NotConfirmed(Exception):
    """The checks ran and disagree (one line: what differs); the figure stays stale."""


TIMING = ("seconds", "cpu_seconds")  # metrics.jsonl keys that differ between any two runs
# A probe's epochs bound the last stage; a family that trains more first is bounded here too.
PROBE_OPTIONS = {"m1m2": ("--m1-epochs", "1"), "stacked-ae": ("--pretrain-epochs", "1")}


def confirm_row(row: Row, runs: Path, repo: Path = REPO, probe_epochs: int = 2) -> dict:
    """Vouch, without training the row again, that its stale figure still holds at HEAD:

    1. the recorded evaluation (``eval_command``) run at HEAD on the row's saved run gives the
       recorded figure exactly (the evaluation and model code read the weights as before);
    2. a short probe of the recorded training command (``probe_epochs`` epochs, the first fresh,
       the rest by ``--resume`` as the campaign trains, one thread), run with the code of the
       commit the figure holds for (a temporary ``git worktree``) and with HEAD's, saves
       bit-identical weights and the same training and validation terms every epoch (the
       training code still takes the same path).

    Both agreeing, result.json records ``confirmed`` (HEAD, when, how), and staleness counts
    from HEAD on. Raises Refused when the row cannot be confirmed, NotConfirmed when a check
    disagrees (result.json untouched)."""
    rd = row_dir(runs, row)
    if row.reason:
        raise Refused(f"row {row.id} has no measurable figure ({row.reason}); nothing to confirm")
    result = saved_result(runs, row.id)
    if result is None:
        raise Refused(f"row {row.id} is not measured yet (no {rd / 'result.json'}); run it first: "
                      f"python benchmarks/campaign.py --only {row.id}")
    if row.compare or not result.get("eval_command") or not row.trains:
        raise Refused(f"row {row.id} is measured by a comparison, which --confirm does not check; re-run it, it "
                      f"is short (delete {rd / 'result.json'}, then --only {row.id})")
    if row.prior is not None:
        raise Refused(f"row {row.id} trains a prior after its run, which the probe does not cover; re-run it")
    if result.get("dirty"):
        raise Refused(f"row {row.id} was measured with uncommitted changes, so no commit holds the code that "
                      f"trained it; re-run it")
    why = stale(result, repo, relevant_paths(row))
    if not why:
        raise Refused(f"row {row.id}: nothing to confirm, its figure is not stale (no change to its paths since "
                      f"{since(result)[:7]})")
    if "not in this repository" in why:
        raise Refused(f"row {row.id}: {why}, so its code cannot be probed; re-run it")
    run = rd / "run"
    if not (run / "run.json").is_file():
        raise Refused(f"row {row.id}'s run directory {run} is gone (no run.json); train it again: --rerun {row.id}")
    dirty = git("status", "--porcelain", "--", *CODE, repo=repo).stdout.split("\n")
    if any(line.strip() for line in dirty):
        raise Refused(f"the working tree has uncommitted changes ({dirty[0].strip()} …); commit or stash them: "
                      f"a confirmation holds for a committed HEAD")
    head, base = git("rev-parse", "HEAD", repo=repo).stdout.strip(), since(result)
    t0, log = time.monotonic(), rd / "confirm.log"
    print(f"[{row.id}] stale ({why}); confirming at {head[:7]} against {base[:7]}", flush=True)
    figure = confirm_evaluation(row, result, runs, repo, log)
    print(f"[{row.id}] the evaluation at {head[:7]} gives the recorded figure ({figure}); probing the training "
          f"code, {probe_epochs} epochs at each commit", flush=True)
    probed = confirm_training(result, repo, base, probe_epochs, log)
    if (read_json(rd / "result.json") or {}).get("measured") != result.get("measured"):
        raise NotConfirmed(f"row {row.id} was measured again while it was being confirmed; confirm it again")
    result = {**result, "confirmed": {
        "commit": head, "at": _now(), "from": base, "seconds": round(time.monotonic() - t0, 1),
        "probe_epochs": probe_epochs,
        "how": f"`{result['eval_command']}` at {head[:7]} gave the recorded {row.metric} ({figure}, exactly); "
               f"{probe_epochs} epochs of `{result['command']}` (one thread"
               f"{''.join(' ' + o for o in PROBE_OPTIONS.get(row.family, ()))}) at {base[:7]} and at {head[:7]} "
               f"saved bit-identical weights ({probed}) and the same training and validation terms in "
               f"metrics.jsonl every epoch (timings aside)"}}
    save_result(runs, result)
    return result


def _runs_path(command: str, runs: Path) -> list[str]:
    """A recorded command's words (recorded joined by spaces), RUNS standing for the runs directory."""
    return [str(runs) + word[4:] if word == "RUNS" or word.startswith("RUNS/") else word
            for word in command.split()]


def confirm_evaluation(row: Row, result: dict, runs: Path, repo: Path, log: Path) -> str:
    """Run the recorded evaluation with ``repo``'s code (seeded: the same run gives the same
    JSON every time); its figure must equal the recorded one exactly. Returns it, as shown."""
    import tempfile

    cmd = _runs_path(result["eval_command"], runs)
    if cmd[0] == "vaelab":
        cmd.append("--no-progress")
    with tempfile.TemporaryDirectory(prefix="vaelab-confirm-") as tmp:
        out = Path(tmp) / "eval.json"
        step = run_step(cmd, log, stdout=out, tree=repo)
        if step["rc"] != 0:
            raise NotConfirmed(f"`{result['eval_command']}` exited with status {step['rc']} at HEAD; see {log}")
        obj = read_json(out)
    if obj is None:
        raise NotConfirmed(f"`{result['eval_command']}` printed no JSON at HEAD; see {log}")
    try:
        value, of = read_figure(obj, row, "the evaluation at HEAD")
    except StepFailed as exc:
        raise NotConfirmed(str(exc)) from None
    if value != result.get("value") or of != result.get("of"):
        raise NotConfirmed(f"the evaluation at HEAD gives {row.metric} {shown(row, row.figure(value), of)}, the "
                           f"recorded {shown(row, result['figure'], result.get('of'))}; re-run the row")
    return shown(row, row.figure(value), of)


@contextlib.contextmanager
def worktree_at(repo: Path, commit: str):
    """A detached ``git worktree`` of ``commit`` in a temporary directory, removed afterwards
    (on failure too)."""
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="vaelab-confirm-tree-"))
    tree = tmp / "tree"
    try:
        added = git("worktree", "add", "--detach", str(tree), commit, repo=repo)
        if added.returncode != 0:
            said = (added.stderr.strip().splitlines() or ["git worktree add failed"])[-1]
            raise NotConfirmed(f"could not check out {commit[:7]} into a temporary worktree: {said}")
        yield tree
    finally:
        git("worktree", "remove", "--force", str(tree), repo=repo)
        shutil.rmtree(tmp, ignore_errors=True)
        git("worktree", "prune", repo=repo)


def probe(tree: Path, command: str, out: Path, epochs: int, log: Path, who: str) -> None:
    """``epochs`` epochs of the recorded training command with ``tree``'s code into ``out``:
    the first fresh, each further one by ``--resume`` (the campaign trains in chunks). Only
    options every commit's trainer knows are added (--epochs, --resume, --no-progress, and
    run_step's --threads 1; a first stage's epochs, PROBE_OPTIONS)."""
    cmd = command.split()
    if "--out" not in cmd or len(cmd) < 3:
        raise NotConfirmed(f"the recorded command `{command}` has no --out")
    cmd[cmd.index("--out") + 1] = str(out)
    cmd += PROBE_OPTIONS.get(cmd[2], ())
    for epoch in range(1, epochs + 1):
        more = ["--epochs", str(epoch), "--no-progress"] + (["--resume"] if epoch > 1 else [])
        step = run_step(cmd + more, log, tree=tree)
        if step["rc"] != 0:
            raise NotConfirmed(f"the training probe at {who} exited with status {step['rc']}; see {log}")


def compare_probes(old: Path, new: Path) -> str:
    """'' when the two probe runs saved bit-identical weights and the same metrics (timings
    aside), else the first difference in words."""
    import math

    from safetensors.torch import load_file

    models = sorted(p.relative_to(old) for p in old.rglob("model.safetensors"))
    if not models:
        return "the probe saved no model.safetensors"
    if models != sorted(p.relative_to(new) for p in new.rglob("model.safetensors")):
        return "the probes saved their models in different places (a run of stages changed)"
    for rel in models:
        a, b = load_file(old / rel), load_file(new / rel)
        if a.keys() != b.keys():
            return f"{rel}: tensors {sorted(a.keys() ^ b.keys())[:3]} are in one model only"
        for name in sorted(a):
            if a[name].dtype != b[name].dtype or a[name].shape != b[name].shape or not a[name].equal(b[name]):
                delta = (a[name].double() - b[name].double()).abs().max().item() if a[name].shape == b[name].shape \
                    else math.nan
                return f"{rel}: tensor {name} differs (largest difference {delta:.3g})"
    for path in sorted(old.rglob("metrics.jsonl")):
        rel = path.relative_to(old)
        mine, theirs = _metrics(path), _metrics(new / rel)
        if len(mine) != len(theirs):
            return f"{rel}: {len(mine)} epochs against {len(theirs)}"
        for x, y in zip(mine, theirs):
            for key in sorted((x.keys() & y.keys()) - set(TIMING)):
                if x[key] != y[key]:
                    return f"{rel}: epoch {x.get('epoch')} {key} {x[key]} against {y[key]}"
    return ""


def confirm_training(result: dict, repo: Path, base: str, epochs: int, log: Path) -> str:
    """The probe at ``base`` (its own code, in a temporary worktree) and at HEAD; NotConfirmed
    naming the first difference. Returns what was compared, in words."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="vaelab-confirm-probe-") as tmp:
        with worktree_at(repo, base) as tree:
            probe(tree, result["command"], Path(tmp) / "old", epochs, log, base[:7])
        probe(repo, result["command"], Path(tmp) / "new", epochs, log, "HEAD")
        differs = compare_probes(Path(tmp) / "old", Path(tmp) / "new")
        if differs:
            raise NotConfirmed(f"the training code moved: after {epochs} probe epochs at {base[:7]} and at HEAD, "
                               f"{differs}; re-run the row")
        n = len(list((Path(tmp) / "new").rglob("model.safetensors")))
    return f"{n} model{'s' if n > 1 else ''}, every tensor"


def confirm(rows: list[Row], ids: list[str], runs: Path, repo: Path = REPO, probe_epochs: int = 2) -> int:
    """``--confirm ROW ...``: 0 when every row was confirmed, 1 when a check disagreed, 2 when
    a row could not be confirmed (each one line)."""
    by_id, code = {r.id: r for r in rows}, 0
    for row_id in ids:
        try:
            result = confirm_row(by_id[row_id], runs, repo, probe_epochs)
        except Refused as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = max(code, 2)
        except NotConfirmed as exc:
            print(f"[{row_id}] not confirmed, still stale: {exc}", file=sys.stderr)
            code = max(code, 1)
        else:
            c = result["confirmed"]
            print(f"[{row_id}] confirmed at {c['commit'][:7]} (measured at {result['commit'][:7]}) in "
                  f"{c['seconds']:.0f} s: {c['how']}", flush=True)
    return code


# -- the campaign's lock and status --------------------------------------------------------------
@contextlib.contextmanager
def campaign_lock(runs: Path):
    """One campaign at a time per runs directory; the lock dies with the process (SIGKILL too)."""
    import fcntl

    runs.mkdir(parents=True, exist_ok=True)
    fd = os.open(runs / ".campaign.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SystemExit(f"error: a campaign is already running on {runs}; see --status") from None
        yield
    finally:
        os.close(fd)


def campaign_running(runs: Path) -> bool:
    import fcntl

    try:
        fd = os.open(runs / ".campaign.lock", os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def row_state(row: Row, runs: Path, running_row: str | None, result: dict | None) -> str:
    if result:
        return "done"
    if row.reason:
        return "no figure"
    if running_row == row.id:
        return "running"
    if any(read_json(runs / w / "result.json") is None for w in waits_for(row)):
        return "waiting"  # for another row's run, not only its figure
    return "left" if row.budget_hours > 0 or not row.trains else "no budget"


def row_status(row: Row, runs: Path, running_row: str | None) -> dict:
    rd = row_dir(runs, row)
    st = run_state(rd / "run")
    result, again = shown_result(runs, row.id)
    paper = row.paper_epochs
    state = "again" if again else row_state(row, runs, running_row, result)
    per_epoch = statistics.median(st.epoch_seconds) if st.epoch_seconds else None
    budget = row.budget_hours * HOUR
    if result and not again or row.budget_hours <= 0 or row.reason:
        remaining = 0.0
    else:  # a comparison's own training is not visible from here: its whole budget until it is measured
        remaining = max(0.0, budget - (st.train_seconds if row.trains and not row.compare else 0.0))
        if per_epoch and paper and not row.compare:
            remaining = min(remaining, per_epoch * max(0, paper - st.epochs))
    used = st.train_seconds if row.trains else float((read_json(rd / "progress.json") or {}).get("cpu_seconds") or 0)
    return {"row": row.id, "state": state, "epochs": st.epochs, "paper_epochs": paper,
            "used_hours": used / HOUR, "budget_hours": row.budget_hours,
            "seconds_per_epoch": per_epoch, "remaining_hours": remaining / HOUR,
            "figure": result and result["figure"], "of": result and result.get("of")}


def status_lines(rows: list[Row], runs: Path) -> list[str]:
    current = read_json(runs / "current.json") if campaign_running(runs) else None
    running_row = current and current.get("row")
    lines, left = [], 0.0
    for row in rows:
        s = row_status(row, runs, running_row)
        left += s["remaining_hours"]
        pace = f", {s['seconds_per_epoch']:.1f} s/epoch" if s["seconds_per_epoch"] else ""
        figure = f", {shown(row, s['figure'], s['of'])}" if s["figure"] is not None else ""
        budget = f"{s['budget_hours']:g}" if row.budget_hours > 0 else "0"
        what = f"epochs {s['epochs']}/{s['paper_epochs'] or '?'}" if row.trains else f"compare {row.compare.name}"
        lines.append(f"{row.id:<18} {s['state']:<9} {what}  "
                     f"time {s['used_hours']:.2f} / {budget} CPU-h{pace}{figure}  "
                     f"~{s['remaining_hours']:.2f} h left")
    lines.append(f"campaign: {'running' if running_row else 'not running'}; about {left:.1f} CPU-hours left")
    return lines


def main(argv: list[str] | None = None, rows: list[Row] | None = None) -> int:
    rows = ROWS if rows is None else rows
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", metavar="ROW", help=f"run only this row (repeatable): "
                   f"{', '.join(r.id for r in rows)}")
    p.add_argument("--runs", default=str(DEFAULT_RUNS), help="where the rows' runs and results live "
                   "(default: runs/campaign)")
    p.add_argument("--status", action="store_true", help="print each row's state and time, run nothing")
    p.add_argument("--confirm", nargs="+", metavar="ROW", help="confirm that these rows' stale figures still hold at "
                   "HEAD, without training them again: their recorded evaluation at HEAD must give the recorded "
                   "figure, and a short training probe at the recorded commit and at HEAD bit-identical weights; "
                   "recorded in result.json (needs a clean working tree)")
    p.add_argument("--rerun", action="append", metavar="ROW", help="train and measure this measured row again "
                   "(repeatable), e.g. when its run directory is gone and another row reads it or its figure is "
                   "stale; its figure stays in the table until the new one replaces it")
    p.add_argument("--probe-epochs", type=int, default=2, metavar="N",
                   help="epochs of --confirm's training probe at each commit, the first fresh, the rest resumed "
                        "(default: 2)")
    p.add_argument("--data-dir", default=os.environ.get("VAELAB_DATA_DIR") or
                   (str(SHARED_DATA) if SHARED_DATA.exists() else None),
                   help="dataset directory, passed to every step as VAELAB_DATA_DIR "
                        "(default: $VAELAB_DATA_DIR, else ../shared/data)")
    args = p.parse_args(argv)
    if args.data_dir:
        os.environ["VAELAB_DATA_DIR"] = args.data_dir
    runs = Path(args.runs).resolve()
    unknown = [c for c in [*(args.only or ()), *(args.confirm or ()), *(args.rerun or ())]
               if c not in {r.id for r in rows}]
    if unknown:
        print(f"error: unknown row {unknown[0]}; the rows are {', '.join(r.id for r in rows)}", file=sys.stderr)
        return 2
    if args.confirm:
        if args.probe_epochs < 1:
            print(f"error: --probe-epochs must be at least 1, got {args.probe_epochs}", file=sys.stderr)
            return 2
        return confirm(rows, args.confirm, runs, probe_epochs=args.probe_epochs)
    chosen = [r for r in rows if not args.only or r.id in args.only]
    for row_id in args.rerun or ():
        print(rerun(runs, row_id), flush=True)
    if args.status:
        print("\n".join(status_lines(chosen, runs)))
        return 0
    failed = 0
    with campaign_lock(runs):
        for row in chosen:  # a failed row is reported and left for the next start; the others go on
            try:
                run_row(row, runs)
            except StepFailed as exc:
                print(f"error: [{row.id}] {exc}", file=sys.stderr)
                failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    yield_to_foreground()  # here, not in main(): the tests call main() in their own process
    sys.exit(main())
