"""Sohn et al. (2015) completion models: losses by hand, target-only scoring, the IS-CLL
against the bound, the exact NN likelihood, the spine round trip, bad input, the comparison."""
from __future__ import annotations

import json

import pytest
import torch
from torch import distributions as td

import vaelab
from vaelab.data.batch import Batch
from vaelab.data.derive import quadrant_mask
from vaelab.errors import VaelabError
from vaelab.evaluation.conditional import completion_bound, conditional_log_likelihood
from vaelab.models import build

from conftest import FAST

SMALL = {"hidden": [8], "latent_dim": 2, "baseline_hidden": [8]}


def _images(n=6, seed=0, shape=(1, 4, 4)):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


def _hand_log_p(logits, y):
    """Σ y·log σ(l) + (1 − y)·log(1 − σ(l)): grey-level y under a Bernoulli, written out."""
    p = torch.sigmoid(logits.double())
    return (y * p.log() + (1 - y) * (1 - p).log()).sum(-1).float()


def test_nn_loss_is_the_target_bce_by_hand():
    torch.manual_seed(0)
    m = build("sohn-nn", input_shape=(1, 4, 4), quadrants=1, hidden=[5])
    x = _images()
    target = torch.ones(4, 4, dtype=torch.bool)
    target[2:, :2] = False  # 1 quadrant given: the bottom-left
    masked = x.flatten(1).clone()
    masked[:, target.flatten()] = -1.0
    expected = -_hand_log_p(m.net(masked), x.flatten(1)[:, target.flatten()]).mean()
    assert torch.allclose(m.loss(Batch(x)).total, expected, atol=1e-5)


def test_hybrid_loss_equals_the_equations_by_hand():
    torch.manual_seed(0)
    m = build("sohn-hybrid", input_shape=(1, 4, 4), quadrants=2, alpha=0.3, hidden=[6], latent_dim=2,
              baseline_hidden=[5])
    x = _images()
    torch.manual_seed(7)
    loss = m.loss(Batch(x))
    # by hand: the target is the right half; x has it at −1
    t = torch.tensor([c >= 2 for r in range(4) for c in range(4)])
    flat = x.flatten(1)
    xin = flat.masked_fill(t, -1.0)
    y_hat = torch.sigmoid(m.baseline.net(xin))
    prior_in, recog_in = xin.clone(), flat.clone()
    prior_in[:, t] = y_hat
    mu_p, lv_p = m.prior(prior_in).chunk(2, -1)
    mu_q, lv_q = m.recognition(recog_in).chunk(2, -1)
    torch.manual_seed(7)
    z_q = mu_q + (0.5 * lv_q).exp() * torch.randn_like(mu_q)
    z_p = mu_p + (0.5 * lv_p).exp() * torch.randn_like(mu_p)
    y = flat[:, t]
    recon_q = -_hand_log_p(m.generation(torch.cat([z_q, xin], 1)), y).mean()
    recon_p = -_hand_log_p(m.generation(torch.cat([z_p, xin], 1)), y).mean()
    kl = td.kl_divergence(td.Normal(mu_q, (0.5 * lv_q).exp()), td.Normal(mu_p, (0.5 * lv_p).exp())).sum(1).mean()
    assert torch.allclose(loss.terms["cvae_kl"], kl, atol=1e-5)
    assert torch.allclose(loss.terms["cvae_recon"], recon_q, atol=1e-4)
    assert torch.allclose(loss.terms["gsnn_recon"], recon_p, atol=1e-4)
    assert torch.allclose(loss.total, 0.3 * (recon_q + kl) + 0.7 * recon_p, atol=1e-4)


@pytest.mark.parametrize("name", ["sohn-nn", "sohn-cvae", "sohn-gsnn"])
def test_given_pixels_never_enter_the_likelihood(name):
    torch.manual_seed(0)
    m = build(name, input_shape=(1, 4, 4), quadrants=3, hidden=[6],
              **({} if name == "sohn-nn" else {"latent_dim": 2, "baseline_hidden": [6]}))
    rows = quadrant_mask(vaelab.Dataset("t", _images(), None), 3).batch()
    changed = Batch(rows.x, rows.y.masked_fill(~rows.extras["target_mask"], 0.123), extras=rows.extras)
    moved = Batch(rows.x, rows.y.masked_fill(rows.extras["target_mask"], 0.5), extras=rows.extras)

    def measured(batch):
        torch.manual_seed(3)
        return m.loss(batch).total, m.completion_log_weights(batch, 4, generator=torch.Generator().manual_seed(1))

    (a, wa), (b, wb), (c, _) = measured(rows), measured(changed), measured(moved)
    assert torch.equal(a, b) and torch.equal(wa, wb)
    assert not torch.allclose(a, c)  # the target pixels do count


def test_nn_cll_is_exact_for_every_k():
    torch.manual_seed(0)
    m = build("sohn-nn", input_shape=(1, 4, 4), quadrants=2, hidden=[5]).eval()
    rows = m.as_completion(Batch(_images(9)))
    one, many = (conditional_log_likelihood(m, rows, k) for k in (1, 50))
    assert torch.allclose(one, many)
    assert torch.allclose(-one.mean().float(), m.loss(rows).total.detach(), atol=1e-4)


def test_is_cll_is_below_the_bound_and_converges(synthetic_small):
    torch.manual_seed(0)
    m = build("sohn-cvae", quadrants=2, **SMALL)
    with torch.no_grad():  # make z matter and put q(z|x,y) away from p(z|x): a real gap to close
        m.generation[0].weight[:, :2] *= 20
        m.recognition[-1].bias[:2] += 1.5
    rows = m.eval().as_completion(synthetic_small.test.batch()[:60])
    bound = completion_bound(m, rows, seed=0)
    cll = {k: float(-conditional_log_likelihood(m, rows, k, seed=5).mean()) for k in (1, 10, 100, 1000)}
    assert cll[1000] <= bound + 1e-3
    assert cll[1000] <= cll[10] <= cll[1] + 1e-3
    assert abs(cll[1000] - cll[100]) < abs(cll[10] - cll[1000]) + 1e-3



@pytest.fixture(scope="module")
def runs(synthetic_small, tmp_path_factory):
    """A baseline and a CVAE on it, one short epoch each on synthetic digits (2 quadrants given)."""
    root = tmp_path_factory.mktemp("sohn")
    cfg = {**FAST, "epochs": 1, "val_size": 0}
    data = synthetic_small.train.subset(slice(0, 1000))
    vaelab.train("sohn-nn", data, root / "nn", model_config={"quadrants": 2, "hidden": [8]}, config=cfg,
                 val_data=synthetic_small.val, progress=False)
    vaelab.train("sohn-cvae", data, root / "cvae", model_config={"quadrants": 2, **SMALL, "baseline": str(root / "nn")},
                 config=cfg, val_data=synthetic_small.val, progress=False)
    return root, data, synthetic_small


def test_train_save_load_resume_eval_round_trip(runs):
    root, data, small = runs
    nn_model, cvae = vaelab.load(root / "nn"), vaelab.load(root / "cvae")
    for key, value in nn_model.state_dict().items():  # the frozen baseline travelled with the CVAE
        assert torch.equal(cvae.baseline.state_dict()[key], value)
    result = vaelab.train("sohn-cvae", data, root / "cvae", config={**FAST, "epochs": 2, "val_size": 0},
                          val_data=small.val, resume=True, progress=False)
    assert result.epochs_run == 2
    resumed = vaelab.load(root / "cvae")
    for key, value in nn_model.state_dict().items():
        assert torch.equal(resumed.baseline.state_dict()[key], value)
    assert not torch.equal(resumed.prior[0].weight, cvae.prior[0].weight)
    figures = vaelab.evaluate(resumed, small.test.subset(slice(0, 100)), nll_samples=20)
    assert figures["target_pixels"] == 392
    assert figures["target_cnll"] <= figures["target_nelbo"] + 0.5
    assert 0 < figures["target_mse"] < 392
    exact = vaelab.evaluate(nn_model, small.test.subset(slice(0, 100)), nll_samples=3)
    assert exact["target_cnll"] == pytest.approx(exact["target_nll"], rel=1e-5)
    assert (root / "cvae" / "completions.png").is_file()


def test_completion_samples_differ_and_keep_the_given_pixels(runs):
    root, _, small = runs
    cvae = vaelab.load(root / "cvae")
    rows = cvae.as_completion(small.test.batch()[:4])
    draws = cvae.complete_samples(rows, 3, generator=torch.Generator().manual_seed(0))
    given = ~rows.extras["target_mask"]
    assert torch.equal(draws[:, 0][given], rows.y[given])
    assert not torch.allclose(draws[:, 0], draws[:, 1])


def test_bad_input_is_one_line(runs, tmp_path):
    root, data, small = runs
    with pytest.raises(VaelabError, match="quadrants must be 1, 2 or 3"):
        build("sohn-nn", quadrants=4)
    with pytest.raises(VaelabError, match=r"alpha must lie in \[0, 1\]"):
        build("sohn-hybrid", alpha=1.5)
    m = build("sohn-cvae", quadrants=2, **SMALL)
    with pytest.raises(VaelabError, match="needs a trained baseline"):
        m.attach_baseline("")
    with pytest.raises(VaelabError, match="does not exist"):
        m.attach_baseline(str(tmp_path / "missing"))
    other = build("sohn-cvae", quadrants=3, **SMALL)
    with pytest.raises(VaelabError, match="trained with --quadrants 2"):
        other.attach_baseline(str(root / "nn"))
    rows = quadrant_mask(small.test.subset(slice(0, 3)), 2).batch()
    with pytest.raises(VaelabError, match="target_mask"):
        m.complete(Batch(rows.x, rows.y))
    with pytest.raises(VaelabError, match="other pixels than this model's --quadrants 3"):
        other.complete(rows)
    for err in (VaelabError,):
        with pytest.raises(err) as info:
            vaelab.train("sohn-cvae", data, tmp_path / "x", model_config={"quadrants": 2, **SMALL},
                         config={**FAST, "epochs": 1, "val_size": 0}, progress=False)
        assert "\n" not in str(info.value)


def test_compare_completion_tiny(tmp_path, data_dir):
    from vaelab.compare import completion

    kw = dict(data_dir=data_dir, quadrants=(3,), models=("nn", "cvae"), epochs=1, hidden=(8,), latent_dim=2,
              ks=(2, 20), train_size=700, val_size=200, test_size=40, threads=1, progress=False)
    result = completion(tmp_path, **kw)
    nn_row, cvae_row = result.rows
    assert (nn_row["model"], cvae_row["model"]) == ("nn", "cvae")
    assert nn_row["cll_k2"] == pytest.approx(nn_row["cll_k20"])  # exact for any k
    assert cvae_row["cll_k20"] <= cvae_row["target_nelbo"] + 0.5
    assert (nn_row["pyro_anchor"], cvae_row["pyro_anchor"]) == (25.4, 24.2)
    nn_run = tmp_path / "runs" / "q3" / "nn"  # the figure to choose by: the validation split's, not the test's
    val = [json.loads(line)["val"]["loss"] for line in (nn_run / "metrics.jsonl").read_text().splitlines()]
    assert nn_row["val_loss"] == min(val) and nn_row["val_loss"] != pytest.approx(nn_row["cll_k2"], abs=1e-6)
    held_out = vaelab.load_dataset("mnist", "train", data_dir=data_dir).x[500:700]  # the last 200 of 700
    with torch.no_grad():  # the NN's exact −log p(y|x) of the validation images
        exact = float(vaelab.load(nn_run).eval().loss(Batch(held_out)).total)
    assert nn_row["val_loss"] == pytest.approx(exact, rel=1e-4)
    table = json.loads((tmp_path / "results.json").read_text())
    assert [r["model"] for r in table["rows"]] == ["nn", "cvae"]
    assert len(result.figures) == 2
    again = completion(tmp_path, **kw)  # reused: the same numbers, nothing retrained
    assert again.rows == result.rows
    with pytest.raises(VaelabError, match="--quadrants 4 does not exist"):
        completion(tmp_path, **{**kw, "quadrants": (4,)})


def test_compare_completion_trains_on_a_cosine_schedule_when_asked(tmp_path, data_dir):
    from vaelab.compare import completion

    kw = dict(data_dir=data_dir, quadrants=(3,), models=("nn",), epochs=3, patience=0, hidden=(8,), ks=(2,),
              train_size=700, val_size=200, test_size=40, threads=1, progress=False)
    result = completion(tmp_path, lr_schedule="cosine", **kw)
    run = tmp_path / "runs" / "q3" / "nn"
    assert json.loads((run / "run.json").read_text())["train"]["lr_schedule"] == "cosine"
    lrs = [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(lrs) == 3 and lrs[0] > lrs[1] > lrs[2]  # decays over --epochs
    assert result.settings["lr_schedule"] == "cosine"
    with pytest.raises(VaelabError, match="other settings"):  # a constant-schedule run is not silently reused
        completion(tmp_path, lr_schedule="constant", **kw)


@pytest.mark.parametrize("args, fragment", [
    (["train", "sohn-nn", "--quadrants", "5"], "quadrants must be 1, 2 or 3"),
    (["train", "sohn-hybrid", "--alpha", "-0.1"], "alpha must lie in [0, 1]"),
    (["train", "sohn-cvae", "--baseline", "/nonexistent/run"], "does not exist"),
    (["compare", "completion", "--quadrants", "0"], "--quadrants 0 does not exist"),
    (["compare", "completion", "--quadrants", "3", "--test-size", "10", "--lr-schedule", "linear"],
     "unknown lr schedule 'linear'"),
])
def test_cli_refuses_in_one_line(args, fragment, capsys, tmp_path, request):
    from vaelab.cli import main

    # training takes any labelled 28×28 images; compare completion is defined on MNIST
    data = ([request.getfixturevalue("synthetic_npy")] if args[0] == "train"
            else ["mnist", "--data-dir", str(request.getfixturevalue("data_dir"))])
    code = main([*args, "--data", *data, "--out", str(tmp_path / "o"),
                 "--threads", "1", "--no-progress", *(["--epochs", "1"] if args[0] == "train" else [])])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert fragment in err


@pytest.mark.parametrize("command", [["sample", "-o"], ["reconstruct", "--data", "mnist", "-o"],
                                     ["encode", "--data", "mnist", "-o"]])
def test_commands_a_completion_model_lacks_are_one_line(command, runs, capsys, tmp_path, synthetic_npy):
    from vaelab.cli import main

    root, _, _ = runs
    suffix = ".npz" if command[0] == "encode" else ".png"
    command = [synthetic_npy if part == "mnist" else part for part in command]  # any labelled 28×28 images
    code = main([command[0], str(root / "cvae"), *command[1:], str(tmp_path / f"out{suffix}")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: a 'sohn-cvae' model ") and err.count("\n") == 1, err
