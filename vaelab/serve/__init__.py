"""The local latent explorer: a page to look inside trained runs (``vaelab serve``).

``serve(runs)`` loads each run once, encodes a map of its test images and a pool of its
training images, and answers the page's requests until Ctrl-C. See docs/explorer.md.
"""
from __future__ import annotations

import os
import sys

from ..errors import VaelabError
from .api import MAP_SIZE, POOL_SIZE, ApiError, RunView, build_view, open_run
from .server import Explorer, ExplorerServer, make_server, start_in_thread

__all__ = ["ApiError", "Explorer", "ExplorerServer", "RunView", "build_view", "explorer", "make_server",
           "open_run", "serve", "start_in_thread"]


def explorer(runs: list[str | os.PathLike], data: str | None = None, data_dir=None, *, map_size: int = MAP_SIZE,
             pool_size: int = POOL_SIZE) -> Explorer:
    """The runs loaded and encoded, ready to serve (``data`` overrides each run's recorded spec)."""
    if map_size < 2 or pool_size < 1:
        raise VaelabError(f"--map-size must be at least 2 and --pool-size at least 1, got {map_size} and {pool_size}")
    return Explorer([open_run(r, data, data_dir, map_size=map_size, pool_size=pool_size) for r in runs])


def serve(runs: list[str | os.PathLike], data: str | None = None, *, host: str = "127.0.0.1", port: int = 8000,
          data_dir=None, map_size: int = MAP_SIZE, pool_size: int = POOL_SIZE) -> None:
    """Serve the explorer of ``runs`` on ``host:port`` until Ctrl-C, which stops it cleanly.
    The port is bound before the runs are loaded, so a busy port is said at once."""
    server = make_server(None, host, port)  # no request is answered before serve_forever
    try:
        server.explorer = explorer(runs, data, data_dir, map_size=map_size, pool_size=pool_size)
        print(f"serving {len(runs)} run{'s' if len(runs) != 1 else ''} at {server.url}  (Ctrl-C stops)", flush=True)
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr, flush=True)
    finally:
        server.server_close()

