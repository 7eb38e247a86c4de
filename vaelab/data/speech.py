"""Speech datasets: the Free Spoken Digit Dataset (``fsdd``) and folders of the user's WAV files
(``wav:PATH``), each read into log-mel x (:mod:`vaelab.data.audio`) with ``extras["lengths"]``.

``fsdd`` (Jackson et al., v1.0.10; CC BY-SA 4.0): 3,000 clips at 8 kHz, 6 speakers (all male) ×
10 digits × 50 takes, read from the release tarball checked by SHA-256. The authors' split: takes
0–4 are the test set, 5–49 training. y is the spoken digit; ``extras["speaker"]`` the speaker
index (names in :data:`FSDD_SPEAKERS`) and ``extras["take"]`` the take number. The analysed
clips are cached as one .npz named by the archive's digest and the front-end settings.

``wav:PATH``: every ``.wav`` under PATH; the speaker is the sub-folder (``PATH/alice/1.wav``) or,
in a flat folder, the file-name part before the first ``_`` (``alice_1.wav``). Held out as the
test split: ``train/`` and ``test/`` sub-folders where present, else nothing (``--test-fraction``).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import VaelabError, VaelabWarning
from .audio import FRONT_END, clip_features, pad_clips, read_wav, to_rate

FSDD_FILE = "free-spoken-digit-dataset-v1.0.10.tar.gz"
FSDD_SHA256 = "e406fc9ae0078c4bcbbe88ed7c75f72ffd0e81f68be04db0de77f7ba79f1c61a"
FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
FSDD_TEST_TAKES = 5  # takes 0..4 of every (speaker, digit): the authors' test set
DIGITS = tuple("0123456789")


def load_fsdd(root: Path, split: str, settings: dict | None = None):
    """The ``split`` of FSDD from ``root/<FSDD_FILE>``: x, y = digit, speaker and take in extras."""
    from .sources import Dataset

    settings = settings or FRONT_END
    path = root / FSDD_FILE
    if not path.is_file():
        raise VaelabError(f"FSDD archive {path} is missing; place {FSDD_FILE} (sha256 {FSDD_SHA256[:12]}…, the "
                          "v1.0.10 release of Jakobovski/free-spoken-digit-dataset) there")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != FSDD_SHA256:
        raise VaelabError(f"{path} is not the expected archive (sha256 {digest[:12]}…, expected {FSDD_SHA256[:12]}…); "
                          "replace it with the original file")
    arrays = _cached(digest, settings) or _analyse_archive(path, digest, settings)
    rows = arrays["take"] < FSDD_TEST_TAKES if split == "test" else arrays["take"] >= FSDD_TEST_TAKES
    extras = {k: torch.from_numpy(arrays[k][rows]) for k in ("lengths", "speaker", "take")}
    return Dataset("fsdd", torch.from_numpy(arrays["x"][rows]), torch.from_numpy(arrays["digit"][rows]), DIGITS,
                   extras=extras, front_end={**settings, "speakers": list(FSDD_SPEAKERS)})


def _cache_path(digest: str, settings: dict) -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return Path(root) / "vaelab" / "decoded" / f"fsdd-{digest[:16]}-{key}.npz"


_KEYS = {"x": np.float32, "lengths": np.int64, "digit": np.int64, "speaker": np.int64, "take": np.int64}


def _cached(digest: str, settings: dict) -> dict | None:
    """The analysed clips, or None where the cache is missing or damaged (never trusted blindly)."""
    try:
        with np.load(_cache_path(digest, settings), allow_pickle=False) as f:
            arrays = {k: f[k] for k in _KEYS}
    except (OSError, ValueError, KeyError):
        return None
    shape = (3000, settings["n_mels"], settings["max_frames"])
    ok = arrays["x"].shape == shape and all(arrays[k].dtype == t and len(arrays[k]) == 3000 for k, t in _KEYS.items())
    return arrays if ok else None


def _recordings(archive: tarfile.TarFile):
    """(file name, (digit, speaker index, take), member) of every ``recordings/*.wav`` in the archive."""
    for member in archive:
        name = member.name.rsplit("/", 1)[-1]
        if member.isfile() and "/recordings/" in member.name and name.endswith(".wav"):
            digit, speaker, take = name[:-4].split("_")
            yield name, (int(digit), FSDD_SPEAKERS.index(speaker), int(take)), member


def _analyse_archive(path: Path, digest: str, settings: dict) -> dict:
    """Every ``recordings/{digit}_{speaker}_{take}.wav`` of the tarball, analysed and cached."""
    from ..files import atomic_write_bytes

    clips, labels = [], []
    with tarfile.open(path) as archive:
        for name, label, member in _recordings(archive):
            wave, rate = read_wav(archive.extractfile(member).read(), f"{path}:{name}")
            clips.append(clip_features(to_rate(wave, rate, settings, name), settings, name))
            labels.append(label)
    if len(clips) != 3000:
        raise VaelabError(f"{path} holds {len(clips)} recordings, not 3,000; replace it with the original file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VaelabWarning)  # 17 clips over 1.02 s: documented, said once in docs
        x, lengths = pad_clips(clips, settings, "fsdd")
    order = np.lexsort(np.array(labels).T[::-1])  # by digit, speaker, take: the same rows on every machine
    labels = np.array(labels, dtype=np.int64)[order]
    arrays = {"x": x.numpy()[order], "lengths": lengths.numpy()[order], "digit": labels[:, 0],
              "speaker": labels[:, 1], "take": labels[:, 2]}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        atomic_write_bytes(_cache_path(digest, settings), buffer.getvalue())
    except OSError:
        pass  # a read-only cache only costs the next load its analysis time
    return arrays


# --- wav:PATH ---------------------------------------------------------------------------

def load_wav_folder(path: Path, split: str, settings: dict | None = None):
    """The WAV files under ``path`` (or its ``train/``/``test/``): y = speaker index."""
    from .sources import Dataset

    settings = settings or FRONT_END
    if not path.is_dir():
        raise VaelabError(f"WAV folder {path} does not exist or is not a folder; check the path")
    if (path / "train").is_dir() and (path / "test").is_dir():
        path = path / split
    files, speakers = _speaker_files(path)
    clips, rates = [], set()
    for f in files:
        wave, rate = read_wav(f)
        if rate != settings["sample_rate"]:
            rates.add(rate)
        clips.append(clip_features(to_rate(wave, rate, settings, str(f), say=False), settings, str(f)))
    if rates:
        warnings.warn(f"wav:{path}: resampled {sorted(rates)} Hz recordings to {settings['sample_rate']} Hz",
                      VaelabWarning, stacklevel=2)
    x, lengths = pad_clips(clips, settings, f"wav:{path}")
    names = sorted(set(speakers))
    y = torch.tensor([names.index(s) for s in speakers], dtype=torch.int64)
    return Dataset(f"wav:{path}", x, y, tuple(names), extras={"lengths": lengths, "speaker": y.clone()},
                   front_end={**settings, "speakers": names})


def _speaker_files(path: Path) -> tuple[list[Path], list[str]]:
    """(WAV files, their speakers): by sub-folder, else by the file-name part before ``_``."""
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if folders:
        pairs = [(f, d.name) for d in folders for f in sorted(d.rglob("*")) if f.suffix.lower() == ".wav"]
    else:
        pairs = [(f, f.stem.split("_")[0]) for f in sorted(path.iterdir()) if f.suffix.lower() == ".wav"]
    if not pairs:
        raise VaelabError(f"no .wav files found in {path}; put them in one sub-folder per speaker or name them "
                          "SPEAKER_anything.wav")
    return [f for f, _ in pairs], [s for _, s in pairs]


def fsdd_waves(root: Path, split: str) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """(waveforms, digits, speakers, takes) of FSDD's ``split``, in the dataset's row order (by
    digit, speaker, take): the raw recordings the judges are trained and tested on."""
    path = root / FSDD_FILE
    if not path.is_file():
        raise VaelabError(f"FSDD archive {path} is missing; place {FSDD_FILE} there")
    found = []
    with tarfile.open(path) as archive:
        for name, label, member in _recordings(archive):
            if (label[2] < FSDD_TEST_TAKES) != (split == "test"):
                continue
            wave, _ = read_wav(archive.extractfile(member).read(), f"{path}:{name}")
            found.append((label, wave))
    found.sort(key=lambda item: item[0])
    labels = np.array([k for k, _ in found], dtype=np.int64)
    return [w for _, w in found], labels[:, 0], labels[:, 1], labels[:, 2]
