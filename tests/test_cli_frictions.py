"""What a new user meets between the commands' results: a typo or a wrong value answered in one
line with the fix, errors in the options' own names, threads on every command that computes,
samples spread over a split, progress during long waits, refusals in the user's terms."""
from __future__ import annotations

import pytest

from vaelab.cli import main


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(code, err, *fragments):
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "usage:" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def exits(capsys, *args):
    """``main`` of a parse error: argparse ends the process (SystemExit) rather than returning."""
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return stop.value.code, out, err


@pytest.mark.parametrize("args, fragments", [
    (["train", "vae", "--data", "digits", "--out", "x", "--epoch", "1"],
     ["--epoch", "did you mean --epochs?", "vaelab train vae --help"]),
    (["sample", "runs/x", "--sede", "3"], ["--sede", "did you mean --seed?", "vaelab sample --help"]),
    (["compare", "pca", "--out", "x", "--epoch", "1"], ["did you mean --epochs?", "vaelab compare pca --help"]),
])
def test_a_mistyped_option_is_one_line_with_the_closest_option(args, fragments, capsys):
    code, _, err = exits(capsys, *args)
    one_line(code, err, "unrecognized arguments", *fragments)


@pytest.mark.parametrize("args, fragments", [
    (["train", "vae", "--data", "digits", "--out", "x", "--epochs", "x"],
     ["argument --epochs: invalid int value: 'x'", "vaelab train vae --help"]),
    (["sample", "runs/x", "-n", "many"], ["argument -n: invalid int value: 'many'", "vaelab sample --help"]),
    (["eval", "runs/x"], ["required: --data", "vaelab eval --help"]),
    ([], ["required: COMMAND", "vaelab --help"]),
])
def test_a_wrong_value_is_one_line_and_a_pointer_to_help(args, fragments, capsys):
    code, _, err = exits(capsys, *args)
    one_line(code, err, *fragments)


def test_an_unknown_word_far_from_any_option_gets_no_guess(capsys):
    code, _, err = exits(capsys, "sample", "runs/x", "--zzzzqqq")
    one_line(code, err, "unrecognized arguments: --zzzzqqq", "vaelab sample --help")
    assert "did you mean" not in err


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """One epoch of a tiny VAE on the bundled 8×8 digits (seconds, no download)."""
    import vaelab

    out = tmp_path_factory.mktemp("digits") / "run"
    vaelab.train("vae", "digits", out, model_config={"hidden": [32], "latent_dim": 4},
                 config={"epochs": 1, "threads": 1, "batch_size": 100}, progress=False)
    return out


@pytest.mark.parametrize("command", [
    ["sample", "{run}", "-n", "4"],
    ["reconstruct", "{run}", "--data", "digits", "-n", "4"],
    ["encode", "{run}", "--data", "digits"],
    ["traverse", "{run}", "--data", "digits", "--top", "2", "--steps", "3"],
    ["interpolate", "{run}", "--data", "digits", "--from", "0", "--to", "1", "--no-classifier"],
    ["curves", "{run}"],
    ["report", "{run}", "--eval-images", "0"],
])
def test_every_computing_command_takes_threads(command, digits_run, tmp_path, capsys):
    import torch

    suffix = {"encode": ".npz", "report": ".html"}.get(command[0], ".png")
    argv = [w.format(run=digits_run) for w in command] + ["--threads", "2", "-o", tmp_path / f"out{suffix}"]
    code, _, err = cli(capsys, *argv)
    assert code == 0, err
    assert torch.get_num_threads() == 2
    code, _, err = cli(capsys, *argv[:-2], "--threads", "-1")
    one_line(code, err, "--threads must be 0 (all cores) or more, got -1")


def test_demo_takes_threads(tmp_path, capsys):
    import torch

    code, out, err = cli(capsys, "demo", "--epochs", "1", "--out", tmp_path / "demo", "--threads", "2")
    assert code == 0, err
    assert torch.get_num_threads() == 2
    import json
    assert json.loads((tmp_path / "demo" / "run.json").read_text())["train"]["threads"] == 2


def test_shown_rows_are_spread_over_the_split_and_seeded():
    from vaelab.viz.grids import choose_images

    rows = choose_images(1000, 10)
    assert rows == choose_images(1000, 10)  # seeded: the same picture every time
    assert sorted({r // 100 for r in rows}) == list(range(10))  # one from each tenth of the split
    assert rows != list(range(10)) and rows == sorted(rows)
    assert choose_images(5, 32) == [0, 1, 2, 3, 4]  # a split smaller than N: all of it
    assert choose_images(1000, indices=[7, 2, 999]) == [7, 2, 999]  # --indices stays exact


def test_the_reports_pictures_take_test_rows_from_the_whole_split():
    import torch

    from vaelab import Dataset
    from vaelab.viz.report import ReportContext

    sorted_by_class = Dataset("sorted", torch.rand(400, 1, 4, 4), torch.arange(10).repeat_interleave(40))
    ctx = ReportContext(run=None, model=None, record={}, test=sorted_by_class, test_note="", binarize="none")
    assert sorted(set(ctx.images(20).y.tolist())) == list(range(10))


def test_training_without_a_terminal_reports_progress_within_each_epoch(monkeypatch, tmp_path, capsys):
    """A log file or a pipe gets progress lines between the epoch lines (a bar's carriage
    returns would be noise there): here every step, as if each took the reporting interval."""
    import vaelab
    from vaelab.training import report

    monkeypatch.setattr(report, "LINE_SECONDS", 0.0)
    vaelab.train("vae", "digits", tmp_path / "run", model_config={"hidden": [16], "latent_dim": 2},
                 config={"epochs": 1, "threads": 1, "batch_size": 500, "val_size": 0.1})
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("epoch 1/1: step")]
    assert lines and "step 1/3 (33%)" in lines[0] and "steps/s, ETA" in lines[0], err
    assert "step 3/3 (100%)" in lines[-1] and "recon " in lines[-1] and "kl " in lines[-1]


def test_training_quietly_reports_nothing(monkeypatch, tmp_path, capsys):
    import vaelab
    from vaelab.training import report

    monkeypatch.setattr(report, "LINE_SECONDS", 0.0)
    vaelab.train("vae", "digits", tmp_path / "run", model_config={"hidden": [16], "latent_dim": 2},
                 config={"epochs": 1, "threads": 1, "batch_size": 500}, progress=False)
    assert "step" not in capsys.readouterr().err


def test_interpolate_says_why_it_waits_for_a_classifier_and_shows_progress(digits_run, monkeypatch, tmp_path,
                                                                          capsys):
    """The first interpolation on a dataset trains the digit classifier that scores it: one line
    up front (what, why, how long, where it is kept), progress on stderr, nothing on stdout."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    argv = ["interpolate", digits_run, "--data", "digits", "--from", "0", "--to", "1", "--threads", "1",
            "-o", tmp_path / "i.png"]
    code, out, err = cli(capsys, *argv)
    assert code == 0, err
    first = err.splitlines()[0]
    assert first.startswith("training a digit classifier on the 1,500 labelled training images of digits"), err
    assert "to score how digit-like" in first and "3 epochs" in first and "once" in first
    assert str(tmp_path / "cache") in first
    assert "epoch 3 " in err and "cross_entropy" in err and "epoch" not in out
    assert "confidence" in out
    code, out, err = cli(capsys, *argv)  # kept: the second run trains nothing
    assert code == 0 and "training a digit classifier" not in err and "confidence" in out


def test_interpolate_on_unlabelled_data_does_without_the_classifier(digits_run, tmp_path, capsys):
    import numpy as np

    import vaelab

    images = vaelab.load_dataset("digits", "test").x[:20, 0].numpy()
    np.save(tmp_path / "mine.npy", (images * 255).round().astype(np.uint8))
    code, out, err = cli(capsys, "interpolate", digits_run, "--data", f"npy:{tmp_path / 'mine.npy'}",
                         "--split", "train", "--from", "0", "--to", "5", "--threads", "1", "-o", tmp_path / "i.png")
    assert code == 0, err
    notes = [line for line in err.splitlines() if "class labels" in line]
    assert len(notes) == 1 and notes[0].startswith("note: ") and "without the classifier's confidence" in notes[0]
    assert "confidence" not in out and "slerp" in out


@pytest.mark.parametrize("extra, said", [
    (["--latent-dim", "0"], "--latent-dim must be positive, got 0"),
    (["--val-size", "-2"], "--val-size must be >= 0, got -2.0"),
    (["--adam-betas", "0.9,1.5"], "--adam-betas must lie in [0, 1)"),
    (["--nonfinite-lr-factor", "2"], "--nonfinite-lr-factor must lie in (0, 1]"),
])
def test_a_bad_setting_is_named_by_the_option_the_user_typed(extra, said, tmp_path, capsys):
    code, _, err = cli(capsys, "train", "vae", "--data", "digits", "--out", tmp_path / "r", *extra)
    one_line(code, err, said)


def test_python_callers_keep_the_field_names():
    import vaelab
    from vaelab.errors import VaelabError

    with pytest.raises(VaelabError, match="^latent_dim must be positive"):
        vaelab.build("vae", latent_dim=0)


def test_resume_on_other_data_names_what_differs_in_a_sentence(digits_run, tmp_path, capsys):
    import shutil

    import numpy as np

    import vaelab

    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    images = vaelab.load_dataset("digits", "train").x[:300, 0].numpy()
    np.save(tmp_path / "other.npy", (images * 255).round().astype(np.uint8))
    code, _, err = cli(capsys, "train", "vae", "--data", f"npy:{tmp_path / 'other.npy'}", "--out", run, "--resume",
                       "--epochs", "2", "--threads", "1", "--no-progress")
    one_line(code, err, "was trained on other data", "data digits, now npy:", "training images 1,350, now 270",
             "resume with the same data")
    assert "{" not in err and "'spec'" not in err


def test_resume_of_another_model_names_the_setting_that_differs(digits_run, tmp_path, capsys):
    import shutil

    import vaelab
    from vaelab.errors import VaelabError

    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    with pytest.raises(VaelabError) as exc:
        vaelab.train("vae", "digits", run, model_config={"hidden": [32], "latent_dim": 3},
                     config={"epochs": 2, "threads": 1, "batch_size": 100}, resume=True, progress=False)
    assert "is a different model (latent_dim 4, now 3)" in str(exc.value) and "{" not in str(exc.value)


@pytest.mark.parametrize("name, settings, said, instead", [
    ("catvae", {"categories": 4, "classes": 3}, "model's code is discrete (4 one-hot variables of 3 classes)",
     "vaelab reconstruct"),
    ("binvae", {"bits": 6}, "model's code is discrete (6 bits)", "vaelab sample"),
    ("vqvae", {}, "model's code is a grid of codebook entries", "vaelab train-prior"),
    ("pixelcnn", {"completion_rows": 4}, "has no latent code: it generates the pixels one by one", "vaelab sample"),
])
def test_a_model_without_a_continuous_code_is_refused_in_the_users_terms(name, settings, said, instead):
    import vaelab
    from vaelab.errors import VaelabError
    from vaelab.viz.latent import LatentView

    model = vaelab.build(name, input_shape=(1, 8, 8), **settings)
    with pytest.raises(VaelabError) as exc:
        LatentView(model)
    message = str(exc.value)
    assert message.startswith(f"a '{name}' model") and said in message and instead in message, message
    assert "encode()" not in message and "decode()" not in message


@pytest.mark.parametrize("command", [
    ["traverse", "{run}", "--data", "digits"],
    ["manifold", "{run}"],
    ["scatter", "{run}", "--data", "digits"],
    ["interpolate", "{run}", "--data", "digits", "--from", "0", "--to", "1", "--no-classifier"],
    ["analogies", "{run}", "--data", "digits"],
])
def test_each_latent_picture_refuses_a_catvae_in_one_line(command, tmp_path, capsys):
    import vaelab

    run = tmp_path / "catvae"
    vaelab.save(vaelab.build("catvae", input_shape=(1, 8, 8), categories=4, classes=3), run)
    code, _, err = cli(capsys, *[w.format(run=run) for w in command], "-o", tmp_path / "x.png")
    one_line(code, err, "a 'catvae' model's code is discrete", "vaelab reconstruct")


def test_resume_of_a_stage_with_other_settings_names_the_setting(tmp_path):
    from vaelab.errors import VaelabError
    from vaelab.models.pipeline import Stage
    from vaelab.training.stages import _check_plan, _plan

    def plan(latent_dim, lr):
        return _plan([Stage("m1", "vae", {"latent_dim": latent_dim}, {"lr": lr}),
                      Stage("m2", "m2", {"alpha": 0.1}, {"lr": 3e-4})], "m1m2")

    _check_plan(tmp_path, plan(50, 3e-4), resume=False)
    with pytest.raises(VaelabError) as exc:
        _check_plan(tmp_path, plan(20, 1e-3), resume=True)
    message = str(exc.value)
    assert "stage 'm1'" in message and "latent_dim 50, now 20" in message and "lr 0.0003, now 0.001" in message
    assert "{" not in message
