"""Every option the CLI offers a family acts: for each registered family and each option of
its config (the options ``vaelab train FAMILY --help`` lists), a changed value changes the
parameters' shapes, the loss of a fixed batch under fixed seeds (after ``prepare`` and a
``schedule`` call mid warm-up), an optimiser phase's settings or the run's stages, unless the
option is in ``ELSEWHERE`` with the place it acts. An option the loss ignores (M2's β once
was) fails here."""
from __future__ import annotations

import functools
import re
import typing

import pytest
import torch

import vaelab
from vaelab.data import Dataset
from vaelab.data.batch import Batch
from vaelab.errors import VaelabError
from vaelab.models import model_class, names
from vaelab.options import options

SHAPE = [1, 8, 8]
N = 8

# Settings every build of a family starts from, where the defaults do not fit 8×8 images.
BASE = {"pixelcnn": {"completion_rows": 4}, "pixelrnn": {"completion_rows": 4}, "cmma": {"attributes": ("class",)}}

# Options that act outside the model's loss and shapes, with where they act (each checked
# by its own family's tests).
ELSEWHERE = {
    # M1's classifier of the codes: fitted in classify (validation and evaluation)
    ("m1", "classifier"): "classify", ("m1", "svm_c"): "classify", ("m1", "knn_k"): "classify",
    ("m1", "active_std"): "classify (the code dimensions the classifier reads)",
    # the rows an image-completion figure hides: evaluation
    ("pixelcnn", "completion_rows"): "evaluation (conditional likelihood of the hidden rows)",
    ("pixelrnn", "completion_rows"): "evaluation (conditional likelihood of the hidden rows)",
    # a run directory whose weights prepare() copies into the frozen baseline
    **{(f, "baseline"): "prepare (the trained sohn-nn run loaded as the baseline)"
       for f in ("sohn-cvae", "sohn-gsnn", "sohn-hybrid")},
    # straight-through Gumbel-softmax: the forward pass takes the hard argmax, which τ does not move
    ("seq3", "tau"): "the gradient of the middle sequence (tests/test_seq3.py)",
    ("seq3", "tau_decay"): "the temperature the schedule sets, hence the gradient (tests/test_seq3.py)",
    ("seq3", "tau_min"): "the temperature the schedule sets, hence the gradient (tests/test_seq3.py)",
    # the language-model prior needs a trained lstm-lm run
    ("seq3", "lm_run"): "the prior term, with a trained lstm-lm run (tests/test_seq3.py)",
    ("seq3", "lm_weight"): "the prior term, with a trained lstm-lm run (tests/test_seq3.py)",
    ("seq3", "init_from_lm"): "prepare: a trained lstm-lm run's embedding starts E (tests/test_seq3.py)",
    ("seq3", "lm_fusion"): "the reconstructor's logits, with a trained lstm-lm run (tests/test_seq3_fusion.py)",
    # on these 8 clips the k-means start leaves no code idle within two steps
    ("vq-vc", "revive_after"): "the quantizer's dead-code revival (tests/test_vqvae.py, VectorQuantizer)",
}

# Values to try where the generic perturbation cannot build a valid model or does not reach
# the option (8 rows fit in any batch size above 8).
CANDIDATES = {
    ("cmma", "attributes"): [{"attributes": ("class", "thickness"), "attribute_mean": (2.0,), "attribute_std": (1.0,),
                              "attribute_low": (0.0,), "attribute_high": (5.0,)}],
    ("stacked-ae", "pretrain_batch_size"): [{"pretrain_batch_size": 3}],
}

# Options that act only beside another setting (the σ of a Gaussian likelihood, the widths of
# the conv backbone): both the baseline and the changed model are built with that setting.
CONTEXT = {
    "channels": {"backbone": "conv"},
    "sigma": {"likelihood": "gaussian"},
    "noise_level": {"corruption": "masking"},
    ("aae", "num_classes"): {"supervised": True},
    ("vqvae", "decay"): {"ema": True},
    ("vq-vc", "speaker"): {"input_norm": False},  # speaker none takes the encoder's input as it is
    ("vqvae", "revive"): {"revive_after": 1},
    ("aae", "prior"): {"latent_dim": 2},
    ("vae-prior", "prior"): {"latent_dim": 2},
}


def _reads(family: str) -> str:
    return getattr(model_class(family), "reads", "images")


@functools.cache
def _sequences(reads: str) -> Dataset:
    """N sentences or N short clips of two synthetic "speakers", with their lengths."""
    if reads == "text":
        from vaelab.data.text import build_vocabulary, encode_lines, front_end
        lines = ["the cat sat", "a dog ran fast", "the mat", "big red cat sat on a mat", "a cat", "dog ran",
                 "the small blue dog sat", "on the mat"]
        settings = front_end(build_vocabulary(lines + ["<unk>"]), 8, "test")
        x, lengths, _ = encode_lines(lines, settings, "test")
        return Dataset("sentences", x, extras={"lengths": lengths}, front_end=settings)
    from vaelab.data.audio import front_end, log_mel, pad_clips
    settings = {**front_end(n_mels=16, max_frames=24), "speakers": ["low", "high"]}  # the two synthetic voices
    t = torch.arange(1200) / 8000
    waves = [(0.3 * torch.sin(2 * torch.pi * (110 + 70 * (i % 2)) * (1 + i % 3) * t[:800 + 50 * i])).numpy()
             for i in range(N)]
    x, lengths = pad_clips([log_mel(w, settings) for w in waves], settings, "test")
    return Dataset("clips", x, extras={"lengths": lengths, "speaker": torch.arange(N) % 2}, front_end=settings)


def _batch(kind: str, reads: str = "images") -> Batch:
    g = torch.Generator().manual_seed(0)
    if reads == "images":
        x, extras = (torch.rand(N, *SHAPE, generator=g) > 0.5).float(), {}
    else:
        data = _sequences(reads)
        x, extras = data.x, dict(data.extras)
    y = torch.arange(N) % 3
    if kind == "semi":
        return Batch(x, y, torch.arange(N) < N // 2, extras)
    return Batch(x, y, extras=extras) if kind == "labelled" else Batch(x, extras=extras)


def _build(family: str, settings: dict):
    cls = model_class(family)
    config = {"input_shape": SHAPE, **BASE.get(family, {}), **settings}
    if _reads(family) != "images":  # the front end (vocabulary, mel settings) and shape from the data
        data = _sequences(_reads(family))
        config = cls.data_settings(data, {**config, "input_shape": list(data.shape)})
    torch.manual_seed(0)
    model = cls(cls.Config.from_dict(config, where=f"{family} config"))
    if hasattr(model, "attach_baseline"):
        model.attach_baseline = lambda run: None  # no trained baseline run: the random one serves
    return model


def _fingerprint(family: str, settings: dict, kind: str):
    """Parameter shapes, then (lazily) everything the loss, the phases and the stages read:
    two steps' losses, since a training-mode forward may update state (a codebook's EMA)."""
    model = _build(family, settings)
    shapes = tuple((n, tuple(p.shape)) for n, p in model.named_parameters())

    def behaviour():
        if hasattr(model, "stages"):  # a run of stages: each stage's model has its own case
            return repr([(s.name, s.model, s.model_config, s.train_config) for s in model.stages({})])
        batch = _batch(kind, _reads(family))
        torch.manual_seed(1)
        model.prepare(batch)
        model.schedule(0.5)
        found = []
        for step in range(2):
            for name, phase in model.phases().items():
                torch.manual_seed(2 + step)
                found.append((name, round(float(phase.loss(batch).total.detach()), 5),
                              phase.lr, phase.lr_scale, phase.betas))
        return found

    return shapes, behaviour


@functools.cache
def _batch_kind(family: str, context: tuple = ()) -> str:
    for kind in ("semi", "labelled", "plain"):
        try:
            _fingerprint(family, dict(context), kind)[1]()
            return kind
        except VaelabError:
            continue
    raise AssertionError(f"{family}: no test batch fits its loss")


def _perturbed(opt, default) -> list:
    """Values unlike ``default`` of the option's type, likeliest to be valid first."""
    kind = opt.kind
    if kind is bool:
        return [not default]
    if kind is int:
        return [default + 1, default + 2, default * 2, max(default - 1, 0), 2, 1]
    if kind is float:
        return [default * 2 if default else 0.5, default / 2, default + 0.1, 0.5, 0.9]
    if kind is str:  # a name no option takes: its refusal lists the valid ones
        return ["not-a-choice"]
    args = typing.get_args(kind)
    if args and args[-1] is Ellipsis:
        if args[0] is str:
            return [default[:1]] if len(default) > 1 else []
        return [tuple(v + 1 for v in default), default + (4,), (4,)] if args[0] is int else [default + (0.5,)]
    return [tuple(v / 2 for v in default), tuple(v * 0.9 for v in default)]


def _offered():
    return [(f, o.key) for f in names() for o in options(model_class(f).Config)]


def test_every_option_said_to_act_elsewhere_is_offered():
    """The allow-list names real options, so that a renamed or removed one leaves it."""
    assert set(ELSEWHERE) | set(CANDIDATES) <= set(_offered())


@pytest.mark.parametrize("family, key", [c for c in _offered() if c not in ELSEWHERE])
def test_an_offered_option_changes_the_model_or_its_loss(family, key):
    opt = next(o for o in options(model_class(family).Config) if o.key == key)
    default = BASE.get(family, {}).get(key, opt.default)
    fields = {o.key for o in options(model_class(family).Config)}
    context = {k: v for k, v in CONTEXT.get((family, key), CONTEXT.get(key, {})).items() if k in fields}
    kind = _batch_kind(family, tuple(sorted(context.items())))
    base_shapes, base_behaviour = _fingerprint(family, context, kind)
    base = base_behaviour()
    tried = []
    queue = CANDIDATES.get((family, key), [{key: v} for v in _perturbed(opt, default)])
    while queue:
        settings = queue.pop(0)
        try:
            shapes, behaviour = _fingerprint(family, {**context, **settings}, kind)
            if shapes != base_shapes or behaviour() != base:
                return
        except VaelabError as e:
            tried.append(f"{settings}: {e}")
            choices = re.search(r"one of: ([a-z0-9, -]+)", str(e))  # a refused name lists the valid ones
            if choices and opt.kind is str and not tried[:-1]:
                queue = [{key: c.strip()} for c in choices.group(1).split(",") if c.strip() != default]
            continue
        tried.append(f"{settings}: same shapes and loss")
    pytest.fail(f"{family} --{key.replace('_', '-')} had no effect on the model or its loss: "
                + "; ".join(tried))


@pytest.mark.parametrize("family", [f for f in names() if "init" in {o.key for o in options(model_class(f).Config)}])
def test_glorot_initialises_every_network_of_the_model(family):
    """--init glorot: Glorot-uniform weights and zero biases in every layer, the networks a
    family adds to its base's (M2's classifier q(y|x), a discriminator) included."""
    from torch import nn

    model = _build(family, {**BASE.get(family, {}), "init": "glorot"})
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))]
    assert layers
    for name, layer in layers:
        assert layer.bias is None or float(layer.bias.abs().max()) == 0.0, f"{family}: {name} keeps torch's bias"
