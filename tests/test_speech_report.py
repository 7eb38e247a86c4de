"""``vaelab report`` of a speech run: spectrograms with <audio> players that a real browser plays."""
from __future__ import annotations

import pytest

import vaelab
from vaelab.data import load_dataset
from vaelab.viz.report import make_report

from browser import console_errors, start_browser
from speech_helpers import speaker_folder


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech-report")
    speaker_folder(root / "wav" / "train", takes=2)
    speaker_folder(root / "wav" / "test", takes=1)
    spec = f"wav:{root / 'wav'}"
    vaelab.train("adain-vc", load_dataset(spec), root / "run", model_config={"width": 16, "blocks": 1},
                 config={"epochs": 1, "batch_size": 8, "threads": 1}, progress=False)
    return make_report([root / "run"], root / "report.html", data=spec, eval_images=50)


def test_report_embeds_audio_players_and_names_no_image_figures(report):
    page = report.read_text()
    assert page.count("<audio controls") == 9 and "data:audio/wav;base64," in page  # 4 × (input, reconstruction) + 1
    assert "psnr" not in page and "elbo" not in page  # image figures and a bound the L1 objective is not


def test_every_audio_element_loads_in_chromium_without_console_errors(report):
    driver = start_browser()
    try:
        driver.get(report.as_uri())
        durations = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const players = Array.from(document.querySelectorAll('audio'));
            Promise.all(players.map(a => new Promise(ok => {
                if (a.readyState >= 1) return ok(a.duration);
                a.addEventListener('loadedmetadata', () => ok(a.duration));
                a.addEventListener('error', () => ok(-1));
                a.load();
            }))).then(done);""")
        assert len(durations) == 9 and all(d > 0 for d in durations), durations
        assert console_errors(driver) == []
    finally:
        driver.quit()
