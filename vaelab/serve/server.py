"""The explorer's HTTP side: the standard library's threading server and one request handler.

Why the standard library: the API is a handful of JSON endpoints and three static files,
so a web framework would add a dependency and little else. What a framework would give,
done by hand here: only the named static files are served (no path is ever joined to a
directory, so ``..`` and ``%2e%2e`` lead nowhere), request bodies are bounded before they
are read (413), JSON is parsed strictly (no NaN), every refusal is a JSON message with a
4xx status, an unexpected failure a 500 without a traceback, and idle connections time out.
"""
from __future__ import annotations

import errno
import ipaddress
import json
import re
import socket
import sys
import threading
import time
import warnings
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from ..errors import VaelabError, VaelabWarning, brief
from . import api

MAX_JSON_BYTES = 64 * 1024  # a code of a few thousand numbers
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
IDLE_TIMEOUT_S = 10.0  # a connection that sends nothing for this long is closed
MAX_CONNECTIONS = 64  # open at once; a browser uses about six
CLOSE_GRACE_S = 5.0  # closing waits this long for a request being answered (a decode) to finish
STATIC = {"/": "index.html", "/index.html": "index.html", "/static/app.js": "app.js",
          "/static/style.css": "style.css"}
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8"}
_ROUTE = re.compile(r"/api/runs/(\d{1,6})/(map|decode|classes|upload|points/(\d{1,9}))")
_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"


class Explorer:
    """The loaded runs and the static files, shared by every request thread (read-only)."""

    def __init__(self, runs: list[api.RunView]):
        if not runs:
            raise VaelabError("give at least one run to explore")
        self.runs = runs
        folder = resources.files(__package__) / "static"
        self.static = {name: folder.joinpath(name).read_bytes() for name in set(STATIC.values())}

    def run(self, text: str) -> api.RunView:
        i = int(text)
        if i >= len(self.runs):
            raise api.ApiError(404, f"no run {i}; this server has runs 0..{len(self.runs) - 1}")
        return self.runs[i]


class Handler(BaseHTTPRequestHandler):
    """One request: route it, answer JSON (or a static file), refuse anything else by status."""

    protocol_version = "HTTP/1.1"  # keep-alive: the page's slider requests reuse one connection
    server_version = "vaelab-explorer"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall

    def do_GET(self):
        self._answer("GET")

    def do_POST(self):
        self._answer("POST")

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # one line per slider move would drown the terminal

    def _answer(self, method: str) -> None:
        self._body_read = False
        try:
            self._check_host()
            status, ctype, body = self._route(method, urlsplit(self.path))
        except api.ApiError as exc:
            status, ctype, body = exc.status, *_json({"error": str(exc)})
        except VaelabError as exc:
            status, ctype, body = 400, *_json({"error": str(exc)})
        except (TimeoutError, ConnectionError):
            self.close_connection = True
            return
        except Exception as exc:  # a bug: say so in one line, keep serving
            print(f"error: explorer request {method} {self.path[:80]!r} failed: {brief(exc, typed=True)}",
                  file=sys.stderr)
            status, ctype, body = 500, *_json({"error": "internal error; the server keeps running"})
        if status >= 400 and not self._body_read:
            self._no_body()
        self._send(status, ctype, body)

    def _route(self, method: str, url) -> tuple[int, str, bytes]:
        if url.path in STATIC and method == "GET":
            self._no_body()
            name = STATIC[url.path]
            return 200, TYPES[name[name.rfind("."):]], self.server.explorer.static[name]
        if url.path == "/api/runs" and method == "GET":
            self._no_body()
            return 200, *_json([api.describe(i, r) for i, r in enumerate(self.server.explorer.runs)])
        match = _ROUTE.fullmatch(url.path)
        if match is None:
            raise api.ApiError(404, "no such page or endpoint")
        run, what = self.server.explorer.run(match[1]), match[2]
        if what == "map" or what.startswith("points/"):
            self._need(method, "GET")
            self._no_body()
            return 200, *_json(api.latent_map(run) if what == "map" else api.point(run, int(match[3])))
        self._need(method, "POST")
        if what == "upload":
            try:
                query = parse_qs(url.query, max_num_fields=4)
            except ValueError:
                raise api.ApiError(400, "the query has too many fields; give y and invert only") from None
            data = self._body(MAX_UPLOAD_BYTES, ("image/png", "image/jpeg", "application/octet-stream"))
            y, invert = query.get("y", [None])[0], query.get("invert", ["0"])[0] == "1"
            return 200, *_json(api.upload(run, data, y, invert))
        body = _parse_json(self._body(MAX_JSON_BYTES, ("application/json",)))
        return 200, *_json(api.decode(run, body) if what == "decode" else api.classes(run, body))

    def _need(self, method: str, allowed: str) -> None:
        if method != allowed:
            raise api.ApiError(405, f"use {allowed} for {self.path[:80]}")

    def _check_host(self) -> None:
        """Refuse requests addressed to another host name (a DNS-rebinding page): a server on
        the loopback answers only to a loopback name."""
        allowed = self.server.allowed_hosts
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]").lower()
        if allowed and host not in allowed:
            self.close_connection = True
            raise api.ApiError(403, f"this server answers only to {', '.join(sorted(allowed))}; "
                                    "open it by that address")

    def _no_body(self) -> None:
        """Where a body was sent but not read, end the connection after the answer: its bytes
        must not be taken for the next request."""
        if self.headers.get("Content-Length", "0").strip() not in ("", "0") or self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # the body was not read: do not parse it as the next request

    def _body(self, limit: int, types: tuple[str, ...]) -> bytes:
        """The request body, at most ``limit`` bytes, of one of ``types``; refused before reading."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise api.ApiError(411, "send the body with a Content-Length (chunked bodies are not accepted)")
        length = (self.headers.get("Content-Length") or "").strip()
        if not length.isdigit() or len(length) > 12:
            self.close_connection = True
            raise api.ApiError(411 if not length else 400, "send a Content-Length with the body's size in bytes")
        n = int(length)
        if n > limit:
            self.close_connection = True
            raise api.ApiError(413, f"the body is {n:,} bytes; at most {limit:,} are accepted here")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype not in types:
            self.close_connection = True
            raise api.ApiError(415, f"send the body as {' or '.join(types)}, not {ctype[:40] or 'nothing'}")
        data = self.rfile.read(n)
        self._body_read = True
        if len(data) != n:
            self.close_connection = True
            raise api.ApiError(400, f"the body ended after {len(data)} of its {n} bytes")
        return data

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", _CSP)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (TimeoutError, ConnectionError):
            self.close_connection = True

    def send_error(self, code, message=None, explain=None):
        """The base class's refusals (bad request line, huge headers, unknown method) as JSON too."""
        self.close_connection = True
        phrase = message or (HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else "error")
        self._send(code, *_json({"error": str(phrase)[:200]}))


class ExplorerServer(ThreadingHTTPServer):
    """A threading HTTP server holding the explorer; request threads never outlive it: closing
    ends their connections and waits for them (:meth:`server_close`)."""

    daemon_threads = True
    request_queue_size = MAX_CONNECTIONS  # the listen backlog: 5 by default, so a burst waited on SYN retries

    def __init__(self, address, explorer: Explorer):
        self.explorer = explorer
        self.allowed_hosts = _loopback_names(address[0])
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._open: dict[threading.Thread, socket.socket] = {}  # each request thread's connection
        self._open_lock = threading.Lock()
        super().__init__(address, Handler)

    def process_request(self, request, client_address):
        """A thread per connection, up to MAX_CONNECTIONS; beyond that a 503 and the door closed."""
        if not self._slots.acquire(blocking=False):
            _, body = _json({"error": "too many open connections; try again"})
            head = f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            try:
                request.sendall(head.encode() + b"Connection: close\r\n\r\n" + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        with self._open_lock:
            self._open[threading.current_thread()] = request
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.pop(threading.current_thread(), None)
            self._slots.release()

    def server_close(self):
        """Stop listening, end every open connection, and wait (CLOSE_GRACE_S in all) for their
        threads. Request threads are daemons, so that a stalled client cannot keep the process
        alive; but a daemon thread still running when the interpreter shuts down is stopped
        wherever it is, and stopped inside torch's C++ that can abort the process (exit −6) after
        a clean "stopped". An idle keep-alive connection ends at once; a request being answered
        finishes first."""
        super().server_close()
        with self._open_lock:
            open_now = list(self._open.items())
        for _, request in open_now:
            try:
                request.shutdown(socket.SHUT_RD)  # a thread waiting for the next request reads EOF
            except OSError:
                pass
        deadline = time.monotonic() + CLOSE_GRACE_S
        for thread, _ in open_now:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def open_connections(self) -> int:
        """How many request threads are running."""
        with self._open_lock:
            return sum(t.is_alive() for t in self._open)

    def handle_error(self, request, client_address):
        """A client that hangs up or stalls is routine; anything else is one line, not a traceback."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)):
            print(f"error: explorer connection failed: {brief(exc, typed=True)}", file=sys.stderr)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


class _ExplorerServer6(ExplorerServer):
    address_family = socket.AF_INET6


def make_server(explorer: Explorer, host: str = "127.0.0.1", port: int = 8000) -> ExplorerServer:
    """Bind the explorer to ``host:port`` (port 0: a free one), or one line saying why not."""
    if not 0 <= port <= 65535:
        raise VaelabError(f"--port {port} is not a port number; choose one from 1024 to 65535")
    if not _loopback_names(host):
        warnings.warn(f"serving on {host}: other machines that reach it can use the explorer (it has no login); "
                      "leave out --host to keep it on this machine (127.0.0.1)", VaelabWarning, stacklevel=2)
    cls = _ExplorerServer6 if ":" in host else ExplorerServer
    try:
        return cls((host, port), explorer)
    except OSError as exc:
        raise VaelabError(_bind_problem(exc, host, port)) from None


def _bind_problem(exc: OSError, host: str, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is already in use on {host}; choose another with --port (e.g. --port {port + 1})"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to listen on port {port}; choose one from 1024 to 65535 with --port"
    return f"cannot listen on {host}:{port} ({exc.strerror or brief(exc)}); check --host and --port"


def start_in_thread(explorer: Explorer, host: str = "127.0.0.1", port: int = 0) -> ExplorerServer:
    """A running server in a background thread (tests, benchmarks); stop it with ``.shutdown()``."""
    server = make_server(explorer, host, port)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


def _loopback_names(host: str) -> set[str]:
    """The Host header names a loopback-bound server answers to; empty for any other bind."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return {"127.0.0.1", "localhost", "::1", host.lower()} if loopback else set()


def _json(value) -> tuple[str, bytes]:
    return "application/json", json.dumps(value, allow_nan=False, separators=(",", ":")).encode()


def _parse_json(data: bytes):
    """Strict JSON: NaN and Infinity are not JSON, and a body nested too deep is refused."""
    def refuse(name):
        raise api.ApiError(400, f"the body holds {name}, which is not a number JSON allows; give finite numbers")

    try:
        return json.loads(data, parse_constant=refuse)
    except api.ApiError:
        raise
    except (ValueError, RecursionError):
        raise api.ApiError(400, "the body is not valid JSON (UTF-8 text, e.g. {\"z\": [0.1, -1.2]})") from None
