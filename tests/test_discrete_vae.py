"""catvae and binvae: the relaxations, the exact KL, honest likelihoods of the discrete model,
temperature annealing, and the clustering and retrieval figures of their codes."""
from __future__ import annotations

import json
import math

import pytest
import torch

import vaelab
from vaelab.cli import main
from vaelab.errors import VaelabError
from vaelab.evaluation.codes import code_metrics
from vaelab.evaluation.retrieval import pca_codes, precision_at_k, random_projection_codes
from vaelab.models.discrete_vae import binary_concrete, gumbel_softmax

from conftest import FAST

SMALL = {"hidden": [32]}


def _one_line(capsys, args, *fragments):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


# -- the relaxations --------------------------------------------------------------------------
def test_gumbel_softmax_is_on_the_simplex_and_one_hot_as_the_temperature_falls():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 3, 7, generator=g)
    y = gumbel_softmax(logits, 1.0, generator=g)
    assert (y >= 0).all() and torch.allclose(y.sum(-1), torch.ones(500, 3))
    assert y.max(-1).values.mean() < 0.9  # τ = 1: far from one-hot
    cold = gumbel_softmax(logits, 0.001, generator=g)
    assert (cold.max(-1).values > 0.99).float().mean() > 0.97 and torch.allclose(cold.sum(-1), torch.ones(500, 3))


def test_gumbel_softmax_argmax_follows_the_categorical():
    g = torch.Generator().manual_seed(1)
    probs = torch.tensor([0.6, 0.3, 0.1])
    y = gumbel_softmax(probs.log().expand(20000, 3), 0.5, generator=g)
    freq = torch.bincount(y.argmax(-1), minlength=3).float() / 20000
    assert torch.allclose(freq, probs, atol=0.015)


def test_binary_concrete_is_in_the_open_interval_and_binary_as_the_temperature_falls():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2000, 16, generator=g)
    y = binary_concrete(logits, 1.0, generator=g)
    assert ((y > 0) & (y < 1)).all()
    cold = binary_concrete(logits, 0.01, generator=g)
    assert (torch.minimum(cold, 1 - cold) < 0.01).float().mean() > 0.97
    # P(y > 1/2) = σ(logit), whatever τ
    ones = binary_concrete(torch.full((20000,), 1.0), 0.3, generator=g) > 0.5
    assert ones.float().mean() == pytest.approx(torch.sigmoid(torch.tensor(1.0)).item(), abs=0.015)


@pytest.mark.parametrize("relax", [gumbel_softmax, binary_concrete])
def test_straight_through_is_hard_forward_and_passes_a_gradient(relax):
    logits = torch.randn(64, 5, requires_grad=True)
    y = relax(logits, 0.7, hard=True)
    assert set(y.detach().unique().tolist()) <= {0.0, 1.0}
    if relax is gumbel_softmax:
        assert (y.detach().sum(-1) == 1).all()
    (y * torch.arange(5.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


# -- the model's KL and likelihoods --------------------------------------------------------------
@pytest.mark.parametrize("name,config", [("catvae", {"categories": 3, "classes": 4}), ("binvae", {"bits": 6})])
def test_exact_kl_matches_a_monte_carlo_estimate(name, config):
    torch.manual_seed(0)
    model = vaelab.build(name, input_shape=(1, 4, 4), **SMALL, **config)
    with torch.no_grad():
        logits = 2 * torch.randn(model.logits(torch.rand(3, 1, 4, 4)).shape)  # a KL far from 0
        exact = model.kl(logits)
        _, log_q = model.hard_samples(logits, 40000)
        mc = (log_q - model.log_prior).mean(1)
    assert exact.min() > 0.3
    assert torch.allclose(mc, exact, atol=0.03), (mc, exact)


@pytest.mark.parametrize("name,config", [("catvae", {"categories": 1, "classes": 10}), ("binvae", {"bits": 4})])
def test_importance_sampling_converges_to_the_enumerated_log_likelihood(name, config, mnist_small):
    torch.manual_seed(0)
    model = vaelab.build(name, **SMALL, **config).eval()
    x = (mnist_small.test.x[:5] > 0.5).float()
    with torch.no_grad():
        model.decoder[0][-1].bias.copy_(torch.logit(x.mean(0).flatten().clamp(0.05, 0.95)))
        exact = model.enumerated_log_likelihood(x).float()
    estimate = vaelab.log_likelihood(model, x, 3000, seed=0).float()
    few = vaelab.log_likelihood(model, x, 1, seed=0).float()
    assert torch.allclose(estimate, exact, atol=0.05), (estimate, exact)
    assert (few <= exact + 1e-3).float().mean() >= 0.6  # one sample: the ELBO side of the truth, mostly


def test_enumeration_of_a_large_code_space_is_refused():
    model = vaelab.build("catvae", **SMALL)
    with pytest.raises(VaelabError, match="about 10\\^30 codes.*--nll-samples"):
        model.enumerated_log_likelihood(torch.rand(2, 1, 28, 28))


def test_evaluation_uses_hard_codes_and_training_the_relaxation():
    torch.manual_seed(0)
    model = vaelab.build("catvae", input_shape=(1, 4, 4), categories=2, classes=3, **SMALL)
    z_seen = []
    model.decoder.register_forward_pre_hook(lambda m, args: z_seen.append(args[0].detach()))
    x = torch.rand(8, 1, 4, 4).round()
    model.train()
    model.loss(x)
    model.eval()
    model.loss(x)
    relaxed, hard = z_seen
    assert not set(relaxed.unique().tolist()) <= {0.0, 1.0}
    assert set(hard.unique().tolist()) <= {0.0, 1.0} and (hard.sum(1) == 2).all()


# -- annealing ------------------------------------------------------------------------------------
def test_temperature_follows_the_schedule():
    model = vaelab.build("catvae", temperature=2.0, min_temperature=0.5, anneal_rate=0.1, **SMALL)
    for epoch in (0.0, 1.5, 7.0):
        model.schedule(epoch)
        assert model.temperature == pytest.approx(max(0.5, 2.0 * math.exp(-0.1 * epoch)))
    model.schedule(100.0)
    assert model.temperature == 0.5
    model.schedule(math.inf)  # evaluation
    assert model.temperature == 0.5
    constant = vaelab.build("binvae", temperature=0.7, min_temperature=0.7, anneal_rate=0.0, **SMALL)
    constant.schedule(50.0)
    assert constant.temperature == 0.7


def test_annealing_resumes_where_it_stopped(synthetic_small, tmp_path):
    data = synthetic_small.train.subset(slice(0, 300))
    settings = {"temperature": 1.0, "min_temperature": 0.1, "anneal_rate": 0.5, **SMALL}
    train = {**FAST, "val_size": 0, "seed": 3}
    whole = vaelab.train("binvae", data, tmp_path / "whole", model_config=settings,
                         config={**train, "epochs": 2}, progress=False)
    vaelab.train("binvae", data, tmp_path / "parts", model_config=settings, config={**train, "epochs": 1},
                 progress=False)
    resumed = vaelab.train("binvae", data, tmp_path / "parts", model_config=settings,
                           config={**train, "epochs": 2}, resume=True, progress=False)
    steps = 3  # 300 images at batch 100
    expected = math.exp(-0.5 * (1 + (steps - 1) / steps))  # before the last step of epoch 2
    assert whole.model.temperature == pytest.approx(expected)
    assert resumed.model.temperature == pytest.approx(expected)
    for a, b in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


# -- clustering and retrieval figures ------------------------------------------------------------
def test_precision_at_k_is_exact_with_ties_at_their_expected_share():
    db = torch.tensor([[0, 0], [0, 0], [0, 1], [1, 1], [1, 1], [1, 0]], dtype=torch.bool)
    db_labels = torch.tensor([1, 2, 1, 1, 2, 2])
    query = torch.tensor([[0, 0], [1, 1]], dtype=torch.bool)
    q_labels = torch.tensor([1, 2])
    # query 0: distance 0 -> labels {1, 2}; distance 1 -> {1 (01), 2 (10)}; distance 2 -> {1, 2}
    # k = 1: one of the two at distance 0, relevant with probability 1/2
    assert precision_at_k(query[:1], q_labels[:1], db, db_labels, k=1) == pytest.approx(0.5)
    # k = 3: both at distance 0 (1 relevant) + one of two at distance 1 (half relevant): 1.5 / 3
    assert precision_at_k(query[:1], q_labels[:1], db, db_labels, k=3) == pytest.approx(0.5)
    # query 1 (label 2): distance 0 -> labels {1, 2}; distance 1 -> {1 (01), 2 (10)}
    assert precision_at_k(query[1:], q_labels[1:], db, db_labels, k=2) == pytest.approx(0.5)
    assert precision_at_k(query, q_labels, db, db_labels, k=6) == pytest.approx(0.5)
    perfect = precision_at_k(query, torch.tensor([1, 1]), db[[0, 3]], torch.tensor([1, 1]), k=2)
    assert perfect == 1.0
    # chunking does not change the figure
    g = torch.Generator().manual_seed(0)
    q, d = torch.rand(50, 8, generator=g) > 0.5, torch.rand(300, 8, generator=g) > 0.5
    ql, dl = torch.randint(3, (50,), generator=g), torch.randint(3, (300,), generator=g)
    assert precision_at_k(q, ql, d, dl, k=10, chunk=7) == pytest.approx(precision_at_k(q, ql, d, dl, k=10))


def test_precision_at_k_matches_a_brute_force_average_over_tie_orders():
    g = torch.Generator().manual_seed(1)
    q, d = torch.rand(4, 3, generator=g) > 0.5, torch.rand(40, 3, generator=g) > 0.5
    ql, dl = torch.randint(2, (4,), generator=g), torch.randint(2, (40,), generator=g)
    dist = (q.unsqueeze(1) != d.unsqueeze(0)).sum(-1).float()
    total = 0.0
    for _ in range(3000):  # random tie-breaking: sort by distance plus a tiny random jitter
        order = (dist + 0.01 * torch.rand(dist.shape, generator=g)).argsort(1)[:, :7]
        total += float((dl[order] == ql.unsqueeze(1)).float().mean())
    assert precision_at_k(q, ql, d, dl, k=7) == pytest.approx(total / 3000, abs=0.01)


def test_pixel_baselines_give_codes_of_the_asked_length(mnist_small):
    train, test = mnist_small.train.x[:500], mnist_small.test.x[:100]
    for make in (pca_codes, random_projection_codes):
        a, b = make(train, test, 16)
        assert a.shape == (500, 16) and b.shape == (100, 16) and a.dtype == torch.bool
        assert 0.2 < a.float().mean() < 0.8
    a, b = pca_codes(train, test, 8)
    p = precision_at_k(b, mnist_small.test.y[:100], a, mnist_small.train.y[:500], k=20)
    assert p > 0.3  # far above chance (0.1)


class _Fixed(torch.nn.Module):
    """A stand-in model whose codes are a fixed function of the image's first pixel."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def cluster_probs(self, batch):
        v = (batch.x.flatten(1)[:, 0] * 3).long().clamp(0, 2)
        return torch.nn.functional.one_hot(v, 3).float() * 0.9 + 0.05

    def binary_codes(self, batch):
        v = (batch.x.flatten(1)[:, 0] * 3).long().clamp(0, 2)
        return torch.stack([v >= 1, v >= 2], 1)


def test_code_metrics_on_a_constructed_example():
    ref_x = torch.tensor([0.1, 0.2, 0.5, 0.6, 0.9]).view(5, 1, 1, 1)
    ref_y = torch.tensor([0, 0, 1, 2, 2])
    x = torch.tensor([0.1, 0.5, 0.9, 0.95]).view(4, 1, 1, 1)
    y = torch.tensor([0, 2, 2, 1])
    m = code_metrics(_Fixed(), vaelab.Batch(x, y), vaelab.Batch(ref_x, ref_y))
    # clusters: 0 -> {0, 0}: label 0; 1 -> {1, 2}: majority tie -> 1 (argmax takes the first); 2 -> {2}: 2
    assert m["cluster_error"] == pytest.approx(2 / 4)  # images 1 (2 named 1) and 3 (1 named 2)
    assert m["clusters_used"] == 3 and m["clusters"] == 3
    assert m["code_bits"] == 2
    # k = 100 > 5 reference images: all 5, so precision = the share of same-label images
    assert m["precision_at_100"] == pytest.approx((2 / 5 + 2 / 5 + 2 / 5 + 1 / 5) / 4)
    assert code_metrics(_Fixed(), vaelab.Batch(x), vaelab.Batch(ref_x, ref_y)) == {}


# -- end to end through `vaelab eval` ------------------------------------------------------------
@pytest.mark.parametrize("name,config,keys", [
    ("catvae", {"categories": 1, "classes": 12}, ("cluster_error", "cluster_error_most_confident", "clusters_used")),
    ("binvae", {"bits": 12}, ("precision_at_100", "code_bits")),
])
def test_eval_reports_code_figures_by_capability(name, config, keys, mnist_small, data_dir, tmp_path, capsys):
    out = tmp_path / name
    vaelab.train(name, mnist_small.train, out, model_config={**SMALL, **config},
                 config={**FAST, "epochs": 2, "val_size": 0, "lr": 3e-3}, progress=False)
    code = main(["eval", str(out), "--data", "mnist", "--data-dir", str(data_dir), "--limit", "300",
                 "--nll-samples", "20", "--json", "--threads", "1", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    for key in keys:
        assert key in result, key
    assert 0 < result["nll"] < 300 and result["nll"] <= -result["elbo"] + 5
    if name == "catvae":
        # random assignments to 12 clusters score 0.79 on 300 digits (0.75 the least of 2,000
        # draws); two epochs reach about 0.6
        assert result["clusters"] == 12 and result["cluster_error"] < 0.7
        assert "precision_at_100" not in result
    else:
        assert result["code_bits"] == 12 and 0.15 < result["precision_at_100"] <= 1
        assert "cluster_error" not in result


def test_many_categoricals_have_no_cluster_capability():
    assert not hasattr(vaelab.build("catvae", categories=2, classes=5, **SMALL), "cluster_probs")
    assert hasattr(vaelab.build("catvae", categories=1, classes=5, **SMALL), "cluster_probs")


# -- bad input ------------------------------------------------------------------------------------
def test_a_temperature_of_zero_is_one_line(tmp_path, capsys, synthetic_npy):
    _one_line(capsys, ["train", "catvae", "--data", synthetic_npy, "--out", tmp_path / "run",
                       "--no-progress", "--temperature", "0"], "temperature must be > 0", "0.0")


@pytest.mark.parametrize("name,settings,fragment", [
    ("binvae", {"temperature": -1.0}, "temperature must be > 0"),
    ("catvae", {"min_temperature": 0.0}, "min_temperature must be > 0"),
    ("catvae", {"min_temperature": 2.0}, "must be <= temperature"),
    ("binvae", {"anneal_rate": -0.1}, "anneal_rate must be >= 0"),
    ("catvae", {"classes": 1}, "classes must be >= 2"),
    ("catvae", {"categories": 0}, "categories must be >= 1"),
    ("binvae", {"bits": 0}, "bits must be >= 1"),
])
def test_bad_settings_are_refused(name, settings, fragment):
    with pytest.raises(VaelabError, match=fragment):
        vaelab.build(name, **settings)


def test_bad_retrieval_inputs_are_refused():
    codes, labels = torch.zeros(4, 8, dtype=torch.bool), torch.zeros(4, dtype=torch.long)
    with pytest.raises(VaelabError, match="bool"):
        precision_at_k(codes.float(), labels, codes, labels, k=2)
    with pytest.raises(VaelabError, match="bits"):
        precision_at_k(codes[:, :4], labels, codes, labels, k=2)
    with pytest.raises(VaelabError, match="between 1 and the database size 4"):
        precision_at_k(codes, labels, codes, labels, k=5)
    with pytest.raises(VaelabError, match="one query label per code"):
        precision_at_k(codes, labels[:3], codes, labels, k=2)
    with pytest.raises(VaelabError, match="temperature must be > 0"):
        gumbel_softmax(torch.zeros(2, 3), 0.0)
