"""What prefect.yaml declares, read back from a running Prefect server's REST API."""

import importlib
import time
from typing import Any

import httpx
import yaml

from tests.conftest import ROOT


def declared_deployments() -> dict[str, dict[str, Any]]:
    """prefect.yaml's deployments by full name (`flow/deployment`), the flow's name read from its entrypoint."""
    declared = {}
    for deployment in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]:
        path, name = deployment["entrypoint"].split(":")
        flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)
        declared[f"{flow.name}/{deployment['name']}"] = deployment
    return declared


def call(method: str, url: str, json: Any = None) -> Any:
    """One REST call's JSON body (None when empty). A 503 is retried, as Prefect's own client does: the server
    answers it while its SQLite database is busy (the scheduler, runs and the call all write to it)."""
    for attempt in range(5):
        response = httpx.request(method, url, json=json, timeout=30)
        if response.status_code != 503:
            break
        time.sleep(1 + attempt)
    assert response.is_success, f"{method} {url}: {response.status_code} {response.text}"
    return response.json() if response.content else None


def deployment(api: str, full_name: str) -> dict[str, Any]:
    return call("GET", f"{api}/deployments/name/{full_name}")


def deployment_id(api: str, full_name: str) -> str:
    return deployment(api, full_name)["id"]


def assert_deployed_as_declared(api: str) -> None:
    """Every deployment in prefect.yaml is on the server with its pool, schedules, concurrency, pull step and
    description; every trigger is an automation that runs its deployment; and nothing else is deployed."""
    project = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    declared = declared_deployments()
    automations = call("POST", f"{api}/automations/filter", {})
    for full_name, spec in declared.items():
        found = deployment(api, full_name)
        assert found["work_pool_name"] == spec["work_pool"]["name"], full_name
        assert found["description"] == spec["description"] and set(found["tags"]) == set(spec["tags"]), full_name
        # The pull step keeps its placeholder: runs start where the worker's CICLO_PROJECT_DIR says.
        assert found["pull_steps"] == project["pull"], full_name
        crons = [(item["schedule"]["cron"], item["schedule"]["timezone"]) for item in found["schedules"]]
        assert crons == [(item["cron"], item["timezone"]) for item in spec.get("schedules") or []], full_name
        assert all(item["active"] for item in found["schedules"]) and not found["paused"], full_name
        limit = spec.get("concurrency_limit")
        if isinstance(limit, dict):
            assert found["global_concurrency_limit"]["limit"] == limit["limit"], full_name
            assert found["concurrency_options"]["collision_strategy"] == limit["collision_strategy"], full_name
        elif limit is not None:
            assert found["global_concurrency_limit"]["limit"] == limit, full_name

        runs_it = [
            automation
            for automation in automations
            if any(action.get("deployment_id") == found["id"] for action in automation["actions"])
        ]
        assert len(runs_it) == len(spec.get("triggers") or []), full_name
        for automation, trigger in zip(runs_it, spec.get("triggers") or [], strict=True):
            assert automation["enabled"] and automation["trigger"]["expect"] == trigger["expect"], full_name
            assert set(automation["trigger"]["for_each"]) == set(trigger["for_each"]), full_name
            assert automation["trigger"]["threshold"] == trigger["threshold"], full_name
            assert automation["trigger"]["within"] == trigger["within"], full_name

    on_server = call("POST", f"{api}/deployments/count", {})
    assert on_server == len(declared)
