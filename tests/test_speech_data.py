"""The audio front end and the speech datasets: fsdd (shared data) and wav:PATH folders."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vaelab.data import load_dataset
from vaelab.data.audio import FRONT_END, invert, log_mel, pad_clips, read_wav, silence_value
from vaelab.errors import VaelabError, VaelabWarning

from conftest import SHARED_DATA
from speech_helpers import RATE, speaker_folder, tone, write


def test_folder_by_subfolder_has_speakers_and_lengths(tmp_path):
    ds = load_dataset(f"wav:{speaker_folder(tmp_path / 'd')}")
    assert ds.x.shape == (24, FRONT_END["n_mels"], FRONT_END["max_frames"])
    assert ds.classes == ("spk0", "spk1") and ds.y.bincount().tolist() == [12, 12]
    lengths = ds.extras["lengths"]
    assert lengths.dtype == torch.int64 and 30 <= int(lengths.min()) < int(lengths.max()) < FRONT_END["max_frames"]
    row = int(lengths.argmin())  # padding holds silence from the clip's end on
    assert torch.all(ds.x[row, :, int(lengths[row]):] == silence_value(FRONT_END))
    assert ds.front_end["kind"] == "log-mel" and ds.front_end["speakers"] == ["spk0", "spk1"]


def test_flat_folder_names_speaker_by_file_name_and_resamples_with_a_note(tmp_path):
    write(tmp_path / "anna_1.wav", tone(200, 0, rate=16000, seed=1), rate=16000)
    write(tmp_path / "bob_1.wav", tone(100, 1))
    with pytest.warns(VaelabWarning, match="resampled \\[16000\\] Hz"):
        ds = load_dataset(f"wav:{tmp_path}")
    assert ds.classes == ("anna", "bob")
    assert abs(int(ds.extras["lengths"][0]) - int(ds.extras["lengths"][1])) <= 1  # same duration after resampling


def test_stereo_is_downmixed_with_a_warning(tmp_path):
    wave = tone(150, 0)
    path = write(tmp_path / "s.wav", np.stack([wave, wave], axis=1))
    with pytest.warns(VaelabWarning, match="2 channels; mixed down"):
        mono, rate = read_wav(path)
    assert rate == RATE and mono.ndim == 1 and np.allclose(mono, wave, atol=1e-3)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("not audio at all"), "cannot read .* as a WAV file"),
    (lambda p: p.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\x00" * 6), "cannot read .* as a WAV file"),
    (lambda p: write(p, np.zeros(4000, np.float32)), "is silent"),
    (lambda p: write(p, np.full(4000, np.nan, np.float32), subtype="FLOAT"), "NaN"),
    (lambda p: write(p, tone(150, 0, seconds=0.03)), "shorter than the networks' receptive field"),
])
def test_bad_wav_input_is_one_line(tmp_path, make, message):
    folder = tmp_path / "d"
    folder.mkdir()
    make(folder / "x_1.wav")
    with pytest.raises(VaelabError, match=message) as info:
        load_dataset(f"wav:{folder}")
    assert "\n" not in str(info.value)


def test_griffin_lim_inversion_gives_back_the_spectrogram():
    wave = tone(140, 2, seconds=0.5)
    x = log_mel(wave, FRONT_END)
    again = log_mel(invert(x, FRONT_END), FRONT_END)
    t = min(x.shape[1], again.shape[1])
    loud = x[:, :t] > -1.0  # compare where there is sound
    assert np.corrcoef(x[:, :t][loud], again[:, :t][loud])[0, 1] > 0.9


def test_long_clips_are_cut_with_a_note():
    clip = np.zeros((FRONT_END["n_mels"], FRONT_END["max_frames"] + 10), np.float32)
    with pytest.warns(VaelabWarning, match="1 of 1 clips are longer"):
        x, lengths = pad_clips([clip], FRONT_END, "t")
    assert x.shape[2] == FRONT_END["max_frames"] and int(lengths[0]) == FRONT_END["max_frames"]


@pytest.fixture(scope="module")
def fsdd_dir():
    if not (SHARED_DATA / "fsdd").is_dir():
        pytest.skip(f"FSDD not present at {SHARED_DATA / 'fsdd'} (the shared data directory)")
    return SHARED_DATA


def test_fsdd_follows_the_authors_split(fsdd_dir):
    train, test = (load_dataset("fsdd", s, data_dir=fsdd_dir) for s in ("train", "test"))
    assert (len(train), len(test)) == (2700, 300)
    assert int(test.extras["take"].max()) == 4 and int(train.extras["take"].min()) == 5
    assert test.extras["speaker"].bincount().tolist() == [50] * 6 and test.y.bincount().tolist() == [30] * 10
    assert train.front_end["speakers"][0] == "george" and train.shape == test.shape


def test_fsdd_refuses_a_wrong_archive(tmp_path):
    (tmp_path / "fsdd").mkdir()
    (tmp_path / "fsdd" / "free-spoken-digit-dataset-v1.0.10.tar.gz").write_bytes(b"junk")
    with pytest.raises(VaelabError, match="not the expected archive"):
        load_dataset("fsdd", data_dir=tmp_path)
