"""The judges of speech and the voice-conversion comparison's refusals (the full table needs FSDD
and minutes: docs/speech.md has it and its command)."""
from __future__ import annotations

import numpy as np
import pytest

from vaelab.cli import main
from vaelab.evaluation.judges import feature_matrix, fit_classifier

from speech_helpers import RATE, tone


def test_judges_tell_synthetic_speakers_and_words_apart_on_held_out_takes():
    waves, speakers, words, takes = [], [], [], []
    for s, f0 in enumerate((100.0, 160.0, 230.0)):
        for w in range(3):
            for k in range(8):
                waves.append(tone(f0 * (1 + 0.02 * (k % 3)), w, 0.3 + 0.03 * k, seed=k))
                speakers.append(s), words.append(w), takes.append(k)
    x = feature_matrix(waves, RATE)
    assert x.shape == (72, 220) and np.isfinite(x).all()
    takes = np.array(takes)
    train = takes >= 2
    for labels in (np.array(speakers), np.array(words)):
        clf, c, scores = fit_classifier(x[train], labels[train], takes[train] < 4)
        assert (clf.predict(x[~train]) == labels[~train]).mean() >= 0.9 and set(scores) == {0.1, 1.0, 10.0}


def test_voice_conversion_needs_speech_runs(tmp_path, capsys):
    assert main(["compare", "voice-conversion", "--out", str(tmp_path / "vc")]) != 0
    assert "needs trained speech runs" in capsys.readouterr().err
    assert main(["train", "ae", "--data", "digits", "--out", str(tmp_path / "img"), "--epochs", "1",
                 "--threads", "1", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["compare", "voice-conversion", "--run", str(tmp_path / "img"), "--out", str(tmp_path / "vc")]) != 0
    err = capsys.readouterr().err
    assert "is not a speech model" in err and len(err.strip().splitlines()) == 1


def test_voice_conversion_takes_no_data_option(tmp_path, capsys):
    assert main(["compare", "voice-conversion", "--data", "mnist", "--run", "x", "--out", str(tmp_path)]) != 0
    assert "takes no --data" in capsys.readouterr().err


def test_voice_conversion_split_is_val_or_test():
    from vaelab.compare.voice_conversion import measured_split
    from vaelab.errors import VaelabError

    with pytest.raises(VaelabError, match="--split bogus: choose val"):
        measured_split("bogus", ["run"], None)


def test_judges_leave_the_held_out_clips_out_of_their_fit(monkeypatch):
    import vaelab.data.speech as speech
    from vaelab.evaluation import judges as judges_module

    rows = [(d, s, t) for d in range(2) for s in range(2) for t in range(5, 12)]
    waves = [tone(110.0 + 70 * s, d, 0.3, seed=t) for d, s, t in rows]
    labels = np.array(rows)
    monkeypatch.setattr(speech, "fsdd_waves", lambda root, split: (waves, labels[:, 0], labels[:, 1], labels[:, 2]))
    fitted = []
    real_fit = judges_module.fit_classifier
    monkeypatch.setattr(judges_module, "fit_classifier", lambda x, y, held: fitted.append(len(y)) or real_fit(x, y, held))
    held_out = [(1, 0, 11), (0, 1, 10)]
    judges, measured = judges_module.train_judges("unused", RATE, held_out=held_out)
    assert fitted == [len(rows) - 2, len(rows) - 2]
    assert measured["takes"].tolist() == [11, 10] and measured["speakers"].tolist() == [0, 1]
    assert measured["waves"][0] is waves[rows.index((1, 0, 11))]
    with pytest.raises(ValueError, match="not FSDD training takes"):
        judges_module.train_judges("unused", RATE, held_out=[(9, 9, 9)])


def test_conversion_pairs_convert_each_speakers_clips_with_every_other_speakers_reference():
    import torch

    from vaelab.compare.voice_conversion import REFERENCE_ROW, conversion_pairs
    from vaelab.data.sources import Dataset

    speakers = torch.arange(6).repeat_interleave(5).roll(7)  # rows of a speaker not contiguous
    clips = Dataset("fsdd-like", torch.arange(30.0).view(30, 1, 1), y=torch.zeros(30, dtype=torch.long),
                    extras={"speaker": speakers, "lengths": torch.ones(30, dtype=torch.long)})

    class Echo:  # "converts" to (source row, reference row)
        def convert(self, batch, references):
            return torch.stack([batch.x[:, 0, 0], references[0].x[:, 0, 0].expand(len(batch.x))], 1)

    seen = []
    for a, b, rows, batch, reference, converted in conversion_pairs(Echo(), clips, per_pair=3):
        assert a != b and len(rows) == 3 and (speakers[rows] == a).all()
        first_of_b = int(torch.nonzero(speakers == b)[REFERENCE_ROW])
        assert converted[:, 0].tolist() == [float(r) for r in rows] and (converted[:, 1] == first_of_b).all()
        seen.append((a, b))
    assert sorted(seen) == [(a, b) for a in range(6) for b in range(6) if a != b]
    every = [rows for a, b, rows, *_ in conversion_pairs(Echo(), clips, per_pair=0)]
    assert all(len(rows) == 5 for rows in every)
