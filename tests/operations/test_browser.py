"""A real browser on the running system: headless Chromium opens the Prefect UI's deployments page (a real server
with prefect.yaml deployed) and the served bento's OpenAPI page, waits until each shows everything the API says is
there, and saves a screenshot of each under test-artifacts/screenshots/."""

from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
import yaml
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from cicloml.stack import project_work_pools
from tests.conftest import ROOT, ciclo_environment
from tests.operations.conftest import save_screenshot
from tests.prefect_server import PrefectServer, local_prefect_server
from tests.service.conftest import bento_server, serving_environment
from tests.service.state import build_served_state

pytestmark = pytest.mark.slow

END = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
PAGE_SECONDS = 90  # upper bound on a page rendering, never a measured duration: the servers share 2 busy cores


def test_prefect_ui_shows_deployments_and_bento_docs_show_endpoints(tmp_path: Path, browser: WebDriver) -> None:
    with (
        local_prefect_server(tmp_path / "prefect", ui=True) as server,  # starts in the background
        ciclo_environment(tmp_path / "state") as settings,
        ThreadPoolExecutor(max_workers=1) as background,
    ):
        # Deploying (subprocesses, most of a minute) overlaps building and serving the bento.
        deployed = background.submit(deploy_project, server)
        build_served_state(settings, END, customers=200)
        with bento_server(serving_environment(settings.state_dir), tmp_path / "serve.log") as base_url:
            deployed.result()

            # Each deployment's row shows its name over its flow's name.
            rows = deployment_rows(server)
            browser.get(f"{server.api_url.removesuffix('/api')}/deployments")
            missing = wait_until_shown(browser, rows)
            screenshot = save_screenshot(browser, "prefect-deployments.png")
            assert not missing, f"not on the deployments page ({screenshot}): {missing}\n{page_text(browser)}"

            # Swagger UI, served at the bento's root, lists each operation as its method over its path.
            paths = httpx.get(f"{base_url}/docs.json", timeout=30).raise_for_status().json()["paths"]
            operations = [f"{method.upper()}\n{path}" for path, methods in paths.items() for method in methods]
            browser.get(f"{base_url}/")
            missing = wait_until_shown(browser, operations)
            screenshot = save_screenshot(browser, "bento-openapi.png")
            assert "POST\n/predict" in operations  # the service's own spec, or the page check below proves nothing
            assert not missing, f"not on the OpenAPI page ({screenshot}): {missing}\n{page_text(browser)}"


def deploy_project(server: PrefectServer) -> None:
    for pool in project_work_pools(ROOT):
        server.create_process_pool(pool)
    server.deploy()


def deployment_rows(server: PrefectServer) -> list[str]:
    """'deployment\\nflow' for each deployment on the server, after checking they are prefect.yaml's."""
    with server.client() as client:
        deployments = client.read_deployments()
        flow_names = {flow.id: flow.name for flow in client.read_flows()}
    declared = [deployment["name"] for deployment in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]]
    assert sorted(deployment.name for deployment in deployments) == sorted(declared)
    return [f"{deployment.name}\n{flow_names[deployment.flow_id]}" for deployment in deployments]


def wait_until_shown(driver: WebDriver, blocks: list[str]) -> list[str]:
    """Wait until each block of whole lines is in the page's visible text; return those still missing at the end."""

    def missing() -> list[str]:
        text = f"\n{page_text(driver)}\n"
        return [block for block in blocks if f"\n{block}\n" not in text]

    with suppress(TimeoutException):
        WebDriverWait(driver, PAGE_SECONDS, poll_frequency=0.5).until(lambda _: not missing())
    return missing()


def page_text(driver: WebDriver) -> str:
    """The visible text, as a reader sees it (read in one call: the page may be re-rendering)."""
    return driver.execute_script("return document.body ? document.body.innerText : ''")
