"""How fast the explorer answers: decode latency and page-load time, through real HTTP.

Starts ``vaelab serve`` as a subprocess on a free port for a 784-400-20 VAE (trained here
for ``--epochs`` on MNIST unless ``--run`` is given), then, as a client in this process:

- page load: a fresh connection fetches what the page fetches before it is usable (the
  page, its script and style, the run list, the map, the first decode); with ``--browser``
  also the time a headless Chromium takes from navigation to a drawn map and decoded image;
- decode: ``--requests`` POST /decode of random codes z ~ N(0, I) on one keep-alive
  connection (as the page's sliders send them); p50 / p95 / max in ms.

Goals (issue 14): p95 ≤ 50 ms, page load ≤ 2 s.

    python benchmarks/serve_latency.py --run runs/gallery/vae20 --browser
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import REPO, add_common


def train_run(out: Path, epochs: int, data_dir) -> Path:
    import vaelab

    vaelab.train("vae", "mnist", out, model_config={"hidden": [400], "latent_dim": 20},
                 config={"epochs": epochs, "threads": 1, "batch_size": 100}, data_dir=data_dir, progress=False)
    return out


def start_server(run: Path, data_dir) -> tuple[subprocess.Popen, int, float]:
    """The server process, its port and the seconds from launch to its 'serving' line."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if data_dir:
        env["VAELAB_DATA_DIR"] = str(data_dir)
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "vaelab", "serve", str(run), "--port", "0", "--threads", "1"],
                            stdout=subprocess.PIPE, env=env, text=True)
    line = proc.stdout.readline()
    if not line.startswith("serving"):
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, int(line.split("127.0.0.1:")[1].split("/")[0]), time.perf_counter() - t


def get(conn, method: str, path: str, body: bytes | None = None) -> bytes:
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit(f"{method} {path}: {r.status} {data[:200]!r}")
    return data


def page_load_s(port: int, latent_dim: int) -> float:
    """A fresh connection fetching, in the page's order, everything it needs before it is usable."""
    t = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for path in ("/", "/static/style.css", "/static/app.js", "/api/runs", "/api/runs/0/map"):
        get(conn, "GET", path)
    get(conn, "POST", "/api/runs/0/decode", json.dumps({"z": [0.0] * latent_dim}).encode())
    conn.close()
    return time.perf_counter() - t


def browser_load_s(port: int) -> float | None:
    """Navigation to a drawn map and a decoded image in headless Chromium; None without one."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from browser import start_browser
        from selenium.webdriver.support.ui import WebDriverWait

        driver = start_browser()
    except BaseException as exc:  # pytest.skip raises outside pytest too
        print(f"note: no browser timing ({type(exc).__name__}: {str(exc)[:120]})")
        return None
    try:
        t = time.perf_counter()
        driver.get(f"http://127.0.0.1:{port}/")
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "return window.vaelabExplorer && window.vaelabExplorer.ready && "
            "document.getElementById('decoded').src.startsWith('data:image/png')"))
        return time.perf_counter() - t
    finally:
        driver.quit()


def decode_latencies_ms(port: int, latent_dim: int, n: int, seed: int = 0) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    bodies = [json.dumps({"z": torch.randn(latent_dim, generator=g).tolist()}).encode() for _ in range(n + 10)]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    for i, body in enumerate(bodies):
        t = time.perf_counter()
        get(conn, "POST", "/api/runs/0/decode", body)
        if i >= 10:  # the first few warm up the connection and the allocator
            times.append((time.perf_counter() - t) * 1000)
    conn.close()
    return times


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="run directory (default: train a 784-400-20 VAE here)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the VAE trained without --run (default: 1)")
    parser.add_argument("--requests", type=int, default=300, help="decode requests timed (default: 300)")
    parser.add_argument("--browser", action="store_true", help="also time the page load in headless Chromium")
    add_common(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else train_run(Path(tmp) / "vae", args.epochs, args.data_dir)
        latent_dim = json.loads((run / "config.json").read_text())["config"]["latent_dim"]
        proc, port, startup = start_server(run, args.data_dir)
        try:
            load = page_load_s(port, latent_dim)
            browser = browser_load_s(port) if args.browser else None
            ms = decode_latencies_ms(port, latent_dim, args.requests)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    result = {"run": str(args.run or f"784-400-20 VAE, {args.epochs} epoch(s)"), "latent_dim": latent_dim,
              "startup_s": round(startup, 2), "page_load_s": round(load, 3),
              "browser_load_s": None if browser is None else round(browser, 3), "decode_requests": len(ms),
              "decode_p50_ms": round(percentile(ms, 50), 2), "decode_p95_ms": round(percentile(ms, 95), 2),
              "decode_max_ms": round(max(ms), 2), "cpu_count": os.cpu_count()}
    print(json.dumps(result, indent=1))
    print(f"decode p95 {result['decode_p95_ms']} ms (goal <= 50), page load {result['page_load_s']} s (goal <= 2)")


if __name__ == "__main__":
    main()
