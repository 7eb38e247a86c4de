"""Strict reader and writer for the IDX format (MNIST and its drop-in relatives).

The reader trusts nothing in the file: the header is checked before any payload
is read, the declared size is capped before anything is allocated, and the payload
must match the declared size exactly, so truncated downloads and wrong files fail
with one clear message instead of a reshape error later on.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from vaelab.errors import VaelabError, brief

# IDX type code -> big-endian numpy dtype.
_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {(dt.kind, dt.itemsize): code for code, dt in _DTYPES.items()}
MAX_BYTES = 2**31  # far above any IDX dataset; a bigger header is corrupt, not data
_CHUNK = 1 << 24
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read a plain or gzip-compressed IDX file into a native-endian array.

    Gzip is detected by its magic bytes, not the file name. At most the declared
    payload plus one byte is decompressed, so a corrupt header cannot make us inflate
    an unbounded stream.
    """
    path = Path(path)
    try:
        raw = open(path, "rb")
    except OSError as e:
        raise VaelabError(f"cannot open IDX file {path}: {e.strerror}; check the path") from None
    with raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        try:
            dtype, shape, header_len = _read_header(stream, path)
            expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if expected > MAX_BYTES:
                raise VaelabError(
                    f"IDX file {path} declares shape {shape} ({expected:,} bytes), over the "
                    f"{MAX_BYTES:,}-byte limit; the header is corrupt or this is not an IDX file"
                )
            payload = _read_at_most(stream, expected + 1)
        except (OSError, EOFError, zlib.error) as e:
            what = "corrupt gzip stream" if compressed else "read error"
            raise VaelabError(f"{what} in IDX file {path} ({brief(e)}); re-download the file") from None
        if len(payload) != expected:
            if len(payload) < expected:
                found = f"only {len(payload):,}"
            elif compressed:
                found = "more (trailing data)"
            else:
                found = f"{os.fstat(raw.fileno()).st_size - header_len:,} (trailing data)"
            raise VaelabError(
                f"IDX file {path} is the wrong size: header declares shape {shape} = "
                f"{expected:,} payload bytes but the file holds {found}; re-download the file"
            )
    return np.frombuffer(payload, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def _read_header(stream, path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    magic = stream.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
        raise VaelabError(
            f"{path} is not an IDX file (bad magic {magic.hex() or 'empty file'}); "
            "expected the MNIST-style IDX format"
        )
    code, ndim = magic[2], magic[3]
    if code not in _DTYPES:
        raise VaelabError(f"IDX file {path} has unknown type code 0x{code:02x}; the file is corrupt")
    if not 1 <= ndim <= 4:
        raise VaelabError(f"IDX file {path} declares {ndim} dimensions (1..4 supported); the file is corrupt")
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise VaelabError(f"IDX file {path} ends inside its header; re-download the file")
    shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
    if min(shape) == 0:
        raise VaelabError(f"IDX file {path} declares an empty dimension in shape {shape}; the file is corrupt")
    return _DTYPES[code], shape, 4 + 4 * ndim


def _read_at_most(stream, n: int) -> bytearray:
    """Read up to ``n`` bytes in chunks, so memory follows the data actually present."""
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(min(n - len(buf), _CHUNK))
        if not chunk:
            break
        buf += chunk
    return buf


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as IDX; gzip-compressed when the name ends in ``.gz``."""
    array = np.asarray(array)
    code = _CODES.get((array.dtype.kind, array.dtype.itemsize))
    if code is None or not 1 <= array.ndim <= 4 or array.size == 0:
        raise VaelabError(
            f"cannot write {path} as IDX: need a non-empty 1-4 dimensional array of "
            f"uint8/int8/int16/int32/float32/float64, got {array.dtype} shape {array.shape}"
        )
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + array.astype(_DTYPES[code], copy=False).tobytes()
    path = Path(path)
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
