"""The explorer page in a real headless Chromium: it loads cleanly with every picture filled,
sliders, map clicks, interpolation, the class picker and uploads change what it shows, and
every class tile of a conditional model is in view at common window widths."""
from __future__ import annotations

import base64
import io
import json
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

import vaelab
from browser import broken_images, console_errors
from conftest import FAST, TINY
from vaelab.serve import Explorer, build_view, start_in_thread

WAIT_S = 10


@pytest.fixture(scope="module")
def cvae(synthetic_small, tmp_path_factory):
    """A small label-conditional VAE trained for one short epoch."""
    out = tmp_path_factory.mktemp("explorer-cvae") / "run"
    result = vaelab.train("cvae", synthetic_small.train.subset(slice(0, 300)), out,
                          model_config={**TINY, "latent_dim": 3}, config={**FAST, "epochs": 1, "val_size": 0},
                          progress=False)
    return result.model.eval()


@pytest.fixture(scope="module")
def site(synthetic_vae, cvae, synthetic_small):
    views = [build_view("vae", synthetic_vae, synthetic_small.test, synthetic_small.train, map_size=300, pool_size=500),
             build_view("cvae", cvae, synthetic_small.test, synthetic_small.train, map_size=100, pool_size=100)]
    srv = start_in_thread(Explorer(views))
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def page(browser, site):
    browser.get(site.url)
    _wait(browser, "window.vaelabExplorer && window.vaelabExplorer.ready && document.getElementById('decoded').src.length > 100")
    yield browser
    assert console_errors(browser) == []


def _wait(driver, condition: str):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_S).until(lambda d: d.execute_script(f"return {condition}"))


def _src(driver, id_: str) -> str:
    return driver.execute_script(f"return document.getElementById('{id_}').src")


def _changed(driver, id_: str, before: str) -> str:
    _wait(driver, f"document.getElementById('{id_}').src !== {json.dumps(before)} && "
                  f"document.getElementById('{id_}').src.startsWith('data:image/png')")
    return _src(driver, id_)


def _pixels(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def _api(site, path: str):
    with urllib.request.urlopen(site.url.rstrip("/") + path, timeout=10) as r:
        return json.loads(r.read())


def _click_point(driver, i: int) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = driver.find_element("id", "map")
    x, y = driver.execute_script(f"return window.vaelabExplorer.pointPosition({i})")
    ActionChains(driver).move_to_element_with_offset(canvas, x - canvas.size["width"] / 2,
                                                     y - canvas.size["height"] / 2).click().perform()


def test_the_page_loads_without_errors_with_a_labelled_slider_per_dimension(page):
    assert broken_images(page) == []
    labels = [e.text for e in page.find_elements("css selector", "#sliders label")]
    assert len(labels) == 8 and all(" · KL " in t for t in labels)
    kls = [float(t.rsplit(" ", 1)[1]) for t in labels]
    assert kls == sorted(kls, reverse=True)
    assert page.execute_script("return window.vaelabExplorer.state.map.points.length") == 300


def test_moving_a_slider_changes_the_decoded_image(page):
    from selenium.webdriver.common.keys import Keys

    before = _src(page, "decoded")
    page.find_element("css selector", "#sliders input").send_keys(Keys.ARROW_RIGHT * 20)
    after = _changed(page, "decoded", before)
    assert not np.array_equal(_pixels(after), _pixels(before))
    first = page.execute_script("return Number(document.querySelector('#sliders input').dataset.dim)")
    assert page.execute_script("return window.vaelabExplorer.state.z")[first] == pytest.approx(1.0)


def test_clicking_two_map_points_shows_them_and_interpolates(page, site):
    from selenium.webdriver.common.keys import Keys

    _click_point(page, 5)
    _wait(page, "window.vaelabExplorer.state.a !== null && window.vaelabExplorer.state.b === null")  # a new A
    a = page.execute_script("return window.vaelabExplorer.state.a.index")
    assert _src(page, "pick-a") == _api(site, f"/api/runs/0/points/{a}")["image"]
    _wait(page, f"document.getElementById('hover-image').src === window.vaelabExplorer.state.a.image")  # hovered on the way
    other = next(i for i in (150, 40, 250, 90) if i != a)
    _click_point(page, other)
    _wait(page, "window.vaelabExplorer.state.b !== null && !document.getElementById('interp').disabled")
    b = page.execute_script("return window.vaelabExplorer.state.b.index")
    assert _src(page, "pick-b") == _api(site, f"/api/runs/0/points/{b}")["image"]
    start = _changed(page, "interp-image", "")
    page.find_element("id", "interp").send_keys(Keys.END)
    end = _changed(page, "interp-image", start)
    assert np.array_equal(_pixels(end), _pixels(_api(site, f"/api/runs/0/points/{b}")["recon"]))


def test_an_upload_returns_its_code_and_its_neighbours(page, synthetic_small, tmp_path):
    path = tmp_path / "digit.png"
    Image.fromarray((synthetic_small.train.x[3, 0].numpy() * 255).round().astype(np.uint8)).save(path)
    page.find_element("id", "upload").send_keys(str(path))
    _wait(page, "document.getElementById('upload-code').textContent.startsWith('code: [')")
    code = page.find_element("id", "upload-code").text
    assert len(code.split(",")) == 8
    assert page.execute_script("return document.querySelectorAll('#neighbours img').length") == 8
    assert page.execute_script("return document.querySelector('#neighbours img').alt") == "training image 3"
    assert broken_images(page) == []


def test_a_conditional_model_changes_with_the_chosen_class(page):
    from selenium.webdriver.support.ui import Select

    _select_cvae(page)
    assert page.find_element("id", "class-row").is_displayed()
    before = _src(page, "decoded")
    Select(page.find_element("id", "class")).select_by_value("7")
    after = _changed(page, "decoded", before)
    assert not np.array_equal(_pixels(after), _pixels(before))
    tiles = page.execute_script("return Array.from(document.querySelectorAll('#class-grid img'))"
                                ".map(i => [i.alt, i.src])")
    assert [alt for alt, _ in tiles] == [f"class {c}" for c in range(10)]
    assert all(_pixels(src).shape == (28, 28) for _, src in tiles)  # one decoded image each
    assert np.array_equal(_pixels(tiles[7][1]), _pixels(after))  # the same code, class 7
    page.find_elements("css selector", "#class-grid img")[2].click()  # a tile chooses its class
    _wait(page, "document.getElementById('class').value === '2'")
    assert np.array_equal(_pixels(_changed(page, "decoded", after)), _pixels(tiles[2][1]))


def _select_cvae(driver) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", "run")).select_by_visible_text("cvae")
    _wait(driver, "window.vaelabExplorer.ready && window.vaelabExplorer.state.info.name === 'cvae' && "
                  "document.querySelectorAll('#class-grid img').length === 10 && "
                  "document.querySelector('#class-grid img').src.startsWith('data:image/png')")


# Each tile, scrolled into view: its centre inside the viewport and the topmost element there
# the tile itself (a panel painted over it, or a clipped box, would be found instead).
TILES_IN_VIEW = """
return Array.from(document.querySelectorAll('#class-grid img')).map((tile) => {
  tile.scrollIntoView({block: 'center', inline: 'center'});
  const r = tile.getBoundingClientRect(), x = r.left + r.width / 2, y = r.top + r.height / 2;
  const inside = r.width > 0 && x >= 0 && y >= 0 && x < window.innerWidth && y < window.innerHeight;
  const top = document.elementFromPoint(x, y);
  return [tile.alt, inside, top === tile ? 'the tile' : (top ? top.id || top.tagName : 'nothing')];
});
"""


@pytest.mark.parametrize("width", [1280, 1920])
def test_every_class_tile_of_a_conditional_model_is_in_view(page, width):
    page.set_window_size(width, 1000)
    try:
        _select_cvae(page)
        seen = page.execute_script(TILES_IN_VIEW)
        assert len(seen) == 10
        assert [s for s in seen if not (s[1] and s[2] == "the tile")] == []
    finally:
        page.set_window_size(1280, 1000)


# Every picture the page shows right after loading, each with its decoded size (a placeholder
# is the 1×1 empty frame, or no picture at all).
SHOWN_IMAGES = """
return Array.from(document.images).filter((i) => i.getClientRects().length > 0)
  .map((i) => [i.id || i.alt, i.complete ? i.naturalWidth : 0]);
"""


@pytest.mark.parametrize("run", ["vae", "cvae"])
def test_every_shown_picture_has_content_right_after_loading(browser, site, run):
    from selenium.common.exceptions import TimeoutException

    browser.get(site.url)
    _wait(browser, "window.vaelabExplorer && window.vaelabExplorer.ready")
    if run == "cvae":
        _select_cvae(browser)
    try:  # decoding a data URL takes a moment after its src is set
        _wait(browser, f"(() => {{ {SHOWN_IMAGES} }})().every(([name, w]) => w >= 28)")
    except TimeoutException:
        pass  # the assertion below names the pictures without content
    shown = browser.execute_script(SHOWN_IMAGES)
    assert {"decoded", "hover-image", "pick-a", "pick-b", "interp-image"} <= {name for name, _ in shown}
    assert [(name, w) for name, w in shown if w < 28] == []
    assert console_errors(browser) == []
