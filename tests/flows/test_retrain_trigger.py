"""retrain/on-drift against a real Prefect server and process worker: several retraining requests for one model and
window (the real request code, from senders with and without a shared ledger) start exactly one run, which retrains
once and completes; a request for another window starts another run."""

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.events.filters import EventFilter, EventNameFilter
from prefect.events.schemas.events import ReceivedEvent

from cicloml.registry import ModelRegistry
from cicloml.stack import project_work_pools
from flows.retraining import RETRAIN_EVENT, Check, request_retraining
from tests.conftest import ROOT, ciclo_environment
from tests.prefect_server import PrefectServer, local_prefect_server
from tests.service.state import MODEL_SPEC, build_served_state
from tests.unit.test_alerts import Receiver

pytestmark = pytest.mark.slow

END = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
WINDOW, NEXT_WINDOW = END, END + timedelta(hours=1)
DEPLOYMENT = "retrain/on-drift"
WAIT_SECONDS = 420  # upper bound, never a measured duration: a run imports the whole stack on 2 busy cores


def test_retraining_requests_for_one_window_start_one_run(tmp_path: Path) -> None:
    with (
        Receiver([]) as slack,
        local_prefect_server(tmp_path / "prefect") as server,  # starts in the background while the state is built
        ciclo_environment(
            tmp_path / "state", spec_path=str(quick_spec(tmp_path)), slack_webhook_url=slack.url.get_secret_value()
        ) as settings,
    ):
        [pool] = project_work_pools(ROOT)
        # Flow runs find the test's state through the worker's environment, which they inherit.
        worker_env = {
            "CICLO_STATE_DIR": str(settings.state_dir),
            "CICLO_SPEC_PATH": str(settings.spec_path),
            "CICLO_SLACK_WEBHOOK_URL": slack.url.get_secret_value(),
        }
        with ThreadPoolExecutor(max_workers=1) as background:
            # Deploying (subprocesses, half a minute) overlaps building the champion here.
            deployed = background.submit(deploy_with_pool, server, pool)
            champion = build_served_state(settings, END)
            deployed.result()
        registry = ModelRegistry(settings, "churn")
        with server.worker(pool, worker_env):
            # The drift check asks, then asks again (a rerun): its ledger lets one event out.
            assert request(server, champion, WINDOW, "drift", "drift-check") == "requested"
            assert request(server, champion, WINDOW, "drift", "drift-check") == "already_requested"
            # Checks on hosts with state folders of their own share no ledger: two more events for the window.
            for sender, check in (("quality-host", "quality"), ("drift-host", "drift")):
                with ciclo_environment(tmp_path / sender, spec_path=str(settings.spec_path)):
                    assert request(server, champion, WINDOW, check, sender) == "requested"
            server.wait_for("the 3 events stored", lambda: len(stored_events(server)) >= 3, WAIT_SECONDS)
            [run] = server.wait_for("a finished retrain run", lambda: finished_runs(server), WAIT_SECONDS)

        # The three events reached the server before the run even started (the trigger acts on each within
        # milliseconds, the run takes tens of seconds): it started one run for them.
        assert len(stored_events(server)) == 3 and runs(server) == [run]
        assert run.state_name == "Completed" and f" of {WINDOW:%H:%M} " in reason(run), (run.state, server.logs())
        # One retraining: one new model version (the champion records no training settings, so other settings may
        # train on its data; the quick spec's gate rejects it), one message to Slack. The event's model, window and
        # check reached the run's parameters (a retraining with nothing to learn from waits for that window's labels:
        # tests/flows/test_retrain_pending.py).
        assert [version.tag for version in registry.versions()][0] == champion and len(registry.versions()) == 2
        assert [body["text"].split(":")[0] for body in slack.bodies] == ["Retrained churn"]
        params = run.parameters["params"]
        assert (params["model_tag"], params["check"], params["since"]) == (champion, "drift", "")  # no onset: drift
        assert datetime.fromisoformat(params["window_start"]) == WINDOW

        # Another window is another retraining: its event starts a second run (left scheduled: the worker is gone).
        assert request(server, champion, NEXT_WINDOW, "drift", "drift-check") == "requested"
        [scheduled] = server.wait_for("a second retrain run", lambda: runs(server)[1:], WAIT_SECONDS)
        assert scheduled.state_name == "Scheduled" and f" of {NEXT_WINDOW:%H:%M} " in reason(scheduled)


def deploy_with_pool(server: PrefectServer, pool: str) -> None:
    server.create_process_pool(pool)
    server.deploy(DEPLOYMENT)


def quick_spec(tmp_path: Path) -> Path:
    """The project spec with the service tests' small model, and a gate no challenger passes: the retraining
    trains and registers, and skips building a bento (40 s here; the demo's test builds one)."""
    spec = yaml.safe_load((ROOT / "cicloml.yaml").read_text())
    spec["model"]["params"] = MODEL_SPEC.params
    spec["gates"]["min_roc_auc"] = 1.0
    spec["features"]["repo"] = str(ROOT / "features")  # a relative repo is relative to the spec's folder
    path = tmp_path / "cicloml.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def request(server: PrefectServer, model_tag: str, window: datetime, check: Check, sender: str) -> str:
    """A retraining request through the real code path, its event delivered to `server` before returning."""
    reason = f"{check} of {window:%H:%M} from {sender}"
    with server.connected():
        return request_retraining(model_tag, window, reason, check=check, in_process=False)


def stored_events(server: PrefectServer) -> list[ReceivedEvent]:
    with server.client() as client:
        # Prefect 3.8.8's client asks for 100 events by default; its server answers 422 above 50.
        return client.read_events(EventFilter(event=EventNameFilter(name=[RETRAIN_EVENT])), limit=50).events


def runs(server: PrefectServer) -> list[FlowRun]:
    """The deployment's runs, oldest first."""
    with server.client() as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
        found = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
    return sorted(found, key=lambda run: run.created)


def finished_runs(server: PrefectServer) -> list[FlowRun]:
    """The deployment's runs in a final state (any: the caller asserts which)."""
    return [run for run in runs(server) if run.state is not None and run.state.is_final()]


def reason(run: FlowRun) -> str:
    return run.parameters["params"]["reason"]
