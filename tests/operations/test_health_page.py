"""The model-health page opened from disk in a real browser: headless Chromium loads the page of a demo-like sequence
(normal windows, a drift alerted and cleared, concept drift found once labels arrive, a retraining and a promotion)
with no console errors, and shows every window, the estimates beside the realized values and the decisions; a
screenshot of it is kept under test-artifacts/screenshots/."""

from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from cicloml.atomic import atomic_path
from cicloml.health_report import render_health_page
from tests.operations.conftest import save_screenshot
from tests.unit.test_health import CHECKS, CONCEPT, GATE, HELD, demo_page, record_demo_history, window


def test_the_health_page_opens_from_disk_and_shows_every_window_and_decision(
    tmp_path: Path, browser: WebDriver
) -> None:
    record_demo_history(tmp_path, report_dir=tmp_path / "reports" / "drift")
    path = tmp_path / "reports" / "health" / "churn.html"
    with atomic_path(path) as temporary:
        temporary.write_text(render_health_page(demo_page(tmp_path), page_path=path))
    browser.get(path.as_uri())
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1400, height + 100)  # the whole page in the screenshot
    screenshot = save_screenshot(browser, "model-health.png")

    # Anything the page failed to load or parse (a missing resource, a script error) is logged as SEVERE.
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
    starts = [window(hour).isoformat() for hour, *_ in CHECKS]
    picture = browser.find_element(By.CSS_SELECTOR, "svg.health")
    assert picture.is_displayed() and picture.size["width"] > 600, screenshot
    labels = picture.find_elements(By.CSS_SELECTOR, "text.window-label")
    assert [label.get_attribute("data-window") for label in labels] == starts
    rows = browser.find_elements(By.CSS_SELECTOR, "table.windows tr.window")
    assert [row.get_attribute("data-window") for row in rows] == starts[::-1]

    # Estimated beside realized: an estimate for every window, a realized value for every labelled one, the
    # concept drift's windows degraded though their estimate held.
    assert len(picture.find_elements(By.CSS_SELECTOR, "circle.estimated")) == len(CHECKS)
    assert len(picture.find_elements(By.CSS_SELECTOR, "circle.realized")) == 9
    concept = {row.get_attribute("data-window"): row.text for row in rows}[window(6).isoformat()]
    assert "0.800 [0.780, 0.820]" in concept and "0.680 [0.650, 0.710]" in concept
    assert "degraded: probable concept drift" in concept and "quality alert" in concept

    # The decisions with their reasons, the alerts, the promotion with the gate's reasons.
    decisions = browser.find_element(By.CSS_SELECTOR, "table.decisions").text
    assert CONCEPT in decisions and decisions.count(HELD) == 2
    assert len(picture.find_elements(By.CSS_SELECTOR, "circle.decision")) == 3
    assert len(picture.find_elements(By.CSS_SELECTOR, ".alert")) == 3  # drift opened and cleared, quality
    promotions = browser.find_element(By.CSS_SELECTOR, "table.promotions").text
    assert "churn:v2 (champion)" in promotions and all(reason in promotions for reason in GATE)
    assert len(picture.find_elements(By.CSS_SELECTOR, "path.promotion")) == 1

    # A window's label opens its drift report, next to the page on disk.
    labels[2].find_element(By.XPATH, "..").click()
    assert browser.current_url.endswith("/reports/drift/2.html"), browser.current_url
    assert "window 2" in browser.find_element(By.TAG_NAME, "body").text
