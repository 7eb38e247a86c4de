"""The browser harness itself: it must see a broken image and a console error, or the
report and explorer tests that rely on it could not fail."""
from __future__ import annotations

import base64
import io

from PIL import Image

from browser import broken_images, console_errors


def _png() -> str:
    buf = io.BytesIO()
    Image.new("L", (3, 2), 128).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_the_harness_sees_good_and_broken_images_and_console_errors(browser, tmp_path):
    page = tmp_path / "page.html"
    page.write_text(f"<!doctype html><img id=good src='data:image/png;base64,{_png()}'>"
                    "<img id=bad src='data:image/png;base64,bm90IGEgcG5n'>"
                    "<script>console.error('boom')</script>")
    browser.get(page.as_uri())
    assert browser.execute_script("return document.getElementById('good').naturalWidth") == 3
    assert broken_images(browser) == ["data:image/png;base64,bm90IGEgcG5n"]
    assert any("boom" in m for m in console_errors(browser))
    assert console_errors(browser) == []  # read once, then cleared
