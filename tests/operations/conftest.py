"""A real browser for the operations tests: headless Chromium through the system chromedriver, and screenshots kept
under test-artifacts/screenshots/ for a person to look at after the run."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from tests.conftest import ROOT

SCREENSHOT_DIR = ROOT / "test-artifacts" / "screenshots"


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """Headless Chromium through the system chromedriver; skips, saying what to install, when either is missing."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip(
            "chromium or chromedriver is not installed "
            "(make test installs them when run as root: apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # No sandbox: Chromium's refuses to start as root and in many containers; the pages are our own, on loopback.
    for argument in ("--headless=new", "--no-sandbox", "--window-size=1400,1400"):
        options.add_argument(argument)
    # The driver named explicitly: without it Selenium Manager would try to download one.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        yield driver
    finally:
        driver.quit()


def save_screenshot(driver: WebDriver, name: str) -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / name
    assert driver.save_screenshot(str(path)), f"no screenshot written to {path}"
    print(f"screenshot: {path}")
    return path
