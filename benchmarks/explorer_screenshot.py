"""The screenshot in the docs: the explorer on a trained run, two map points picked, the
interpolation half-way and a test image uploaded, taken in headless Chromium.

    python benchmarks/explorer_screenshot.py --run runs/gallery/vae2d -o docs/images/explorer.png
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

from PIL import Image

from common import REPO, add_common
from serve_latency import start_server

sys.path.insert(0, str(REPO / "tests"))


def first_of(labels: list, label: int) -> int:
    return labels.index(label)


def shoot(port: int, upload: Path, out: Path) -> None:
    from browser import start_browser
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait

    driver = start_browser()
    try:
        driver.set_window_size(1280, 1000)
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.execute_script("return window.vaelabExplorer && window.vaelabExplorer.ready"))
        labels = driver.execute_script("return window.vaelabExplorer.state.map.labels")
        canvas = driver.find_element("id", "map")
        for i, label in enumerate((0, 7)):
            x, y = driver.execute_script(f"return window.vaelabExplorer.pointPosition({first_of(labels, label)})")
            ActionChains(driver).move_to_element_with_offset(canvas, x - canvas.size["width"] / 2,
                                                             y - canvas.size["height"] / 2).click().perform()
            wait.until(lambda d, i=i: d.execute_script(f"return window.vaelabExplorer.state.{'ab'[i]} !== null"))
        driver.execute_script("const s = document.getElementById('interp'); s.value = 0.5;"
                              "s.dispatchEvent(new Event('input'))")
        driver.find_element("id", "upload").send_keys(str(upload))
        wait.until(lambda d: d.execute_script("return document.querySelectorAll('#neighbours img').length > 0"))
        driver.execute_script("return new Promise(r => setTimeout(r, 500))")
        png = driver.get_screenshot_as_png()
    finally:
        driver.quit()
    img = Image.open(io.BytesIO(png)).convert("RGB")
    img = img.crop((0, 0, img.width, min(img.height, 800))).quantize(colors=256, dither=Image.Dither.NONE)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a trained run on MNIST (a 2-D one shows its codes directly)")
    parser.add_argument("-o", "--output", default=str(REPO / "docs" / "images" / "explorer.png"))
    add_common(parser)
    args = parser.parse_args()
    import vaelab

    test = vaelab.load_dataset("mnist", "test", data_dir=args.data_dir, download=False)
    with tempfile.TemporaryDirectory() as tmp:
        upload = Path(tmp) / "digit.png"
        Image.fromarray((test.x[1, 0].numpy() * 255).round().astype("uint8")).save(upload)
        proc, port, _ = start_server(Path(args.run), args.data_dir)
        try:
            shoot(port, upload, Path(args.output))
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
