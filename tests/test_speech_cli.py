"""Speech on the command line: train, convert (one-/few-shot), reconstruct and encode, and the
one-line refusals of bad input (nothing written over)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from vaelab.cli import main

from speech_helpers import speaker_folder, tone, write


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def speech_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech")
    data = speaker_folder(root / "wav", takes=2)
    code = main(["train", "adain-vc", "--data", f"wav:{data}", "--out", str(root / "run"), "--epochs", "1",
                 "--batch-size", "8", "--width", "16", "--blocks", "1", "--threads", "1", "--no-progress"])
    assert code == 0
    return root / "run", data


def test_convert_writes_a_wav_at_the_models_rate(speech_run, tmp_path, capsys):
    run, data = speech_run
    out = tmp_path / "out.wav"
    code, text, err = cli(capsys, "convert", run, "--source", data / "spk0" / "w0_0.wav", "--target",
                          data / "spk1" / "w1_0.wav", data / "spk1" / "w2_1.wav", "-o", out, "--threads", "1")
    assert code == 0, err
    wave, rate = sf.read(out)
    assert rate == 8000 and len(wave) > 0.2 * 8000 and np.abs(wave).max() > 0
    assert "2 reference clips" in text


def test_convert_resamples_a_higher_rate_with_a_note_and_refuses_a_lower_one(speech_run, tmp_path, capsys):
    run, data = speech_run
    high = write(tmp_path / "high.wav", tone(150, 1, rate=16000), rate=16000)
    low = write(tmp_path / "low.wav", tone(150, 1, rate=4000), rate=4000)
    code, _, err = cli(capsys, "convert", run, "--source", high, "--target", data / "spk1" / "w1_0.wav",
                       "-o", tmp_path / "a.wav", "--threads", "1")
    assert code == 0 and "resampled from 16000 Hz to 8000 Hz" in err
    out = tmp_path / "b.wav"
    out.write_bytes(b"keep")
    code, _, err = cli(capsys, "convert", run, "--source", data / "spk0" / "w0_0.wav", "--target", low,
                       "-o", out, "--threads", "1")
    assert code != 0 and "4000 Hz, below this model's 8000 Hz" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"keep"


@pytest.mark.parametrize("bad, message", [
    (lambda p: p.write_text("hello"), "cannot read .* as a WAV file"),
    (lambda p: write(p, np.zeros(3000, np.float32)), "is silent"),
    (lambda p: write(p, tone(150, 0, seconds=0.02)), "receptive field"),
])
def test_convert_refuses_bad_audio_in_one_line(speech_run, tmp_path, capsys, bad, message):
    run, data = speech_run
    src = tmp_path / "bad.wav"
    bad(src)
    code, _, err = cli(capsys, "convert", run, "--source", src, "--target", data / "spk1" / "w1_0.wav",
                       "-o", tmp_path / "o.wav")
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert __import__("re").search(message, err) and not (tmp_path / "o.wav").exists()


def test_convert_refuses_an_image_model(tmp_path, capsys):
    assert main(["train", "ae", "--data", "digits", "--out", str(tmp_path / "img"), "--epochs", "1",
                 "--threads", "1", "--no-progress"]) == 0
    wav = write(tmp_path / "a.wav", tone(150, 0))
    code, _, err = cli(capsys, "convert", tmp_path / "img", "--source", wav, "--target", wav, "-o", tmp_path / "o.wav")
    assert code != 0 and "needs a speech model" in err and not (tmp_path / "o.wav").exists()


def test_reconstruct_and_encode_speak_audio(speech_run, tmp_path, capsys):
    run, data = speech_run
    png = tmp_path / "r.png"
    code, _, err = cli(capsys, "reconstruct", run, "--data", f"wav:{data}", "--split", "train", "-n", "3",
                       "-o", png, "--threads", "1")
    assert code == 0 and png.read_bytes()[:4] == b"\x89PNG", err
    npz = tmp_path / "codes.npz"
    code, _, err = cli(capsys, "encode", run, "--data", f"wav:{data}", "--split", "train", "-o", npz, "--threads", "1")
    assert code == 0, err
    with np.load(npz) as f:
        assert f["speaker_vector"].shape == (12, 64) and f["content"].shape == (12, 32)
        assert f["lengths"].shape == (12,) and f["speaker"].tolist() == [0] * 6 + [1] * 6


def test_resume_of_a_run_recorded_before_decoder_norm_takes_it_as_trained(tmp_path, capsys):
    """run.json without decoder_norm (recorded before it existed) was trained with the stream norm: --resume
    accepts --decoder-norm stream and refuses branch, naming both."""
    import json

    data = speaker_folder(tmp_path / "wav", takes=2)
    run = tmp_path / "run"
    args = ["train", "adain-vc", "--data", f"wav:{data}", "--out", run, "--batch-size", "8", "--width", "16",
            "--blocks", "1", "--threads", "1", "--no-progress"]
    assert cli(capsys, *args, "--epochs", "1", "--decoder-norm", "stream")[0] == 0
    record = json.loads((run / "run.json").read_text())
    del record["config"]["decoder_norm"]
    (run / "run.json").write_text(json.dumps(record))
    code, _, err = cli(capsys, *args, "--resume", "--epochs", "2", "--decoder-norm", "branch")
    assert code == 2 and "--decoder-norm differs (recorded stream, given branch)" in err
    assert cli(capsys, *args, "--resume", "--epochs", "2", "--decoder-norm", "stream")[0] == 0
    assert json.loads((run / "run.json").read_text())["config"]["decoder_norm"] == "stream"
