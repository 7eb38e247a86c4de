"""Checksummed downloads: a file lands at its final path only when its SHA-256 matches.

Data goes to a temporary file beside the destination and is renamed atomically, so an
interrupted or tampered download never leaves a file that later looks valid.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Iterable

from vaelab.errors import VaelabError, brief

TIMEOUT_S = 30.0


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url_list: Iterable[str], dest_path: str | os.PathLike, sha256: str, timeout: float = TIMEOUT_S) -> Path:
    """Download the first URL whose content has the expected SHA-256 to ``dest_path``.

    Mirrors are tried in order; a mirror that fails or serves different bytes is
    skipped. If none succeeds the error names every URL tried and the exact path
    where the file can be placed by hand.
    """
    dest = Path(dest_path)
    urls = list(url_list)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VaelabError(f"cannot create folder {dest.parent} for {dest.name}: {e.strerror}; choose a writable data_dir") from None
    failures = []
    for url in urls:
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        except OSError as e:
            raise VaelabError(f"cannot write to {dest.parent}: {e.strerror}; choose a writable data_dir") from None
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                shutil.copyfileobj(response, out, 1 << 20)
            got = sha256_file(tmp)
            if got == sha256:
                os.replace(tmp, dest)
                return dest
            failures.append(f"{url} (checksum mismatch: SHA-256 {got})")
        except (OSError, http.client.HTTPException, ValueError) as e:
            failures.append(f"{url} ({brief(getattr(e, 'reason', None) or e)})")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise VaelabError(
        f"{dest.name} is missing and could not be downloaded; tried {'; '.join(failures) or 'no URLs'}. "
        f"Place the file at {dest} (SHA-256 {sha256}) and run again"
    )
