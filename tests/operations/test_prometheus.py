"""Prometheus beside the model server: every rule passes its `promtool` tests (firing where it must, silent on
normal traffic), the configuration `make up` writes passes `promtool check config`, and `make up` starts a
Prometheus that scrapes `cicloml serve` (its backend through the API token, and the server's restart counter),
follows the backend to its new port when it is restarted, and is gone, with everything else, after `make down`."""

import json
import os
import shutil
import signal
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cicloml.prometheus import (
    RULES_PATH,
    RULES_TEST_PATH,
    target_groups,
    targets_file,
    write_config,
    write_targets,
)
from cicloml.stack import Stack, read_stack
from tests.conftest import ciclo_environment, free_port
from tests.operations.test_stack import listening, make, port_in_use, running, wait_for, with_descendants
from tests.service.state import build_served_state

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (make test installs it as root: apt-get install prometheus)"
)
END = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
TOKEN = "prometheus-token-" + "x" * 16
SCRAPE_SECONDS = 120  # upper bounds on waiting, never measured durations: a 15 s scrape interval, 2 busy cores
RESTART_SECONDS = 300  # a backend's restart imports the whole stack again


@needs_promtool
def test_every_rule_passes_its_promtool_tests_firing_and_silent() -> None:
    done = promtool("test", "rules", RULES_TEST_PATH.name, cwd=RULES_TEST_PATH.parent)
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr

    # Each alert has a case where it fires and one where it stays silent; each recording rule a checked value.
    rules = [rule for group in yaml.safe_load(RULES_PATH.read_text())["groups"] for rule in group["rules"]]
    tests = yaml.safe_load(RULES_TEST_PATH.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    checked = " ".join(case["expr"] for test in tests for case in test.get("promql_expr_test", []))
    for rule in rules:
        if "alert" in rule:
            outcomes = {bool(case["exp_alerts"]) for case in cases if case["alertname"] == rule["alert"]}
            assert outcomes == {True, False}, rule["alert"]
        else:
            assert rule["record"] in checked, rule["record"]


@needs_promtool
def test_the_generated_config_passes_promtool(tmp_path: Path) -> None:
    with ciclo_environment(tmp_path / "state", api_token=TOKEN) as settings:
        config_path = write_config(settings)
        write_targets(targets_file(settings), target_groups("127.0.0.1:5001", "127.0.0.1:5002", "churn:v1"))
    done = promtool("check", "config", str(config_path))
    output = done.stdout + done.stderr
    # It checks the rule files it names and the targets file too; a missing file would only warn.
    assert done.returncode == 0 and "WARNING" not in output and f"{RULES_PATH}" in output, output


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="prometheus is not installed (apt-get install prometheus)"
)
def test_make_up_starts_prometheus_scraping_the_model_server_and_make_down_leaves_nothing(tmp_path: Path) -> None:
    with ciclo_environment(tmp_path / "state") as settings:
        champion = build_served_state(settings, END, customers=100)
    env = {
        **os.environ,
        "CICLO_STATE_DIR": str(settings.state_dir),
        "CICLO_SPEC_PATH": str(settings.spec_path),
        "CICLO_PREFECT_PORT": str(free_port()),
        "CICLO_SERVE_PORT": str(free_port()),
        "CICLO_PROMETHEUS_PORT": str(free_port()),
        "CICLO_API_TOKEN": TOKEN,  # /metrics answers 401 without it: a target up proves Prometheus sends it
        "PREFECT_HOME": str(tmp_path / "prefect"),
    }
    try:
        output = make("up", env)
        stack = read_stack(settings)
        assert stack is not None and stack.prometheus is not None, output
        assert "prometheus" in [process.name for process in stack.processes] and stack.prometheus in output, output

        first = wait_for("the backend scraped", lambda: backend_target(stack), SCRAPE_SECONDS, stack)
        serving = json.loads((settings.state_dir / "serve" / "serving.json").read_text())
        assert first["scrapeUrl"] == f"{serving['backend_url']}/metrics" and first["labels"]["model_tag"] == champion
        wait_for("the restart counter scraped", lambda: restarts(stack) == 0, SCRAPE_SECONDS, stack)

        # A backend killed outright: cicloml serve starts it again on a new port, and Prometheus follows it there.
        os.kill(serving["backend_pid"], signal.SIGKILL)

        def moved() -> bool:
            target = backend_target(stack)
            return bool(target) and target["scrapeUrl"] != first["scrapeUrl"]

        wait_for("the restarted backend scraped", moved, RESTART_SECONDS, stack)
        wait_for("the restart counted", lambda: restarts(stack) == 1, SCRAPE_SECONDS, stack)

        family = [member for process in stack.processes for member in with_descendants(process.pid)]
        ports = {int(env[name]) for name in ("CICLO_PREFECT_PORT", "CICLO_SERVE_PORT", "CICLO_PROMETHEUS_PORT")}
        ports |= {connection.laddr.port for member in family for connection in listening(member)}
    finally:
        output = make("down", env)

    prometheus = next(process for process in stack.processes if process.name == "prometheus")
    assert f"stopped prometheus (pid {prometheus.pid})" in output, output
    assert read_stack(settings) is None
    assert [member for member in family if running(member)] == []
    assert [port for port in ports if port_in_use(port)] == []


def promtool(*arguments: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *arguments], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def backend_target(stack: Stack) -> dict[str, Any]:
    """The backend's target once Prometheus scrapes it and the supervisor successfully; empty until then."""
    response = httpx.get(f"{stack.prometheus}/api/v1/targets", params={"state": "active"}, timeout=10)
    targets = response.raise_for_status().json()["data"]["activeTargets"]
    health = {target["labels"]["component"]: target for target in targets if target["health"] == "up"}
    return health.get("backend", {}) if "supervisor" in health else {}


def restarts(stack: Stack) -> float | None:
    """`cicloml_serve_backend_restarts_total` as Prometheus last scraped it (None before the first scrape)."""
    response = httpx.get(
        f"{stack.prometheus}/api/v1/query", params={"query": "cicloml_serve_backend_restarts_total"}, timeout=10
    )
    result = response.raise_for_status().json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None
