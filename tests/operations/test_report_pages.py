"""The pages cicloml writes for people, opened from disk in a real browser: headless Chromium loads the drift report
of a seeded drifted window with no console errors and shows the drifted feature's picture first; a screenshot of it
is kept under test-artifacts/screenshots/."""

from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from cicloml.drift_report import write_html_report
from tests.operations.conftest import save_screenshot
from tests.unit.test_drift_report import DRIFTED, FEATURES, seeded_report


def test_the_drift_report_opens_from_disk_and_shows_the_drifted_feature_first(
    tmp_path: Path, browser: WebDriver
) -> None:
    report = seeded_report()
    browser.get(write_html_report(report, tmp_path).as_uri())
    screenshot = save_screenshot(browser, "drift-report.png")

    # Anything the page failed to load or parse (a missing resource, a script error) is logged as SEVERE.
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
    sections = browser.find_elements(By.CSS_SELECTOR, "details.feature")
    assert [section.get_attribute("data-column") for section in sections][0] == DRIFTED
    assert len(sections) == len(FEATURES)
    first = sections[0]
    histogram = first.find_element(By.CSS_SELECTOR, "svg.plot")
    assert first.get_attribute("open") is not None
    assert histogram.is_displayed() and histogram.size["height"] > 100, screenshot
    assert histogram.location["y"] < browser.get_window_size()["height"], f"below the first screen: {screenshot}"
    # The legend says which picture is which, and the bars are drawn (the reference's, one per bin).
    assert "training reference" in histogram.text and "this window" in histogram.text
    assert len(histogram.find_elements(By.CSS_SELECTOR, "g[fill-opacity] rect")) > 10
    # A folded feature's picture is there but hidden until its summary is clicked.
    folded = sections[-1]
    assert folded.get_attribute("open") is None
    assert not folded.find_element(By.CSS_SELECTOR, "svg.plot").is_displayed()
    folded.find_element(By.TAG_NAME, "summary").click()
    assert folded.find_element(By.CSS_SELECTOR, "svg.plot").is_displayed()
