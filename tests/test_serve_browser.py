"""The explorer page in a real headless Chromium: it loads cleanly, and sliders, map clicks,
interpolation, the class picker and uploads change what it shows."""
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
from vaelab.serve import Explorer, build_view, start_in_thread

WAIT_S = 10


@pytest.fixture(scope="module")
def site(trained_vae, mnist_small):
    torch.manual_seed(0)
    cvae = vaelab.build("cvae", input_shape=[1, 28, 28], hidden=[32], latent_dim=3).eval()
    views = [build_view("vae", trained_vae, mnist_small.test, mnist_small.train, map_size=300, pool_size=500),
             build_view("cvae", cvae, mnist_small.test, mnist_small.train, map_size=100, pool_size=100)]
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
    _wait(page, "window.vaelabExplorer.state.a !== null")
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


def test_an_upload_returns_its_code_and_its_neighbours(page, mnist_small, tmp_path):
    path = tmp_path / "digit.png"
    Image.fromarray((mnist_small.train.x[3, 0].numpy() * 255).round().astype(np.uint8)).save(path)
    page.find_element("id", "upload").send_keys(str(path))
    _wait(page, "document.getElementById('upload-code').textContent.startsWith('code: [')")
    code = page.find_element("id", "upload-code").text
    assert len(code.split(",")) == 8
    assert page.execute_script("return document.querySelectorAll('#neighbours img').length") == 8
    assert page.execute_script("return document.querySelector('#neighbours img').alt") == "training image 3"
    assert broken_images(page) == []


def test_a_conditional_model_changes_with_the_chosen_class(page):
    from selenium.webdriver.support.ui import Select

    Select(page.find_element("id", "run")).select_by_visible_text("cvae")
    _wait(page, "window.vaelabExplorer.ready && window.vaelabExplorer.state.info.name === 'cvae' && "
                "document.getElementById('class-grid').src.startsWith('data:image/png')")
    assert page.find_element("id", "class-row").is_displayed()
    before = _src(page, "decoded")
    Select(page.find_element("id", "class")).select_by_value("7")
    after = _changed(page, "decoded", before)
    assert not np.array_equal(_pixels(after), _pixels(before))
    assert _pixels(_src(page, "class-grid")).shape == (30, 291)  # ten classes side by side
