"""A headless Chromium driven by Selenium, to look at a gallery as a reader would: load a page
from ``file://``, wait until every image has loaded, read the console (then take screenshots
with the driver's ``save_screenshot``).

Used by the gallery's browser test and ``benchmarks/gallery_screenshots.py``. It needs the
``selenium`` package (the ``test`` extra) and Debian's ``chromium`` and ``chromedriver``
(``apt-get install chromium chromium-driver``); the driver is named explicitly, so Selenium
Manager never tries to download one.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lightning_featvis.errors import FeatvisError

CHROMIUM = os.environ.get("FEATVIS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FEATVIS_CHROMEDRIVER", "/usr/bin/chromedriver")
INSTALL = "apt-get install chromium chromium-driver (Debian), and pip install selenium"
WINDOW = (1280, 900)

# every <img>: its src, whether it finished loading, and its decoded width (0: broken)
_IMAGES = "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);"


def missing() -> str | None:
    """Why a browser cannot start here (what to install), or None if it can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return f"selenium is not installed: {INSTALL}"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() or shutil.which(path)):
            return f"{path} is missing: {INSTALL}"
    return None


@contextmanager
def chromium(window: tuple[int, int] = WINDOW) -> Iterator:
    """A headless Chromium (a Selenium ``WebDriver``) whose viewport is ``window`` (width,
    height), its console log kept; quit on exit."""
    reason = missing()
    if reason is not None:
        raise FeatvisError(f"no browser: {reason}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={window[0]},{window[1]}", "--hide-scrollbars"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        # --window-size is the outer window's: grow it by the browser's frame so that the
        # page's viewport (and so every screenshot) is exactly ``window``
        inner = driver.execute_script("return [window.innerWidth, window.innerHeight];")
        driver.set_window_size(2 * window[0] - inner[0], 2 * window[1] - inner[1])
        yield driver
    finally:
        driver.quit()


def load(driver, page: str | Path, timeout: float = 20.0) -> list[list]:
    """Open ``page`` (a file) and scroll through it until every image has loaded (lazy ones
    load as they come into view); return the images as ``[src, complete, naturalWidth]``."""
    driver.get(Path(page).resolve().as_uri())
    height = driver.execute_script("return document.documentElement.scrollHeight")
    step = driver.execute_script("return window.innerHeight")
    for top in range(0, int(height) + int(step), int(step)):
        driver.execute_script("window.scrollTo(0, arguments[0]);", top)
    driver.execute_script("window.scrollTo(0, 0);")
    deadline = time.monotonic() + timeout
    while True:
        images = driver.execute_script(_IMAGES)
        if all(complete for _, complete, _ in images) or time.monotonic() > deadline:
            return images
        time.sleep(0.05)


def console_errors(driver) -> list[str]:
    """The console's errors since the last call (failed loads, script errors)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]

