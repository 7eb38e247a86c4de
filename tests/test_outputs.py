"""Output files: the format is the one the extension names, an unknown or missing extension
and a missing directory are refused in one line before any work, and a sample grid too big
to open is capped with a warning."""
from __future__ import annotations

import pytest
from PIL import Image

from vaelab.cli import main

QUICK = ["--epochs", "1", "--threads", "1", "--no-progress", "--latent-dim", "2", "--hidden", "16"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("outputs") / "vae"
    assert main(["train", "vae", "--data", "digits", "--out", str(out)] + QUICK) == 0
    return out


# Each command that writes an image, with the arguments it needs besides -o.
IMAGE_COMMANDS = {
    "sample": lambda r: ["sample", r, "-n", "4"],
    "reconstruct": lambda r: ["reconstruct", r, "--data", "digits", "-n", "4"],
    "traverse": lambda r: ["traverse", r, "--data", "digits", "--steps", "3"],
    "interpolate": lambda r: ["interpolate", r, "--data", "digits", "--from", "0", "--to", "1", "--no-classifier"],
    "manifold": lambda r: ["manifold", r, "-n", "3"],
    "scatter": lambda r: ["scatter", r, "--data", "digits", "--limit", "50"],
    "analogies": lambda r: ["analogies", r, "--data", "digits"],
    "edit": lambda r: ["edit", r, "--data", "digits", "--index", "0", "--set", "thickness=2"],
    "curves": lambda r: ["curves", r],
}


@pytest.mark.parametrize("command", list(IMAGE_COMMANDS))
@pytest.mark.parametrize("name, message", [("x.txt", "its extension .txt"), ("x", "it has no extension"),
                                           ("nowhere/x.png", "does not exist")])
def test_a_bad_image_output_is_refused_before_any_work(command, name, message, run, tmp_path, capsys):
    target = tmp_path / name
    assert main(IMAGE_COMMANDS[command](str(run)) + ["-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: -o {target}") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # no file, no directory made


@pytest.mark.parametrize("command", ["sample", "reconstruct", "traverse", "interpolate", "manifold", "scatter",
                                     "curves"])
@pytest.mark.parametrize("suffix, fmt", [(".png", "PNG"), (".jpg", "JPEG"), (".JPEG", "JPEG"), (".webp", "WEBP")])
def test_the_extension_names_the_format_written(command, suffix, fmt, run, tmp_path):
    target = tmp_path / f"out{suffix}"
    assert main(IMAGE_COMMANDS[command](str(run)) + ["-o", str(target)]) == 0
    with Image.open(target) as img:
        assert img.format == fmt


def test_other_outputs_need_an_existing_directory_and_gif_a_gif(run, tmp_path, capsys):
    cases = [(["encode", str(run), "--data", "digits", "-o", str(tmp_path / "no" / "c.npz")], "does not exist"),
             (["report", str(run), "--eval-images", "0", "-o", str(tmp_path / "no" / "r.html")], "does not exist"),
             (["scatter", str(run), "--data", "digits", "--save-codes", str(tmp_path / "no" / "p.npz"),
               "-o", str(tmp_path / "m.png")], "does not exist"),
             (["traverse", str(run), "--data", "digits", "--gif", str(tmp_path / "t.png"),
               "-o", str(tmp_path / "t2.png")], "ending in .gif")]
    for args, message in cases:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_sample_grid_too_big_to_open_is_capped_with_a_warning(run, tmp_path, capsys):
    from vaelab.viz.grids import MAX_GRID_SIDE

    target = tmp_path / "s.png"
    assert main(["sample", str(run), "-n", "100000", "-o", str(target)]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "-n 100000" in err
    with Image.open(target) as img:
        assert max(img.size) <= MAX_GRID_SIDE
        img.load()


def test_a_reconstruction_grid_too_big_to_open_is_capped_with_a_warning(run, tmp_path, capsys):
    from vaelab.viz.grids import MAX_GRID_SIDE, pairs_capacity

    target = tmp_path / "r.png"
    assert main(["reconstruct", str(run), "--data", "digits", "-n", "100000", "-o", str(target)]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "-n 100000" in err
    with Image.open(target) as img:
        assert max(img.size) <= MAX_GRID_SIDE
        # the digits' 297 test images fit (each above its reconstruction): all of them are shown
        assert pairs_capacity((1, 8, 8)) > 297 and img.size[1] > 8 * img.size[0]
