"""``vaelab report``: one self-contained HTML page. Its pictures are the model's own, every
text is escaped, several runs are compared, a run without test images still gets a page,
picture sections can be added (or decline), and bad input is one line. The browser tests
open the page in headless Chromium: every image decodes, nothing fails in the console."""
from __future__ import annotations

import base64
import html
import json
import re
import shutil

import numpy as np
import pytest
import torch

import vaelab
from vaelab.cli import main
from vaelab.errors import VaelabError
from vaelab.viz import report_sections
from vaelab.viz.grids import grid, png_bytes, sample_images
from vaelab.viz.report import NotApplicable, make_report

from browser import broken_images, console_errors
from conftest import FAST, TINY

HOSTILE = "<script>alert('x')</script>&\""
ALL = list(report_sections.SECTIONS)
BASE = ALL[:2]  # samples and reconstructions


@pytest.fixture(autouse=True)
def _base_sections(request, monkeypatch):
    """The two base picture sections only, so the page's images can be counted and the
    tests stay quick; the browser test keeps every section."""
    if "browser" not in request.fixturenames:
        monkeypatch.setattr(report_sections, "SECTIONS", BASE)


@pytest.fixture(scope="module")
def runs(synthetic_npy, tmp_path_factory):
    """Two tiny VAEs on synthetic digits given as user data (2 epochs each)."""
    root = tmp_path_factory.mktemp("report-runs")
    train = vaelab.load_dataset(synthetic_npy, "train")
    for name, latent in (("small", 2), ("wide", 4)):
        vaelab.train("vae", train.subset(slice(0, 300)), root / name,
                     model_config={**TINY, "latent_dim": latent}, config={**FAST, "epochs": 2},
                     val_data=train.subset(slice(300, 400)), progress=False)
    return root


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(s) for s in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)]


def test_one_run_page_holds_its_own_pictures_and_metrics(runs, synthetic_npy, tmp_path):
    page = make_report([runs / "small"], tmp_path / "r.html", data=synthetic_npy, eval_images=200).read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page  # nothing fetched or run
    images = _images(page)
    assert len(images) == 3  # curves, samples, reconstructions
    model = vaelab.load(runs / "small")
    assert png_bytes(grid(sample_images(model, 64, 0))) in images  # the samples are this model's, seed 0
    best = min(json.loads(line)["val"]["loss"] for line in (runs / "small" / "metrics.jsonl").read_text().splitlines())
    assert f"{best:.4g}" in page
    assert "test split: first 200 images" in page and "<td>elbo</td>" in page


def test_every_text_is_escaped(runs, synthetic_npy, tmp_path):
    run = tmp_path / HOSTILE.replace("/", "")
    shutil.copytree(runs / "small", run)
    record = json.loads((run / "run.json").read_text())
    record["config"]["activation"] = HOSTILE
    (run / "run.json").write_text(json.dumps(record))
    page = make_report([run], tmp_path / "r.html", data=synthetic_npy, eval_images=0).read_text()
    assert "<script" not in page and "alert('x')" not in page
    assert html.escape(HOSTILE, quote=True) in page
    assert html.escape(run.name, quote=True) in page


def test_the_settings_table_shows_only_settings_that_apply(runs, tmp_path):
    def settings(run):
        page = make_report([run], tmp_path / "r.html", eval_images=0).read_text()
        return page.split("<h3>Settings</h3>")[1].split("</details>")[0]

    table = settings(runs / "small")  # a Bernoulli MLP VAE
    assert "<td>latent_dim</td>" in table and "<td>likelihood</td>" in table
    assert "<td>sigma</td>" not in table and "<td>channels</td>" not in table
    assert "<td>lr</td>" in table and "<td>nonfinite_lr_factor</td>" not in table  # only with --nonfinite skip
    run = tmp_path / "gaussian"
    shutil.copytree(runs / "small", run)
    record = json.loads((run / "run.json").read_text())
    record["config"].update(likelihood="gaussian", backbone="conv")
    (run / "run.json").write_text(json.dumps(record))
    table = settings(run)
    assert "<td>sigma</td>" in table and "<td>channels</td>" in table


def test_several_runs_get_a_comparison_table_and_a_section_each(runs, synthetic_npy, tmp_path):
    page = make_report([runs / "small", runs / "wide"], tmp_path / "r.html", data=synthetic_npy,
                       eval_images=100).read_text()
    table = page.split("<h2>Comparison</h2>")[1].split("</table>")[0]
    assert table.count("<tr>") == 3 and "<td>small</td>" in table and "<td>wide</td>" in table
    assert "test elbo" in table
    assert page.count("<section>") == 2
    assert len(_images(page)) == 1 + 2 * 3  # overlaid curves, then each run's three


def test_a_run_without_a_test_split_still_gets_its_page(runs, tmp_path):
    x = (torch.rand(60, 1, 28, 28) > 0.5).float().numpy()
    np.save(tmp_path / "mine.npy", x)
    page = make_report([runs / "small"], tmp_path / "r.html", data=f"npy:{tmp_path / 'mine.npy'}").read_text()
    assert "no test evaluation: no test split" in page
    assert "not shown: reconstructions need test images" in page
    assert len(_images(page)) == 2  # curves and samples


def test_a_new_section_is_one_entry_and_may_decline(runs, synthetic_npy, tmp_path, monkeypatch):
    def declines(ctx):
        raise NotApplicable(f"a {ctx.view.latent_dim}-D latent space has no such picture")

    def draws(ctx):
        return [("a code decoded", png_bytes(grid(ctx.view.decode(torch.zeros(1, ctx.view.latent_dim)))))]

    monkeypatch.setattr(report_sections, "SECTIONS", report_sections.SECTIONS + [("Nope", declines),
                                                                                 ("Zero", draws)])
    page = make_report([runs / "small"], tmp_path / "r.html", data=synthetic_npy, eval_images=0).read_text()
    assert "<h3>Nope</h3>\n<p class=note>not shown: a 2-D latent space has no such picture</p>" in page
    assert "a code decoded" in page


def test_cli_writes_the_report(runs, synthetic_npy, tmp_path, capsys):
    out = tmp_path / "made" / "here" / "report.html"  # a missing directory is refused, as for every -o
    args = ["report", str(runs / "small"), "-o", str(out), "--data", synthetic_npy, "--eval-images", "50",
            "--nll-samples", "4"]
    assert main(args) == 2 and "does not exist" in capsys.readouterr().err and not (tmp_path / "made").exists()
    out.parent.mkdir(parents=True)
    assert main(args) == 0
    assert "wrote" in capsys.readouterr().out
    page = out.read_text()
    assert "first 50 images, binarization dynamic, drawn once (seed 123), 4 importance samples" in page and "<td>nll</td>" in page


@pytest.mark.parametrize("case, message", [
    ("missing", "is not a run directory"),
    ("no-metrics", "a run without metrics yet"),
    ("twice", "given twice"),
    ("suffix", "ending in .html"),
])
def test_cli_bad_input_is_one_line(runs, tmp_path, capsys, case, message):
    (tmp_path / "fresh").mkdir()
    shutil.copy(runs / "small" / "run.json", tmp_path / "fresh" / "run.json")
    small = str(runs / "small")
    args = {"missing": [str(tmp_path / "nope")], "no-metrics": [str(tmp_path / "fresh")],
            "twice": [small, small], "suffix": [small, "-o", str(tmp_path / "r.pdf")]}[case]
    assert main(["report", *args, "-o", str(tmp_path / "r.html")] if case != "suffix" else ["report", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_the_report_opens_in_a_browser_with_every_image_decoded(browser, runs, synthetic_npy, tmp_path):
    out = make_report([runs / "small", runs / "wide"], tmp_path / "r.html", data=synthetic_npy, eval_images=50)
    browser.get(out.as_uri())
    assert "not shown" not in out.read_text()  # every section drew for these VAEs
    assert browser.execute_script("return document.images.length") == 1 + 2 * (1 + len(report_sections.SECTIONS))
    assert broken_images(browser) == []
    assert console_errors(browser) == []
    page = out.read_text()
    first = re.search(r"base64,([A-Za-z0-9+/=]{200})", page).group(1)
    damaged = tmp_path / "damaged.html"
    damaged.write_text(page.replace(first, first[:100] + "A" * 100, 1))  # one image's bytes spoiled
    browser.get(damaged.as_uri())
    assert len(broken_images(browser)) == 1
    console_errors(browser)  # cleared for the next test


# What sticks out of the window to the right: the page's own width beyond the viewport's, and
# each table whose right edge lies beyond the viewport and that no scrolling box holds.
OVERFLOW = """
const out = Array.from(document.querySelectorAll('table')).filter((t) => {
  let box = t.parentElement;
  while (box && getComputedStyle(box).overflowX === 'visible') box = box.parentElement;
  return !box && t.getBoundingClientRect().right > document.documentElement.clientWidth;
}).map((t) => t.rows[0].textContent.slice(0, 40));
return [document.documentElement.scrollWidth - document.documentElement.clientWidth, out];
"""


def test_wide_tables_scroll_in_their_box_and_the_page_fits_a_narrow_window(browser, runs, synthetic_npy, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setattr(report_sections, "SECTIONS", [])
    out = make_report([runs / "small", runs / "wide"], tmp_path / "r.html", data=synthetic_npy, eval_images=50,
                      nll_samples=2)
    browser.set_window_size(700, 900)
    try:
        browser.get(out.as_uri())
        table = browser.execute_script("return document.querySelector('table').getBoundingClientRect().width")
        assert table > 700  # the comparison table is wider than the window
        assert browser.execute_script(OVERFLOW) == [0, []]
    finally:
        browser.set_window_size(1280, 1000)


@pytest.fixture(scope="module")
def other_runs(synthetic_npy, tmp_path_factory):
    """A tiny label-conditional VAE and a tiny autoencoder (1 epoch each) on synthetic digits."""
    root = tmp_path_factory.mktemp("report-other")
    for name in ("cvae", "ae"):
        vaelab.train(name, vaelab.load_dataset(synthetic_npy, "train").subset(slice(0, 300)), root / name, model_config=TINY,
                     config={**FAST, "epochs": 1, "val_size": 0}, progress=False)
    return root


def test_a_conditional_model_samples_by_class_and_an_autoencoder_from_its_codes(other_runs, synthetic_npy, tmp_path):
    cvae = vaelab.load(other_runs / "cvae")
    page = make_report([other_runs / "cvae"], tmp_path / "c.html", data=synthetic_npy, eval_images=100).read_text()
    assert png_bytes(grid(sample_images(cvae, 60, 0), nrow=10)) in _images(page)  # column j is class j
    assert "column j is class j (0..9)" in page and "<td>celbo</td>" in page
    page = make_report([other_runs / "cvae"], tmp_path / "c3.html", data=synthetic_npy, eval_images=0,
                       label=3).read_text()
    assert png_bytes(grid(sample_images(cvae, 64, 0, label=3))) in _images(page)
    page = make_report([other_runs / "ae"], tmp_path / "a.html", data=synthetic_npy, eval_images=100).read_text()
    assert "Gaussian fitted to the codes of 200 test images" in page and len(_images(page)) == 3


def test_every_picture_section_draws_for_a_conditional_model_and_an_autoencoder(other_runs, synthetic_npy, tmp_path,
                                                                                monkeypatch):
    monkeypatch.setattr(report_sections, "SECTIONS", ALL)
    out = make_report([other_runs / "cvae", other_runs / "ae"], tmp_path / "r.html", data=synthetic_npy,
                      eval_images=50)
    page = out.read_text()
    assert "not shown" not in page
    assert len(_images(page)) == 1 + 2 * (1 + len(ALL))
