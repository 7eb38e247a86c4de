"""A real headless Chromium for end-to-end tests of pages the toolkit writes or serves.

Driven by Selenium through Debian's ``chromium`` and ``chromium-driver`` (no network:
the driver is found on PATH, never downloaded). Where no browser can be started the
tests that need one skip, and pytest's ``-ra`` summary prints why.
"""
from __future__ import annotations

import os
import shutil

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def _find() -> tuple[str | None, str | None, str]:
    """(browser binary, driver binary, why not) from $VAELAB_CHROME / $VAELAB_CHROMEDRIVER or PATH."""
    browser = os.environ.get("VAELAB_CHROME") or next((shutil.which(c) for c in CANDIDATES if shutil.which(c)), None)
    driver = os.environ.get("VAELAB_CHROMEDRIVER") or shutil.which("chromedriver")
    if browser is None or driver is None:
        missing = " and ".join(n for n, v in (("chromium", browser), ("chromedriver", driver)) if v is None)
        return None, None, f"no {missing} on PATH (Debian: apt-get install -y chromium chromium-driver)"
    return browser, driver, ""


def start_browser():
    """A headless Chromium WebDriver that records the page's console messages; skips the
    calling test, with the reason, where selenium, the browser or its driver is missing."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (it is part of the test extra: pip install -e '.[test]')")
    browser, driver, why = _find()
    if browser is None:
        pytest.skip(why)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(service=Service(driver), options=options)
    except WebDriverException as exc:
        pytest.skip(f"chromium did not start: {str(exc).splitlines()[0][:200]}")


def console_errors(driver) -> list[str]:
    """The page's console messages of level SEVERE since the last call (errors, failed loads)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def broken_images(driver) -> list[str]:
    """The ``src`` (first 80 characters) of every <img> on the page that did not decode."""
    return driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.src.slice(0, 80));")
