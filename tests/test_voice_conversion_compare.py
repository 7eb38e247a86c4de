"""`vaelab compare voice-conversion` end to end, on a synthetic archive laid out as FSDD's
(``recordings/{digit}_{speaker}_{take}.wav``, 6 × 10 × 50 clips; the six "speakers" are fundamental
frequencies, the ten "digits" formant glides), so the whole table, its matrices, panels and code rows
run in well under a minute."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile

import numpy as np
import pytest
import soundfile as sf
from threadpoolctl import threadpool_limits

import vaelab.data.speech as speech
from vaelab.cli import main

from speech_helpers import RATE, tone

TAKES = 50  # as FSDD's: 0–4 the test takes, 5–9 choose the classifiers' C (the loader checks for 3,000 clips)


@pytest.fixture(scope="module")
def fake_fsdd(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdd-data")
    (root / "fsdd").mkdir()
    path = root / "fsdd" / speech.FSDD_FILE
    with tarfile.open(path, "w:gz") as archive:
        for s, name in enumerate(speech.FSDD_SPEAKERS):
            for digit in range(10):
                for take in range(TAKES):
                    buffer = io.BytesIO()
                    sf.write(buffer, tone(95.0 + 25 * s, digit, 0.2 + 0.01 * (take % 4), seed=take), RATE,
                             format="WAV", subtype="PCM_16")
                    info = tarfile.TarInfo(f"free-spoken-digit-dataset-1.0.10/recordings/{digit}_{name}_{take}.wav")
                    info.size = buffer.tell()
                    buffer.seek(0)
                    archive.addfile(info, buffer)
    return root, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def data_dir(fake_fsdd, monkeypatch, tmp_path):
    root, digest = fake_fsdd
    monkeypatch.setattr(speech, "FSDD_SHA256", digest)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("VAELAB_DATA_DIR", str(root))
    return root


def train(family: str, out, *options) -> None:
    assert main(["train", family, "--data", "fsdd", "--out", str(out), "--epochs", "1", "--batch-size", "32",
                 "--width", "16", "--blocks", "1", "--threads", "1", "--no-progress", *options]) == 0


@pytest.mark.slow
def test_compare_voice_conversion_writes_the_table_matrices_panels_and_code_rows(data_dir, tmp_path, capsys):
    train("vq-vc", tmp_path / "vq", "--codebook-size", "8")
    out = tmp_path / "cmp"
    with threadpool_limits(1):  # the inversions' small matrix products, where more BLAS threads only wait
        code = main(["compare", "voice-conversion", "--run", str(tmp_path / "vq"), "--split", "test",
                     "--sources-per-pair", "1", "--griffin-lim-iters", "2", "--threads", "1", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "results.json").read_text())
    rows = {row["audio"]: row for row in result["rows"]}
    real = rows["real test takes"]
    assert real["n"] == 6 * 10 * 5 and real["speaker: read as target"] >= 0.9  # the judges hear the f0
    assert rows["Griffin-Lim resynthesis of the test takes"]["n"] == 300
    recon, conv = rows["vq: same-speaker reconstructions"], rows["vq: conversions, 30 speaker pairs"]
    assert recon["n"] == 300 and conv["n"] == 30  # one source clip for each ordered pair
    assert conv["speaker: read as target"] + conv["speaker: read as source"] <= 1
    matrix = np.array(result["settings"]["matrices"]["vq"])
    assert matrix.shape == (6, 6)  # its diagonal: each speaker's own reconstructions, 50 clips each
    assert np.diag(matrix).mean() == pytest.approx(recon["speaker: read as target"], abs=1e-3)
    assert matrix[~np.eye(6, dtype=bool)].mean() == pytest.approx(conv["speaker: read as target"], abs=1e-3)
    for label in ("code histograms", "time-averaged continuous code"):
        assert rows[f"vq: {label} → classifier (no audio)"]["n"] == 300
    for figure in ("speaker_matrix.png", "conversion_panels.png", "codes_by_digit_vq.png"):
        assert (out / figure).stat().st_size > 1000
