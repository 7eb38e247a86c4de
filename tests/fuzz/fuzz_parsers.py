"""Coverage-guided fuzzing of vaelab's file parsers with atheris (optional, not run in CI).

    python -m pip install atheris          # a wheel exists for CPython 3.11 on Linux x86-64
    python tests/fuzz/fuzz_parsers.py -atheris_runs=20000
    python tests/fuzz/fuzz_parsers.py corpus_dir/ -max_total_time=600

The first input byte picks the parser (IDX, .npy, .npz, image folder, JSON settings, TOML
settings, run.json, safetensors weights via vaelab.load, training checkpoint); the rest
is the file. Any exception other than VaelabError is a finding: atheris stops and writes
the input that caused it. tests/test_fuzz.py runs the same parsers with hypothesis in CI.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import vaelab
    from vaelab.data import read_idx
    from vaelab.errors import VaelabError
    from vaelab.files import read_run_record, read_settings
    from vaelab.training.checkpoint import read_checkpoint

WORK = Path(tempfile.mkdtemp(prefix="vaelab-atheris-"))
MODEL = WORK / "model"
vaelab.save(vaelab.build("vae", input_shape=[1, 8, 8], hidden=[8], latent_dim=2), MODEL)
CONFIG = (MODEL / "config.json").read_bytes()


def _file(name: str, data: bytes) -> Path:
    path = WORK / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _load_weights(data: bytes):
    (MODEL / "config.json").write_bytes(CONFIG)
    (MODEL / "model.safetensors").write_bytes(data)
    return vaelab.load(MODEL)


def _load_config(data: bytes):
    (MODEL / "config.json").write_bytes(data)
    try:
        return vaelab.load(MODEL)
    finally:
        (MODEL / "config.json").write_bytes(CONFIG)


TARGETS = [
    lambda d: read_idx(_file("a.idx", d)),
    lambda d: vaelab.load_dataset(f"npy:{_file('a.npy', d)}"),
    lambda d: vaelab.load_dataset(f"npy:{_file('a.npz', d)}"),
    lambda d: vaelab.load_dataset(f"folder:{_file('img/c/a.png', d).parent.parent}"),
    lambda d: read_settings(_file("s.json", d)),
    lambda d: read_settings(_file("s.toml", d)),
    lambda d: read_run_record(_file("run.json", d)),
    _load_weights,
    _load_config,
    lambda d: read_checkpoint(_file("last.safetensors", d)),
]


def test_one(data: bytes) -> None:
    if not data:
        return
    try:
        TARGETS[data[0] % len(TARGETS)](data[1:])
    except VaelabError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()
