"""Every parser of user-supplied files, fuzzed: IDX, .npy/.npz, image folders, settings
files (JSON/TOML), config.json, run.json, safetensors weights and training checkpoints.

Inputs are structure-aware (valid headers with wrong sizes, truncations, huge declared
dimensions, lying archive entries) as well as random bytes. The only outcome allowed
besides success is a :class:`~vaelab.errors.VaelabError` with a one-line message: any
other exception, a hang (the per-example deadline) or a big allocation (a file that
declares 10^12 elements is refused before allocating) fails the test.

Examples are derandomized so the suite is repeatable; ``VAELAB_FUZZ_RANDOM=1`` explores
new ones and ``VAELAB_FUZZ_EXAMPLES=N`` sets the examples per test (default 150);
``python benchmarks/fuzz_long.py`` runs many random examples on demand.
"""
from __future__ import annotations

import gzip
import io
import json
import math
import os
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import vaelab  # noqa: E402
from vaelab.data import read_idx  # noqa: E402
from vaelab.errors import VaelabError  # noqa: E402
from vaelab.files import read_run_record, read_safetensors, read_settings, serialize  # noqa: E402
from vaelab.io import record_config  # noqa: E402
from vaelab.models.vae import VAEConfig  # noqa: E402
from vaelab.training import TrainConfig  # noqa: E402
from vaelab.training.checkpoint import FORMAT, VERSION, _digest, read_checkpoint, restore_checkpoint  # noqa: E402
from vaelab.training.terms import restore_epoch_terms  # noqa: E402
from vaelab.training.step import make_adam  # noqa: E402
from vaelab.training.trainer import _check_counters  # noqa: E402

FUZZ = settings(max_examples=int(os.environ.get("VAELAB_FUZZ_EXAMPLES", 150)), deadline=3000, database=None,
                derandomize=not os.environ.get("VAELAB_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
HUGE = st.sampled_from([2**31, 2**32 - 1, 10**12, 2**40, 2**62, 2**63 - 1])


@pytest.fixture(scope="module")
def work():
    with tempfile.TemporaryDirectory(prefix="vaelab-fuzz-") as d:
        yield Path(d)


MESSAGE_LIMIT = 600  # a work path, our own words and one brief() of a library's text


def refused_or_ok(fn, *args, **kwargs):
    """Run a parser: its result, or None when it refused the input with one clear line."""
    try:
        return fn(*args, **kwargs)
    except VaelabError as exc:
        message = str(exc)
        assert message and "\n" not in message and len(message) <= MESSAGE_LIMIT, repr(message)
        return None


# --- IDX ---------------------------------------------------------------------------------

IDX_CODES = st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]) | st.integers(0, 255)
SMALL_DIM = st.integers(0, 6)


@st.composite
def idx_files(draw):
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=64)), None
    code = draw(IDX_CODES)
    dims = draw(st.lists(SMALL_DIM | st.integers(0, 2**32 - 1) | st.sampled_from([2**31, 2**32 - 1]),
                         min_size=0, max_size=5))
    head = bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    size = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}.get(code, 1) * math.prod(dims)
    n = draw(st.sampled_from([min(size, 4096), max(size - 1, 0), size + 1, 0]) | st.integers(0, 300))
    blob = head + draw(st.binary(min_size=min(n, 4096), max_size=min(n, 4096)))
    blob = blob[: draw(st.integers(0, len(blob)))] if draw(st.booleans()) and blob else blob
    if draw(st.booleans()):
        blob = gzip.compress(blob, mtime=0)
        if draw(st.booleans()):
            blob = blob[: draw(st.integers(0, len(blob)))]
    return blob, (dims if len(dims) else None)


@FUZZ
@given(idx_files())
def test_fuzz_idx(work, case):
    blob, dims = case
    path = work / "f.idx"
    path.write_bytes(blob)
    array = refused_or_ok(read_idx, path)
    if array is not None and dims is not None:
        assert list(array.shape) == dims


# --- .npy / .npz -------------------------------------------------------------------------

DESCRS = st.sampled_from(["|u1", "<f4", ">f8", "<i8", "|b1", "O", "<U3", "|V0", "<M8[s]", "|S0", "<c8",
                          [("a", "<i4")], [("o", "O")], "<f4(3,)"]) | st.text(max_size=8)


@st.composite
def npy_bytes(draw):
    version = draw(st.sampled_from([(1, 0), (2, 0), (3, 0), (9, 9)]))
    shape = tuple(draw(st.lists(SMALL_DIM | HUGE | st.integers(-3, -1), max_size=4)))
    header = {"descr": draw(DESCRS), "fortran_order": draw(st.booleans()), "shape": shape}
    text = repr(header) if draw(st.integers(0, 6)) else draw(st.text(max_size=40))
    if draw(st.integers(0, 8)) == 0:
        text = "(" * 300 + ")" * 300  # nesting beyond the parser's limit
    raw = text.encode("latin-1", "replace")
    raw += b" " * (-(len(raw) + 11) % 64) + b"\n"
    length = struct.pack("<H", len(raw)) if version[0] == 1 else struct.pack("<I", len(raw))
    blob = b"\x93NUMPY" + bytes(version) + length + raw
    return blob + draw(st.binary(max_size=200))


@st.composite
def array_files(draw):
    kind = draw(st.sampled_from(["npy", "npz", "random", "real"]))
    if kind == "random":
        return "a.npy", draw(st.sampled_from([b"", b"\x93NUMPY", b"PK\x03\x04"])) + draw(st.binary(max_size=80))
    if kind == "real":  # a valid file, then cut or flipped
        buf = io.BytesIO()
        shape = draw(st.sampled_from([(2, 3, 3), (2, 1, 2, 2), (3, 2, 2, 3), (4,), (2, 5, 3, 3)]))
        np.save(buf, np.zeros(shape, draw(st.sampled_from([np.uint8, np.float32, np.int64, np.bool_]))))
        data = bytearray(buf.getvalue())
        if data and draw(st.booleans()):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        return "a.npy", bytes(data[: draw(st.integers(0, len(data)))]) if draw(st.booleans()) else bytes(data)
    if kind == "npy":
        return "a.npy", draw(npy_bytes())
    buf = io.BytesIO()
    method = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    with zipfile.ZipFile(buf, "w", method) as z:
        for name in draw(st.lists(st.sampled_from(["x.npy", "y.npy", "z.npy", "x"]), max_size=3, unique=True)):
            z.writestr(name, draw(npy_bytes()))
    data = buf.getvalue()
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return "a.npz", data


@FUZZ
@given(array_files())
def test_fuzz_npy_and_npz(work, case):
    name, blob = case
    path = work / name
    path.write_bytes(blob)
    ds = refused_or_ok(vaelab.load_dataset, f"npy:{path}")
    if ds is not None:
        assert ds.x.ndim == 4 and ds.x.dtype == torch.float32
        assert ds.x.numel() == 0 or (0 <= float(ds.x.min()) and float(ds.x.max()) <= 1)


# --- image folders -----------------------------------------------------------------------


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, pixels: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(pixels)) + _chunk(b"IEND", b"")


def _real_image(fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L" if fmt != "JPEG" else "RGB", (5, 4), 120).save(buf, format=fmt)
    return buf.getvalue()


@st.composite
def image_files(draw):
    kind = draw(st.sampled_from(["huge", "real", "magic"]))
    if kind == "huge":  # a valid PNG header declaring an enormous image
        w, h = draw(st.sampled_from([(2**31 - 1, 2**31 - 1), (100_000, 100_000), (9000, 9000), (1, 2**31 - 1)]))
        return _png(w, h, b"\0" * 16)
    if kind == "real":
        data = bytearray(_real_image(draw(st.sampled_from(["PNG", "BMP", "GIF", "TIFF", "JPEG"]))))
        for _ in range(draw(st.integers(0, 3))):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        return bytes(data[: draw(st.integers(0, len(data)))]) if draw(st.booleans()) else bytes(data)
    magic = draw(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"\xff\xd8\xff", b"II*\x00",
                                  b"RIFF\0\0\0\0WEBP", b"%!PS-Adobe-3.0 EPSF-3.0\n", b""]))
    return magic + draw(st.binary(max_size=100))


@FUZZ
@given(image_files(), st.sampled_from(["a.png", "a.jpg", "a.gif", "a.tif", "a.bmp"]))
def test_fuzz_image_folder(work, blob, name):
    folder = work / "images"
    for old in folder.glob("cls/*"):
        old.unlink()
    (folder / "cls").mkdir(parents=True, exist_ok=True)
    (folder / "cls" / name).write_bytes(blob)
    ds = refused_or_ok(vaelab.load_dataset, f"folder:{folder}")
    if ds is not None:
        assert len(ds) == 1 and ds.x.dtype == torch.float32


# --- settings files, config.json, run.json -----------------------------------------------

SCALARS = (st.none() | st.booleans() | st.integers(-10, 10**6) | HUGE | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
JSONISH = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                       max_leaves=12)
TRAIN_KEYS = sorted(TrainConfig.__dataclass_fields__)
MODEL_KEYS = sorted(VAEConfig.__dataclass_fields__)
SETTING_VALUES = {
    "activation": st.sampled_from(["relu", "tanh", "nope"]), "backbone": st.sampled_from(["mlp", "conv", "x"]),
    "likelihood": st.sampled_from(["bernoulli", "gaussian", "gaussian-learned", "?"]),
    "hidden": st.lists(st.integers(-2, 64) | HUGE, max_size=3), "channels": st.lists(st.integers(-1, 16) | HUGE, max_size=4),
    "input_shape": st.lists(st.integers(-1, 40) | HUGE, min_size=2, max_size=4),
    "latent_dim": st.integers(-1, 16) | HUGE,
}


@st.composite
def settings_dicts(draw, keys=TRAIN_KEYS + MODEL_KEYS):
    out = {}
    for key in draw(st.lists(st.sampled_from(keys + ["unknown_key", "epoch"]), max_size=6, unique=True)):
        out[key] = draw(SETTING_VALUES.get(key, JSONISH) | JSONISH) if draw(st.booleans()) else draw(
            SETTING_VALUES.get(key, SCALARS))
    return out


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v if x is not None and not isinstance(x, dict)) + "]"
    return '"?"'


def _check_settings(obj):
    train = {k: v for k, v in obj.items() if k in TRAIN_KEYS}
    model = {k: v for k, v in obj.items() if k in MODEL_KEYS}
    refused_or_ok(TrainConfig.from_dict, train)
    refused_or_ok(VAEConfig.from_dict, model)


@FUZZ
@given(settings_dicts(), st.sampled_from(["json", "toml", "bytes"]), st.binary(max_size=60))
def test_fuzz_settings_files(work, obj, form, noise):
    if form == "json":
        path, data = work / "s.json", json.dumps(obj).encode()
    elif form == "toml":
        lines = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in obj.items() if v is not None and not isinstance(v, dict)]
        path, data = work / "s.toml", "\n".join(lines).encode()
    else:
        path, data = work / "s.toml" if noise[:1] == b"t" else work / "s.json", noise
    path.write_bytes(data)
    parsed = refused_or_ok(read_settings, path)
    if parsed is not None:
        assert isinstance(parsed, dict)
        _check_settings(parsed)


@pytest.fixture(scope="module")
def tiny_weights(work):
    torch.manual_seed(0)
    model = vaelab.build("vae", input_shape=[1, 8, 8], hidden=[8], latent_dim=2)
    vaelab.save(model, work / "model")
    return work / "model"


@FUZZ
@given(st.fixed_dictionaries({}, optional={"format_version": st.sampled_from([1, 2, True, "1"]) | SCALARS,
                                           "model": st.sampled_from(["vae", "nope"]) | SCALARS,
                                           "config": settings_dicts(MODEL_KEYS) | JSONISH,
                                           "extra": SCALARS}))
def test_fuzz_config_json_and_load(work, tiny_weights, record):
    (tiny_weights / "config.json").write_text(json.dumps(record))
    model = refused_or_ok(vaelab.load, tiny_weights)
    if model is not None:
        assert not model.training


@FUZZ
@given(st.fixed_dictionaries({}, optional={"model": st.sampled_from(["vae"]) | SCALARS,
                                           "config": settings_dicts(MODEL_KEYS) | JSONISH,
                                           "train": settings_dicts(TRAIN_KEYS) | JSONISH,
                                           "data": JSONISH, "resolved": JSONISH, "format_version": SCALARS,
                                           "vaelab_version": SCALARS, "other": SCALARS}),
       st.booleans())
def test_fuzz_run_json(work, record, nan_literal):
    text = json.dumps(record)
    (work / "run.json").write_text(text.replace("1.5", "NaN") if nan_literal else text)
    parsed = refused_or_ok(read_run_record, work / "run.json")
    if parsed is not None:
        refused_or_ok(TrainConfig.from_dict, parsed["train"])
        refused_or_ok(record_config, {"format_version": 1, "model": parsed["model"], "config": parsed["config"]},
                      "run.json")


# --- safetensors and checkpoints -----------------------------------------------------------

DTYPES = st.sampled_from(["F32", "F16", "BF16", "F64", "I64", "I32", "I8", "U8", "BOOL", "F8_E4M3", "X"]) | st.text(max_size=4)


@st.composite
def safetensors_files(draw):
    if draw(st.integers(0, 6)) == 0:
        return draw(st.binary(max_size=64))
    header = {}
    for name in draw(st.lists(st.text(min_size=1, max_size=8), max_size=3, unique=True)):
        header[name] = {"dtype": draw(DTYPES),
                        "shape": draw(st.lists(SMALL_DIM | HUGE | st.integers(-2, -1), max_size=4)),
                        "data_offsets": draw(st.lists(st.integers(0, 64) | HUGE, min_size=2, max_size=2))}
        if draw(st.integers(0, 6)) == 0:
            header[name] = draw(JSONISH)
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(st.text(max_size=6), st.text(max_size=8), max_size=3) | JSONISH)
    text = json.dumps(header).encode()
    length = draw(st.sampled_from([len(text), len(text) + 3, 2**60, 2**64 - 1, 0]) | st.integers(0, 400))
    return struct.pack("<Q", length) + text + draw(st.binary(max_size=128))


@FUZZ
@given(safetensors_files())
def test_fuzz_safetensors_weights_and_checkpoints(work, tiny_weights, blob):
    (tiny_weights / "config.json").write_text(json.dumps({"format_version": 1, "model": "vae", "config": {
        **vaelab.build("vae", input_shape=[1, 8, 8], hidden=[8], latent_dim=2).config.to_dict()}}))
    path = work / "w.safetensors"
    path.write_bytes(blob)
    refused_or_ok(read_safetensors, path)
    refused_or_ok(read_checkpoint, path)
    weights = tiny_weights / "model.safetensors"
    good = weights.read_bytes()
    try:
        weights.write_bytes(blob)
        refused_or_ok(vaelab.load, tiny_weights)
    finally:
        weights.write_bytes(good)


@pytest.fixture(scope="module")
def real_checkpoint(mnist_small, work):
    """A real end-of-epoch checkpoint, to be mutated and re-checksummed."""
    out = work / "ckpt-run"
    torch.manual_seed(0)
    model = vaelab.build("vae", input_shape=[1, 28, 28], hidden=[8], latent_dim=2)
    vaelab.train(model, mnist_small.train.subset(slice(0, 300)), out,
                 config={"epochs": 1, "batch_size": 100, "threads": 1, "val_size": 0}, progress=False)
    tensors, meta = read_safetensors(out / "checkpoints" / "last.safetensors")
    return tensors, json.loads(meta["state"])


MUTATIONS = st.lists(st.tuples(st.sampled_from(["drop", "reshape", "retype", "state", "counter", "extra"]),
                                st.integers(0, 10**6), st.lists(st.integers(0, 4), max_size=3), SCALARS | JSONISH),
                      min_size=1, max_size=3)
RETYPES = (torch.float64, torch.int32, torch.bool, torch.float16)
STATE_KEYS = ("optimizers", "numpy_rng", "python_rng", "counters", "extra")
COUNTERS = ("epoch", "step", "epoch_step", "best_val", "lr_scale", "epoch_lr", "skipped")


def _mutate(base, plan):
    """Apply a drawn plan (kept small, so hypothesis never prints tensors) to a checkpoint."""
    tensors, state = dict(base[0]), json.loads(json.dumps(base[1]))
    for what, pick, shape, value in plan:
        keys = sorted(tensors)
        key = keys[pick % len(keys)] if keys else None
        if what == "drop" and key:
            tensors.pop(key)
        elif what == "reshape" and key:
            tensors[key] = torch.zeros(shape, dtype=tensors[key].dtype)
        elif what == "retype" and key:
            tensors[key] = tensors[key].to(RETYPES[pick % len(RETYPES)])
        elif what == "state":
            state[STATE_KEYS[pick % len(STATE_KEYS)]] = value
        elif what == "counter" and isinstance(state.get("counters"), dict):
            state["counters"][COUNTERS[pick % len(COUNTERS)]] = value
        elif what == "extra" and isinstance(state.get("counters"), dict):
            tensors["extra/history"] = torch.zeros(shape)
            tensors["extra/sizes"] = torch.zeros(pick % 4, dtype=torch.int64)
            state["counters"]["epoch_step"] = pick % 6 - 1
    return tensors, state


@FUZZ
@given(MUTATIONS)
def test_fuzz_checkpoint_contents_with_valid_checksums(work, real_checkpoint, plan):
    """A checkpoint whose checksum is right but whose contents do not fit the run is refused
    by the resume path (restore, counters, mid-epoch data) with a VaelabError."""
    tensors, state = _mutate(real_checkpoint, plan)
    text = json.dumps(state)
    path = work / "mutated.safetensors"
    path.write_bytes(serialize(tensors, {"format": FORMAT, "version": VERSION, "state": text,
                                         "sha256": _digest(tensors, text)}))
    read = refused_or_ok(read_checkpoint, path)
    if read is None:
        return
    torch.manual_seed(0)
    model = vaelab.build("vae", input_shape=[1, 28, 28], hidden=[8], latent_dim=2)
    optimizer = make_adam(model.parameters(), TrainConfig())
    generators = {"order": torch.Generator(), "binarize": torch.Generator()}
    rng = (torch.get_rng_state(), np.random.get_state(), __import__("random").getstate())
    try:
        counters = refused_or_ok(restore_checkpoint, *read, model, optimizer, generators, path)
        if counters is not None and isinstance(counters, dict):
            counters = refused_or_ok(_check_counters, counters, path)
            if counters is not None and counters["epoch_step"]:
                refused_or_ok(restore_epoch_terms, *read, counters, 3, torch.device("cpu"), path)
    finally:
        torch.set_rng_state(rng[0])
        np.random.set_state(rng[1])
        __import__("random").setstate(rng[2])
