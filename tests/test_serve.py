"""The explorer's server without a browser: what each endpoint computes, and what it refuses.

A real server on a free port in a background thread, spoken to with http.client and raw
sockets, as a page (or a hostile client) would.
"""
from __future__ import annotations

import base64
import http.client
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vaelab
from conftest import FAST
from vaelab.errors import VaelabError, VaelabWarning
from vaelab.serve import Explorer, build_view, make_server, start_in_thread
from vaelab.viz.latent import LatentView

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cvae(synthetic_small):
    torch.manual_seed(0)
    model = vaelab.build("cvae", input_shape=[1, 28, 28], hidden=[32], latent_dim=3)
    return model.eval()


@pytest.fixture(scope="module")
def server(synthetic_vae, cvae, synthetic_small):
    views = [build_view("vae", synthetic_vae, synthetic_small.test, synthetic_small.train, map_size=300, pool_size=1000),
             build_view("cvae", cvae, synthetic_small.test, synthetic_small.train, map_size=100, pool_size=100)]
    srv = start_in_thread(Explorer(views))
    yield srv
    srv.shutdown()
    srv.server_close()


def request(srv, method, path, body=None, ctype="application/json", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10)
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    conn.request(method, path, body=body, headers={"Content-Type": ctype, **(headers or {})})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, json.loads(data) if r.getheader("Content-Type") == "application/json" else data


def pixels(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def as_bytes(x: torch.Tensor) -> np.ndarray:
    return (x.squeeze().numpy() * 255 + 0.5).astype(np.uint8)


def png(array: np.ndarray, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def test_decode_is_the_models_decoder_mean(server, synthetic_vae):
    z = [0.5, -1.0, 0.0, 2.0, 0.1, 0.0, -0.3, 1.2]
    status, body = request(server, "POST", "/api/runs/0/decode", {"z": z})
    assert status == 200
    assert np.array_equal(pixels(body["image"]), as_bytes(LatentView(synthetic_vae).decode(torch.tensor([z]))))
    _, other = request(server, "POST", "/api/runs/0/decode", {"z": [0.0] * 8})
    assert not np.array_equal(pixels(other["image"]), pixels(body["image"]))


def test_a_map_point_is_its_test_image_its_code_and_its_reconstruction(server, synthetic_vae, synthetic_small):
    status, body = request(server, "GET", "/api/runs/0/points/7")
    view = LatentView(synthetic_vae)
    code = view.encode(synthetic_small.test.x[7:8])
    assert status == 200 and body["label"] == int(synthetic_small.test.y[7])
    assert np.array_equal(pixels(body["image"]), as_bytes(synthetic_small.test.x[7]))
    assert np.allclose(body["code"], code[0].tolist(), atol=1e-4)
    assert np.array_equal(pixels(body["recon"]), as_bytes(view.decode(code)))
    _, runs = request(server, "GET", "/api/runs")
    order = view.dimension_order(synthetic_small.test.subset(slice(0, 300)))
    assert [d["index"] for d in runs[0]["dims"]] == order.order and runs[0]["measure"].startswith("mean KL")
    _, m = request(server, "GET", "/api/runs/0/map")
    assert len(m["points"]) == 300 and m["labels"][:5] == synthetic_small.test.y[:5].tolist()
    assert m["projection"] == "PCA of the codes"


def test_an_upload_is_converted_like_training_data_and_finds_itself(server, synthetic_vae, synthetic_small):
    """A training image, enlarged 3× in RGB and inverted (dark on light), comes back as the
    same 28×28 grey image: its code is the image's own and its nearest neighbour is itself."""
    x = synthetic_small.train.x[42]
    big = np.kron(as_bytes(x), np.ones((3, 3), dtype=np.uint8))
    status, body = request(server, "POST", "/api/runs/0/upload?invert=1", png(255 - big, "RGB"), "image/png")
    assert status == 200
    assert np.array_equal(pixels(body["image"]), as_bytes(x))
    assert np.allclose(body["code"], LatentView(synthetic_vae).encode(x[None])[0].tolist(), atol=1e-4)
    assert body["neighbours"][0]["index"] == 42 and body["neighbours"][0]["distance"] < 1e-3
    assert len(body["neighbours"]) == 8
    assert all(a["distance"] <= b["distance"] for a, b in zip(body["neighbours"], body["neighbours"][1:]))


def test_conditional_models_decode_given_a_class(server, cvae):
    z = [0.3, -0.2, 1.0]
    status, one = request(server, "POST", "/api/runs/1/decode", {"z": z, "y": 3})
    assert status == 200
    assert np.array_equal(pixels(one["image"]), as_bytes(LatentView(cvae).decode(torch.tensor([z]), 3)))
    status, grid = request(server, "POST", "/api/runs/1/classes", {"z": z})
    assert status == 200 and grid["classes"] == 10
    assert np.array_equal(pixels(grid["image"])[1:29, 1 + 3 * 29:1 + 3 * 29 + 28], pixels(one["image"]))
    assert len(grid["images"]) == 10 and np.array_equal(pixels(grid["images"][3]), pixels(one["image"]))
    assert request(server, "POST", "/api/runs/1/decode", {"z": z})[0] == 400  # no class
    assert request(server, "POST", "/api/runs/1/decode", {"z": z, "y": 10})[0] == 400
    assert request(server, "POST", "/api/runs/0/decode", {"z": [0] * 8, "y": 1})[0] == 400
    assert request(server, "POST", "/api/runs/0/classes", {"z": [0] * 8})[0] == 400
    assert request(server, "POST", "/api/runs/1/upload", png(np.zeros((28, 28), np.uint8)), "image/png")[0] == 400
    assert request(server, "POST", "/api/runs/1/upload?y=2", png(np.zeros((28, 28), np.uint8)), "image/png")[0] == 200
    for y in ("%C2%B2", "-1", "x", "99999999999", "1&a=1&b=2&c=3&d=4"):  # a superscript two is a digit to str.isdigit
        assert request(server, "POST", f"/api/runs/1/upload?y={y}", png(np.zeros((28, 28), np.uint8)),
                       "image/png")[0] == 400


@pytest.mark.parametrize("path", ["/static/../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd", "/etc/passwd",
                                  "//etc/passwd", "/static/..%2f..%2fvaelab/cli.py", "/static/", "/static/app.js/",
                                  "/api/runs/0/../../../etc/passwd", "/static/server.py", "/../pyproject.toml",
                                  "/static/%2fetc%2fpasswd", "http://127.0.0.1/etc/passwd"])
def test_only_the_pages_files_are_served(server, path):
    status, body = request(server, "GET", path)
    assert status in (400, 404) and "root:" not in str(body) and "import" not in str(body)


@pytest.mark.parametrize("method,path,body,ctype,status,words", [
    ("POST", "/api/runs/0/decode", "{not json", "application/json", 400, "not valid JSON"),
    ("POST", "/api/runs/0/decode", '{"z": [NaN, 0, 0, 0, 0, 0, 0, 0]}', "application/json", 400, "NaN"),
    ("POST", "/api/runs/0/decode", '{"z": [1e999, 0, 0, 0, 0, 0, 0, 0]}', "application/json", 400, "infinite"),
    ("POST", "/api/runs/0/decode", '{"z": [Infinity, 0, 0, 0, 0, 0, 0, 0]}', "application/json", 400, "Infinity"),
    ("POST", "/api/runs/0/decode", '{"z": [1, 2, 3]}', "application/json", 400, "list of 8 numbers"),
    ("POST", "/api/runs/0/decode", '{"z": [1%s, 0, 0, 0, 0, 0, 0, 0]}' % ("0" * 400), "application/json", 400, "1e6"),
    ("POST", "/api/runs/0/decode", '{"z": [1%s, 0, 0, 0, 0, 0, 0, 0]}' % ("0" * 5000), "application/json", 400, "JSON"),
    ("POST", "/api/runs/0/decode", '{"z": ["a", 0, 0, 0, 0, 0, 0, 0]}', "application/json", 400, "numbers only"),
    ("POST", "/api/runs/0/decode", '[1, 2]', "application/json", 400, "JSON object"),
    ("POST", "/api/runs/0/decode", '{"y": 1}', "application/json", 400, "no 'z'"),
    ("POST", "/api/runs/0/decode", "[" * 50000, "application/json", 400, "not valid JSON"),
    ("POST", "/api/runs/0/decode", '{"z": [0]}', "text/plain", 415, "application/json"),
    ("POST", "/api/runs/9/decode", '{"z": [0]}', "application/json", 404, "no run 9"),
    ("GET", "/api/runs/0/points/300", None, "application/json", 404, "0..299"),
    ("GET", "/api/runs/0/decode", None, "application/json", 405, "use POST"),
    ("POST", "/api/runs/0/upload", b"GIF89a not a png", "image/png", 415, "PNG or JPEG"),
    ("POST", "/api/runs/0/upload", b"\x89PNG\r\n\x1a\ngarbage", "image/png", 400, "could not be read"),
    ("PUT", "/api/runs/0/decode", "{}", "application/json", 501, "Unsupported method"),
])
def test_bad_requests_get_a_4xx_with_a_clear_json_message(server, method, path, body, ctype, status, words):
    got, answer = request(server, method, path, body, ctype)
    assert got == status and words in answer["error"]
    assert request(server, "POST", "/api/runs/0/decode", {"z": [0] * 8})[0] == 200  # still serving


def test_sizes_are_bounded_before_reading(server):
    assert request(server, "POST", "/api/runs/0/decode", b"{" + b" " * 70_000 + b"}")[0] == 413
    big = png(np.zeros((5000, 8), np.uint8))  # small file, too many pixels a side
    status, body = request(server, "POST", "/api/runs/0/upload", big, "image/png")
    assert status == 413 and "5000" in body["error"]
    # a 3 MB upload is refused from its Content-Length alone, before its bytes are read
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=5) as s:
        s.sendall(b"POST /api/runs/0/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                  b"Content-Length: 3000000\r\n\r\n")
        assert b" 413 " in s.recv(200)


def test_a_refused_body_is_never_read_as_the_next_request(server):
    body = b'{"z": [0, 0, 0, 0, 0, 0, 0, 0]}'
    head = b"POST /api/runs/%s/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=5) as s:
        s.sendall(head % b"9" + b"Content-Length: %d\r\n\r\n" % len(body) + body +
                  head % b"0" + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        replies = b""
        while chunk := s.recv(65536):
            replies += chunk
    assert replies.startswith(b"HTTP/1.1 404 ") and b" 400 " not in replies


def test_requests_for_another_host_name_are_refused(server):
    status, body = request(server, "GET", "/api/runs", headers={"Host": "attacker.example:8000"})
    assert status == 403 and "127.0.0.1" in body["error"]


def _raw(port: int, data: bytes, half_close: bool) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
            return s.recv(300)
        except OSError:  # the server may close on us mid-send (a refused huge header)
            return b""


def _fuzz_requests(rng: random.Random):
    heads = [b"GET / HTTP/1.1", b"POST /api/runs/0/decode HTTP/1.1", b"POST /api/runs/0/upload HTTP/1.1",
             b"BREW /pot HTTP/1.1", b"GET /api/runs/0/points/-1 HTTP/1.1", b"GET " + b"/a" * 40000 + b" HTTP/1.1"]
    for i in range(240):
        kind = i % 6
        if kind == 0:
            yield bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))
        elif kind == 1:
            yield rng.choice(heads) + b"\r\nHost: 127.0.0.1\r\nContent-Length: " + rng.choice(
                [b"-5", b"abc", b"99999999999999999999", b"10", b"0"]) + b"\r\n\r\n{\"z\":"
        elif kind == 2:
            yield b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"x" * rng.randint(66000, 90000) + b"\r\n\r\n"
        elif kind == 3:
            yield b"GET / HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % j for j in range(150)) + b"\r\n"
        elif kind == 4:
            body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
            yield (b"POST /api/runs/0/" + rng.choice([b"decode", b"upload", b"classes", b"map"]) + b" HTTP/1.1\r\n"
                   b"Host: 127.0.0.1\r\nContent-Type: " + rng.choice([b"application/json", b"image/png"]) +
                   b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        else:
            yield rng.choice(heads) + b"\r\nTransfer-Encoding: chunked\r\nHost: 127.0.0.1\r\n\r\n5\r\nhello\r\n0\r\n\r\n"


def test_a_fuzzed_server_keeps_serving_and_never_answers_500(server):
    rng = random.Random(0)
    statuses = set()
    for i, data in enumerate(_fuzz_requests(rng)):
        reply = _raw(server.server_address[1], data, half_close=i % 2 == 0)
        if reply.startswith(b"HTTP/1."):
            statuses.add(int(reply.split()[1]))
    assert statuses and all(s < 500 or s == 501 for s in statuses), statuses  # never a 500
    assert request(server, "POST", "/api/runs/0/decode", {"z": [0] * 8})[0] == 200


def test_stalled_connections_are_bounded_and_timed_out(server, monkeypatch):
    from vaelab.serve.server import MAX_CONNECTIONS, Handler

    port = server.server_address[1]
    stalled = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(MAX_CONNECTIONS)]
    try:
        for s in stalled:
            s.sendall(b"GET / HTTP/1.1\r\n")  # and never the rest
        assert b" 503 " in _raw(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", half_close=False)
    finally:
        for s in stalled:
            s.close()
    deadline = time.monotonic() + 5
    while request(server, "GET", "/api/runs")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert request(server, "GET", "/api/runs")[0] == 200
    monkeypatch.setattr(Handler, "timeout", 0.3)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\n")
        assert s.recv(100) == b""  # closed by the server, not held open


def test_a_busy_port_is_one_line_naming_it_and_the_fix(server, capsys):
    port = server.server_address[1]
    with pytest.raises(VaelabError, match=f"port {port} is already in use.*--port"):
        make_server(server.explorer, "127.0.0.1", port)
    from vaelab.cli import main

    assert main(["serve", "no-such-run", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"port {port} is already in use" in err


def test_the_loopback_is_the_default_address(server):
    from vaelab.cli import build_parser

    assert build_parser().parse_args(["serve", "run"]).host == "127.0.0.1"
    srv = make_server(server.explorer, port=0)
    srv.server_close()
    assert srv.server_address[0] == "127.0.0.1"


def test_the_map_keeps_no_view_of_the_whole_split(server, synthetic_small):
    run = server.explorer.runs[0]
    assert run.pool.x.untyped_storage().nbytes() == run.pool.x.numel() * 4
    assert run.pool.x.untyped_storage().data_ptr() != synthetic_small.train.x.untyped_storage().data_ptr()


def test_any_other_host_than_the_loopback_is_warned_about(server):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        srv = make_server(server.explorer, "0.0.0.0", 0)
    srv.server_close()
    assert any(issubclass(w.category, VaelabWarning) and "other machines" in str(w.message) for w in caught)


def test_the_command_serves_a_run_and_stops_cleanly_on_ctrl_c(synthetic_small, tmp_path):
    part = synthetic_small.train.subset(slice(0, 200))
    for name in ("train", "test"):
        np.savez(tmp_path / f"{name}.npz", x=(part.x[:, 0].numpy() * 255).round().astype(np.uint8), y=part.y.numpy())
    spec = f"npy:{tmp_path / 'train.npz'},test={tmp_path / 'test.npz'}"
    run = tmp_path / "run"
    vaelab.train("vae", part, run, model_config={"hidden": [16], "latent_dim": 2},
                 config={**FAST, "epochs": 1, "val_size": 0}, progress=False)
    proc = subprocess.Popen([sys.executable, "-m", "vaelab", "serve", str(run), "--data", spec, "--port", "0",
                             "--map-size", "50", "--pool-size", "50"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving 1 run at http://127.0.0.1:"), line + proc.stderr.read()
        port = int(line.split("127.0.0.1:")[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/runs/0/map")
        assert len(json.loads(conn.getresponse().read())["points"]) == 50
        conn.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0 and err.strip() == "stopped", f"exit {proc.returncode}; stderr: {err[-3000:]}"


def test_closing_ends_idle_connections_and_waits_for_their_threads(server):
    """A browser's keep-alive connection must not leave a request thread running into the
    interpreter's shutdown (a daemon thread stopped there, inside torch, aborts the process)."""
    srv = start_in_thread(server.explorer)
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10)
    conn.request("POST", "/api/runs/0/decode", body=json.dumps({"z": [0] * 8}),
                 headers={"Content-Type": "application/json"})
    assert conn.getresponse().read()  # answered; the connection stays open, its thread waiting
    assert srv.open_connections() == 1
    started = time.monotonic()
    srv.shutdown()
    srv.server_close()
    assert srv.open_connections() == 0
    assert not [t for t in threading.enumerate() if "process_request_thread" in t.name]
    assert time.monotonic() - started < 3  # not the 10-second idle timeout
    conn.close()


def test_the_page_files_are_package_data():
    """An installed package serves the page only if pyproject.toml ships every static file."""
    import fnmatch
    import tomllib

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["vaelab.serve"]
    static = ROOT / "vaelab" / "serve" / "static"
    files = sorted(p.name for p in static.iterdir())
    assert files == ["app.js", "index.html", "style.css"]
    assert all(any(fnmatch.fnmatch(f"static/{name}", pat) for pat in patterns) for name in files)


def _json_values():
    from hypothesis import strategies as st

    leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5)
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=10) | st.dictionaries(
        st.sampled_from(["z", "y", "x"]) | st.text(max_size=3), inner, max_size=3), max_leaves=20)


def test_any_json_body_gets_an_answer_never_a_500(server):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)

    @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(body=_json_values(), run=st.sampled_from(["0", "1"]), what=st.sampled_from(["decode", "classes"]))
    def check(body, run, what):
        conn.request("POST", f"/api/runs/{run}/{what}", body=json.dumps(body),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        answer = json.loads(r.read())
        assert r.status in (200, 400), (r.status, answer)
        assert r.status == 200 or answer["error"]
        if r.getheader("Connection") == "close":
            conn.close()

    check()
    conn.close()
