"""prefect.yaml: every deployment's entrypoint is a flow, and its schedules and triggers are ones Prefect accepts."""

import importlib
from datetime import timedelta

import yaml
from prefect import Flow
from prefect.client.schemas.schedules import construct_schedule
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

from cicloml.spec import load_spec
from tests.conftest import ROOT


def deployments() -> list[dict]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


def test_every_entrypoint_is_a_flow_and_every_schedule_parses():
    names = set()
    for deployment in deployments():
        path, name = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert isinstance(getattr(module, name), Flow), deployment["entrypoint"]
        names.add(f"{getattr(module, name).name}/{deployment['name']}")
        for schedule in deployment.get("schedules") or []:
            construct_schedule(cron=schedule["cron"], timezone=schedule["timezone"])
    assert {"detect-drift/hourly", "check-model-quality/daily", "retrain/on-drift", "train/weekly"} <= names


def test_each_schedule_is_the_one_the_project_spec_names():
    """prefect.yaml cannot read cicloml.yaml, so the crons are written twice: this keeps them in step."""
    spec = load_spec(ROOT / "cicloml.yaml").schedules
    for deployment in deployments():
        for schedule in deployment.get("schedules") or []:
            flow_name = deployment["entrypoint"].split(":")[1].removesuffix("_features")
            assert schedule["cron"] == getattr(spec, flow_name), deployment["name"]


def test_retraining_is_triggered_by_the_drift_event_once_per_model_and_window_one_run_at_a_time():
    [retrain] = [deployment for deployment in deployments() if deployment["name"] == "on-drift"]
    [trigger] = [DeploymentEventTrigger.model_validate(trigger) for trigger in retrain["triggers"]]
    assert trigger.expect == {"cicloml.drift.detected"}
    # flows/retraining.py sends the model as the resource and the window as a related resource with this role.
    assert trigger.for_each == {"prefect.resource.id", "related:window:prefect.resource.id"}
    assert (trigger.posture, trigger.threshold) == ("Reactive", 1) and trigger.within >= timedelta(days=1)
    # The run knows which model and window asked, so a retraining with nothing new to learn from can wait for them.
    assert trigger.parameters == {
        "params": {
            "reason": "{{ event.payload.reason }}",
            "check": "{{ event.payload.check }}",
            "model_tag": "{{ event.resource.name }}",
            "window_start": "{{ event.payload.window_start }}",
            "since": "{{ event.payload.since }}",
        }
    }
    assert retrain["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
