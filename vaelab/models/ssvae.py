"""Semi-supervised learning with deep generative models (Kingma, Rezende, Mohamed & Welling
2014): the latent-feature model M1 and the generative semi-supervised model M2.

M1 is a VAE trained on every image; a classifier fitted on the posterior means of the
labelled few predicts the rest (:class:`M1`). M2:

    p(y) = Cat(π) (uniform),  p(z) = N(0, I),  p(x | y, z) = Bernoulli/Gaussian(decoder([z, y]))
    q(z | x, y) = N(μ, σ²)(encoder([x, y])),   q(y | x) = Cat(classifier(x))

    −L(x, y) = E_q(z|x,y)[−log p(x | y, z)] + KL(q(z|x, y) ‖ p(z)) − log p(y)    (labelled, eq. 6)
    −U(x)    = Σ_y q(y|x)·(−L(x, y)) − H(q(y|x))                                  (unlabelled, eq. 7)
    J^α      = Σ_labelled −L + Σ_unlabelled −U + α·E_labelled[−log q(y|x)]          (eq. 9)

Per example (the toolkit's one convention), J^α / N is estimated from each step's rows as

    loss = f·mean_labelled(−L) + (1 − f)·mean_unlabelled(−U) + α·mean_labelled(−log q(y|x))

with f = N_labelled / N, the labelled share of the training set (set by ``prepare``), so the
estimate is unbiased however many labelled rows a step draws. The paper's α = 0.1·N on the
summed objective is α = 0.1 here. The sum over y in −U is exact: −L(x, y) for all K labels
comes from one batched pass (the image's share of q(z|x, y)'s first layer is computed once,
the label's share is a column of its weight; the decoder runs on B·K rows as one GEMM).

Loss terms: ``neg_L`` = −L(x, y) of the labelled rows, ``neg_U`` = −U(x) of the unlabelled
ones, ``neg_log_qy`` = −log q(y|x) of the labelled ones. The networks, sampling, style grids
and the importance-sampled −log p(x|y) are the label-conditional VAE's (:mod:`.cvae`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..config import Config, choice, require
from ..errors import VaelabError
from ..nn.init import glorot_
from ..nn.likelihoods import Bernoulli
from ..nn.mlp import mlp
from . import fields
from .base import Batch, Loss, Model, inputs
from .cvae import CVAE, CVAEConfig
from .registry import register
from .vae import VAE, VAEConfig, gaussian_params


@dataclass(frozen=True)
class M2Config(CVAEConfig):
    """:class:`~vaelab.models.cvae.CVAEConfig` (the Pyro example's sizes by default: one
    hidden layer of 500 softplus units, z = 50) plus the classifier q(y|x) and α."""

    latent_dim: int = field(default=50, metadata={"help": "size of the latent code z"})
    beta: float = 1.0  # the bound itself, not the cvae's β = 4
    hidden: tuple[int, ...] = field(default=(500,), metadata={
        "help": "hidden layer sizes of q(z|x,y) and p(x|y,z), e.g. 500 or 600,600"})
    activation: str = field(default="softplus", metadata={
        "help": "relu, tanh, elu, leaky-relu, softplus, gelu, silu or sigmoid"})
    # M2's exact sum over labels is written for the MLP (neg_L_every_class): no conv backbone
    # to choose, so neither is offered.
    backbone: str = field(default="mlp", metadata={"option": False})
    channels: tuple[int, ...] = field(default=(32, 64), metadata={"option": False})
    classifier_hidden: tuple[int, ...] = field(default=(500,), metadata={
        "help": "hidden layer sizes of the classifier q(y|x)"})
    alpha: float = field(default=0.1, metadata={
        "help": "weight α of the classification term E_labelled[-log q(y|x)] per example (Kingma et al.'s "
                "α = 0.1·N on the summed objective)"})

    def validate(self) -> None:
        super().validate()
        require(self.backbone == "mlp", "m2 is built on the mlp backbone; drop --backbone conv")
        require(all(h > 0 for h in self.classifier_hidden),
                f"classifier_hidden sizes must be positive, got {list(self.classifier_hidden)}")
        require(self.alpha >= 0 and math.isfinite(self.alpha), f"alpha must be >= 0, got {self.alpha}")


class _BernoulliEveryClass(torch.autograd.Function):
    """−log p(x|y, z_y) for logits (B, K, D) of every label y and images x (B, D): shape
    (B, K) = Σ_d softplus(l) − x·l, with the gradient σ(l) − x written directly (the hot path:
    K decoder outputs per image; x is never copied K times)."""

    @staticmethod
    def forward(ctx, logits, x):
        ctx.save_for_backward(logits, x)
        return F.softplus(logits).sum(-1) - torch.bmm(logits, x.unsqueeze(-1)).squeeze(-1)

    @staticmethod
    def backward(ctx, grad):
        logits, x = ctx.saved_tensors
        return torch.sigmoid(logits).sub_(x.unsqueeze(1)).mul_(grad.unsqueeze(-1)), None


@register("m2")
class M2(CVAE):
    """Kingma et al.'s M2: a label-conditional VAE and a classifier q(y|x), trained on
    labelled and unlabelled images together (exact sum over the labels)."""

    Config = M2Config
    # Grey levels under the Bernoulli likelihood (Pyro's setting), as m1 and m1m2 and
    # ``vaelab compare ssl``: the setting of the measured tables in docs/semi-supervised.md.
    train_defaults = {"monitor": "error", "val_size": 10000, "val_rows": "last", "binarize": "none"}

    def __init__(self, config: M2Config):
        super().__init__(config)
        c, h, w = config.input_shape
        self.classifier = mlp(c * h * w, config.classifier_hidden, config.num_classes, config.activation)
        if config.init == "glorot":  # the VAE's networks were initialised before the classifier existed
            glorot_(self.classifier)
        self.register_buffer("labelled_share", torch.tensor(1.0))  # f = N_labelled / N, from prepare()

    # -- q(y|x) ---------------------------------------------------------------------
    def classify(self, data: Batch | torch.Tensor) -> torch.Tensor:
        """Logits of q(y|x), (B, K)."""
        return self.classifier(inputs(data).flatten(1))

    def with_labels(self, data: Batch | torch.Tensor) -> Batch:
        """``data`` with every unlabelled row given q(y|x)'s likeliest class."""
        batch = data if isinstance(data, Batch) else Batch(inputs(data))
        with torch.no_grad():
            guess = self.classify(batch.x).argmax(-1)
        if batch.y is None:
            return Batch(batch.x, guess)
        known = batch.labelled_rows()
        return Batch(batch.x, torch.where(known, batch.y, guess), None, batch.extras)

    @torch.no_grad()
    def reconstruct(self, data: Batch | torch.Tensor) -> torch.Tensor:
        """Mean of p(x | y, z = E[q(z|x, y)]), with q(y|x)'s class where a row has no label."""
        return super().reconstruct(self.with_labels(data))

    # -- −L(x, y) for every y at once ------------------------------------------------
    def neg_L_every_class(self, x: torch.Tensor) -> torch.Tensor:
        """−L(x, y) for every label y of every image: (B, K), one reparameterised z per pair.
        The KL carries the weight β (``--beta``, raised from 0 by ``--kl-warmup``), as the
        VAE's; β = 1, the default, is −L itself."""
        b, k, d = len(x), self.config.num_classes, x[0].numel()
        flat = x.reshape(b, d)
        first, rest = self.encoder[1][0], self.encoder[1][1:]
        h_x = F.linear(flat, first.weight[:, :d], first.bias)       # the image's share, once per image
        h = h_x.unsqueeze(1) + first.weight[:, d:].t().unsqueeze(0)  # + the label's: column y of W_y
        mu, logvar = gaussian_params(rest(h))                         # (B, K, Z)
        std = torch.exp(0.5 * logvar)
        z = torch.addcmul(mu, std, torch.randn_like(mu))
        kl = 0.5 * (mu.square() + std.square() - 1.0 - logvar).sum(-1)
        dec_first, dec_rest = self.decoder[0][0], self.decoder[0][1:]
        z_dim = self.config.latent_dim
        h = F.linear(z, dec_first.weight[:, :z_dim], dec_first.bias) + dec_first.weight[:, z_dim:].t().unsqueeze(0)
        out = dec_rest(h)                                              # (B, K, params·D)
        if isinstance(self.likelihood, Bernoulli):
            nll = _BernoulliEveryClass.apply(out, flat)
        else:
            nll = -self.likelihood.log_prob(out.view(b, k, *self.out_shape), x.unsqueeze(1))
        return nll + self.kl_weight * kl + math.log(k)                 # − log p(y) = log K

    # -- the objective J^α -----------------------------------------------------------
    def loss(self, batch: Batch | torch.Tensor) -> Loss:
        """f·mean(−L) over labelled rows + (1−f)·mean(−U) over unlabelled rows
        + α·mean(−log q(y|x)) over labelled rows (module docstring)."""
        batch = batch if isinstance(batch, Batch) else Batch(batch)
        x = self.drawn_inputs(batch)
        neg_L = self.neg_L_every_class(x)
        log_qy = F.log_softmax(self.classify(x), -1)
        labelled = batch.labelled_rows() if batch.y is not None else torch.zeros(len(x), dtype=torch.bool,
                                                                                  device=x.device)
        f = float(self.labelled_share)
        terms, weights = {}, {}
        if bool(labelled.any()):
            y = self.checked_labels(batch.y[labelled])
            terms["neg_L"] = neg_L[labelled].gather(1, y[:, None]).mean()
            terms["neg_log_qy"] = -log_qy[labelled].gather(1, y[:, None]).mean()
            weights["neg_L"], weights["neg_log_qy"] = f, self.config.alpha
        if not bool(labelled.all()):
            log_q = log_qy[~labelled]
            neg_U = (log_q.exp() * (neg_L[~labelled] + log_q)).sum(1)  # Σ_y q(y|x)(−L(x, y)) − H(q(y|x))
            terms["neg_U"] = neg_U.mean()
            weights["neg_U"] = 1.0 - f
        total = sum(weights[k] * v for k, v in terms.items())
        return Loss(total, terms, weights)

    def drawn_inputs(self, batch: Batch) -> torch.Tensor:
        """The inputs a training step sees. Codes of an earlier stage that carry their
        posterior std (``extras["code_std"]``, :func:`code_rows`) are drawn afresh each step,
        z1 ~ N(mean, std²), as Kingma et al.'s official M1 + M2 does; evaluation, and images,
        read the inputs as they are."""
        std = batch.extras.get(CODE_STD)
        if std is None or not self.training:
            return batch.x
        return torch.addcmul(batch.x, std, torch.randn_like(std))

    def checked_labels(self, y: torch.Tensor) -> torch.Tensor:
        """Class indices in 0..K−1, else one line naming the label (the cvae's check)."""
        self.one_hot(y)
        return y

    def end_of_run(self, run_dir, data: Batch, seed: int = 0) -> list[str]:
        """The class-fixed style grid (``samples.png``, one row per class), reconstructions and
        ``analogies.png`` (8 training digits, each written as every class; rows without a
        label take q(y|x)'s class). Codes of an earlier stage (1×1×D rows) are no pictures."""
        from pathlib import Path

        from ..viz.analogy import save_analogies

        if self.input_shape[1] == 1:
            return []
        written = super().end_of_run(run_dir, data, seed)
        if len(data):
            first = self.with_labels(data[:8])
            save_analogies(self, first.x, first.y, Path(run_dir) / "analogies.png")
            written.append("analogies.png")
        return written

    def prepare(self, data: Batch | torch.Tensor) -> None:
        """The labelled share f of the training rows, then the VAE's output bias."""
        labelled = data.labelled_rows() if isinstance(data, Batch) and data.y is not None else None
        self.labelled_share.fill_(0.0 if labelled is None else float(labelled.float().mean()))
        if labelled is not None and bool(labelled.any()):
            self.checked_labels(data.y[labelled])
        super(CVAE, self).prepare(data)


# --- M1: a VAE's codes for a classifier of the labelled few ------------------------------

M1_CLASSIFIERS = ("svm", "knn")
CODE_STD = "code_std"
M1_MAX_LABELLED = 10000


@dataclass(frozen=True)
class M1Config(VAEConfig):
    """:class:`~vaelab.models.vae.VAEConfig` with the paper's sizes (two hidden layers of 600
    softplus units, z = 50), plus the classifier fitted on the labelled images' codes."""

    latent_dim: int = field(default=50, metadata={"help": "size of the latent code z"})
    hidden: tuple[int, ...] = field(default=(600, 600), metadata={
        "help": "hidden layer sizes, e.g. 600,600 (the paper) or 500,500 (its official code)"})
    activation: str = field(default="softplus", metadata={
        "help": "relu, tanh, elu, leaky-relu, softplus, gelu, silu or sigmoid"})
    classifier: str = field(default="svm", metadata={
        "help": "classifier of the codes: svm (scikit-learn's SVC, RBF kernel) or knn (k nearest neighbours)"})
    svm_c: float = field(default=10.0, metadata={"help": "C of the RBF SVM"})
    knn_k: int = field(default=5, metadata={"help": "k of the nearest-neighbour classifier"})
    active_std: float = field(default=0.1, metadata={
        "help": "keep the code dimensions whose posterior mean varies more than this over the labelled "
                "images (the official code's 0.1)"})

    def validate(self) -> None:
        super().validate()
        choice("m1 classifier", self.classifier, M1_CLASSIFIERS)
        require(self.svm_c > 0 and math.isfinite(self.svm_c), f"svm_c must be > 0, got {self.svm_c}")
        require(self.knn_k >= 1, f"knn_k must be >= 1, got {self.knn_k}")
        require(self.active_std >= 0, f"active_std must be >= 0, got {self.active_std}")


@register("m1")
class M1(VAE):
    """Kingma et al.'s M1: a VAE trained on every image, whose posterior means feed a classifier
    (an SVM or kNN here; the paper's TSVM is transductive) fitted on the labelled few.

    The labelled images are part of the model (buffers set by ``prepare``), so the classifier
    is refitted on the current encoder's codes whenever the weights change (each validation,
    and after loading) and never pickled: ``classify`` stays a pure function of the saved
    tensors.
    """

    Config = M1Config
    train_defaults = {"monitor": "error", "val_size": 10000, "val_rows": "last", "binarize": "none"}

    def __init__(self, config: M1Config):
        super().__init__(config)
        c, h, w = config.input_shape
        self.register_buffer("labelled_x", torch.zeros(0, c, h, w))
        self.register_buffer("labelled_y", torch.zeros(0, dtype=torch.int64))
        self._fitted = (None, None)

    def prepare(self, data: Batch | torch.Tensor) -> None:
        """Keep the labelled training images and their labels; then the VAE's output bias."""
        self.keep_labelled(data)
        super().prepare(data)

    def keep_labelled(self, data: Batch | torch.Tensor) -> None:
        """Make the labelled rows of ``data`` the classifier's training set; the VAE's weights
        stay as they are (so one trained VAE serves every labelled subset)."""
        rows = data.labelled_rows() if isinstance(data, Batch) and data.y is not None else None
        if rows is None or not bool(rows.any()):
            raise VaelabError("m1 fits its classifier on labelled images, but the training data has none; "
                              "train it on a labelled dataset with --labels N (e.g. --labels 100)")
        if int(rows.sum()) > M1_MAX_LABELLED:
            raise VaelabError(f"m1 keeps its labelled images in the model, and {int(rows.sum()):,} are labelled; "
                              f"pass --labels N with N <= {M1_MAX_LABELLED:,} (the semi-supervised setting)")
        self.labelled_x = data.x[rows].detach().float().clone().to(self.labelled_x.device)
        self.labelled_y = data.y[rows].detach().clone().to(self.labelled_y.device)
        self._fitted = (None, None)

    @classmethod
    def from_vae(cls, vae: VAE, data: Batch, **classifier) -> M1:
        """M1 on a trained VAE (the encoder of Kingma et al.'s official code is one pretrained
        VAE shared by every labelled subset): its weights, the labelled rows of ``data`` and
        the classifier settings ``classifier`` (``classifier``, ``svm_c``, ...)."""
        if type(vae) is not VAE:
            raise VaelabError(f"M1.from_vae takes a trained vae, not a {type(vae).__name__}")
        model = cls(M1Config.from_dict({**vae.config.to_dict(), **classifier}, where="m1's settings"))
        missing, unexpected = model.load_state_dict(vae.state_dict(), strict=False)
        if unexpected or set(missing) - {"labelled_x", "labelled_y"}:
            raise VaelabError(f"this vae's weights do not fit m1: {sorted(set(missing) | set(unexpected))[:3]}")
        model.keep_labelled(data)
        return model.to(next(vae.parameters()).device).eval()

    def adopt_shapes(self, tensors: dict[str, torch.Tensor]) -> None:
        for name in ("labelled_x", "labelled_y"):
            saved = tensors.get(name)
            own = getattr(self, name)
            if saved is not None and tuple(saved.shape[1:]) == tuple(own.shape[1:]):
                setattr(self, name, torch.empty(saved.shape, dtype=own.dtype, device=own.device))

    # -- the classifier of the codes -------------------------------------------------
    def _weights_version(self) -> tuple:
        """A checksum of what the codes of the labelled images depend on (the encoder's weights
        and those images); in-place optimiser steps need not bump tensors' version counters."""
        with torch.no_grad():
            sums = [float(t.double().sum()) for t in (*self.encoder.parameters(), self.labelled_x)]
        return (*sums, tuple(self.labelled_x.shape))

    def active_dims(self) -> torch.Tensor:
        """Boolean mask of the code dimensions whose posterior mean varies by more than
        ``active_std`` over the labelled images (the official code's rule; all dimensions if
        none does, as in an untrained model): what the classifier, and M1 + M2's M2, read."""
        if len(self.labelled_y) == 0:
            raise VaelabError("this m1 holds no labelled images to choose its active dimensions; "
                              "train it with --labels N")
        with torch.no_grad():
            keep = self.posterior_params(self.labelled_x)[0].std(0) > self.config.active_std
        return keep if bool(keep.any()) else torch.ones_like(keep)

    def _classifier(self):
        """(kept dimensions, fitted scikit-learn classifier), refitted when the weights changed."""
        version, fitted = self._fitted
        if version == self._weights_version() and fitted is not None:
            return fitted
        if len(self.labelled_y) == 0:
            raise VaelabError("this m1 holds no labelled images to fit its classifier; train it with --labels N")
        with torch.no_grad():
            codes = self.posterior_params(self.labelled_x)[0].double().cpu()
        keep = self.active_dims().cpu()
        features, labels = codes[:, keep].numpy(), self.labelled_y.cpu().numpy()
        if self.config.classifier == "svm":
            from sklearn.svm import SVC

            model = SVC(C=self.config.svm_c, kernel="rbf", gamma="scale").fit(features, labels)
        else:
            from sklearn.neighbors import KNeighborsClassifier

            model = KNeighborsClassifier(min(self.config.knn_k, len(labels))).fit(features, labels)
        self._fitted = (self._weights_version(), (keep, model))
        return keep, model

    def classify(self, data: Batch | torch.Tensor) -> torch.Tensor:
        """One-hot rows of the classifier's prediction from the codes E[q(z|x)], (B, K)."""
        keep, model = self._classifier()
        with torch.no_grad():
            codes = self.posterior_params(inputs(data))[0].double().cpu()[:, keep].numpy()
        predicted = torch.as_tensor(model.predict(codes), dtype=torch.int64)
        k = int(self.labelled_y.max()) + 1
        return torch.nn.functional.one_hot(predicted, max(k, 2)).float().to(self.labelled_x.device)


# --- M1 + M2: M2 trained on M1's codes ----------------------------------------------------


@dataclass(frozen=True)
class M1M2Config(Config):
    """The two stages' settings: M1 (a VAE of the images) and M2 on its posterior means z1,
    with a Gaussian p(z1|y, z2) as in the paper's stacked model."""

    input_shape: tuple[int, int, int] = fields.input_shape()
    m1_hidden: tuple[int, ...] = field(default=(600, 600), metadata={"help": "M1's hidden layer sizes"})
    m1_latent_dim: int = field(default=50, metadata={"help": "size of M1's code z1 (M2's input)"})
    m1_epochs: int = field(default=100, metadata={"help": "training epochs of the first stage, M1"})
    m2_hidden: tuple[int, ...] = field(default=(500,), metadata={
        "help": "M2's hidden layer sizes (the official code: 500, or 300 with 100 labels)"})
    m2_latent_dim: int = field(default=50, metadata={"help": "size of M2's code z2"})
    activation: str = field(default="softplus", metadata={
        "help": "relu, tanh, elu, leaky-relu, softplus, gelu, silu or sigmoid"})
    alpha: float = field(default=0.1, metadata={"help": "M2's weight of the classification term per example"})

    def stage_configs(self) -> tuple[dict, dict]:
        m1 = {"hidden": list(self.m1_hidden), "latent_dim": self.m1_latent_dim, "activation": self.activation}
        m2 = {"hidden": list(self.m2_hidden), "latent_dim": self.m2_latent_dim, "activation": self.activation,
              "classifier_hidden": list(self.m2_hidden), "alpha": self.alpha, "likelihood": "gaussian-real",
              "output_bias_from_data": False}
        return m1, m2

    def validate(self) -> None:
        require(self.m1_epochs >= 1, f"m1_epochs must be >= 1, got {self.m1_epochs}")
        m1, m2 = self.stage_configs()
        M1Config.from_dict({"input_shape": list(self.input_shape), **m1}, where="m1m2's M1 settings")
        M2Config.from_dict({"input_shape": [1, 1, self.m1_latent_dim], **m2}, where="m1m2's M2 settings")


def code_rows(model, ds, path, keep: torch.Tensor | None = None):
    """``ds`` as M2 of M1 + M2 reads it: ``model``'s posterior means as 1×1×D rows (only the
    dimensions ``keep`` marks, if given), labels kept, with the posterior std of each code in
    ``extras["code_std"]``, from which training draws z1 ~ q(z1|x) (:meth:`M2.drawn_inputs`).
    The means are cached in ``path`` (:func:`vaelab.data.encoded`)."""
    from ..data import Dataset, encoded

    codes = encoded(model, ds, path)
    with torch.no_grad():
        std = torch.cat([torch.exp(0.5 * model.posterior_params(part)[1]) for part in ds.x.split(1000)])
    x = codes.x
    if keep is not None:
        keep = keep.to(x.device)
        x, std = x[:, keep], std[:, keep.to(std.device)]
    name = codes.name if keep is None else f"{codes.name} ({int(keep.sum())} active dimensions)"
    return Dataset(name, x.reshape(len(x), 1, 1, -1), codes.y, codes.classes, codes.labelled,
                   extras={CODE_STD: std.reshape(len(std), 1, 1, -1).to(x.device)})


def _m1_codes(models: dict, ds, directory):
    """Stage 2's data: M1's posterior means of every image, its active dimensions."""
    m1 = models["m1"]
    return code_rows(m1, ds, directory / "m1-codes.safetensors", keep=m1.active_dims())


@register("m1m2")
class M1M2(Model):
    """Kingma et al.'s stacked M1 + M2: M2 trained on the codes of an M1 trained first, a run
    of two stages (``1-m1``, ``2-m2``); q(y|x) is M2's classifier of M1's code of x."""

    Config = M1M2Config
    train_defaults = {"monitor": "error", "val_size": 10000, "val_rows": "last", "binarize": "none"}

    def __init__(self, config: M1M2Config):
        super().__init__(config)
        m1, m2 = config.stage_configs()
        self.m1 = M1(M1Config.from_dict({"input_shape": list(config.input_shape), **m1}))
        self.m2 = M2(M2Config.from_dict({"input_shape": [1, 1, config.m1_latent_dim], **m2}))

    def stages(self, train_settings: dict) -> list:
        from .pipeline import Stage

        m1, m2 = self.config.stage_configs()
        first = {**train_settings, "epochs": self.config.m1_epochs}
        return [Stage("m1", "m1", m1, first), Stage("m2", "m2", m2, dict(train_settings), _m1_codes)]

    @classmethod
    def from_stages(cls, models: dict) -> M1M2:
        m1, m2 = models["m1"], models["m2"]
        config = M1M2Config(input_shape=tuple(m1.config.input_shape), m1_hidden=tuple(m1.config.hidden),
                            m1_latent_dim=m1.config.latent_dim, m2_hidden=tuple(m2.config.hidden),
                            m2_latent_dim=m2.config.latent_dim, activation=m1.config.activation,
                            alpha=m2.config.alpha)
        composite = cls.__new__(cls)
        Model.__init__(composite, config)
        composite.m1, composite.m2 = m1, m2
        return composite

    def codes(self, data: Batch | torch.Tensor) -> Batch:
        """``data`` as M2 sees it: M1's posterior means of its active dimensions as 1×1×D
        rows, labels kept."""
        batch = data if isinstance(data, Batch) else Batch(inputs(data))
        with torch.no_grad():
            z1 = self.m1.posterior_params(batch.x)[0][:, self.m1.active_dims()]
        return Batch(z1.reshape(len(z1), 1, 1, -1), batch.y, batch.labelled)

    def classify(self, data: Batch | torch.Tensor) -> torch.Tensor:
        return self.m2.classify(self.codes(data))

    def loss(self, batch: Batch | torch.Tensor) -> Loss:
        """M2's objective on M1's codes (M1 is trained in its own stage)."""
        return self.m2.loss(self.codes(batch))
