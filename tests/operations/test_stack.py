"""`make up` starts the whole local stack and `make down` leaves nothing behind, with Prefect on SQLite (the
default) and on PostgreSQL (`CICLO_PREFECT_DATABASE_URL`, a cluster the test starts).

Between the two, through the real parts: every deployment in prefect.yaml exists with its schedule or trigger (read
back through Prefect's REST API), a deployment run is picked up by the process worker and completes, pausing a
deployment removes its scheduled runs and resuming brings them back, the model server answers with the champion,
and a second `make up` says it is up instead of starting twice.
"""

import asyncio
import os
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import psutil
import pytest

from cicloml.settings import Settings
from cicloml.stack import Stack, read_stack
from tests.conftest import ROOT, ciclo_environment, free_port
from tests.operations.deployments import assert_deployed_as_declared, call, declared_deployments, deployment_id
from tests.postgres import local_postgres
from tests.service.state import build_served_state

pytestmark = pytest.mark.slow

END = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
MAKE_SECONDS = 900  # upper bounds on waiting, never measured durations: 2 busy cores, a first bento build
RUN_SECONDS = 300
SCHEDULER_SECONDS = 5  # how often the stack's scheduler looks at deployments (Prefect's default is 60)
T = TypeVar("T")


@pytest.fixture(scope="module")
def served_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, str]]:
    """One state folder with a champion for both databases: the second `make up` reuses the first's bento."""
    with ciclo_environment(tmp_path_factory.mktemp("stack") / "state") as settings:
        yield settings, build_served_state(settings, END)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_make_up_serves_every_deployment_and_the_champion_and_make_down_leaves_nothing(
    database: str, served_state: tuple[Settings, str], tmp_path: Path
) -> None:
    settings, champion = served_state
    env = {
        **os.environ,
        "CICLO_STATE_DIR": str(settings.state_dir),
        "CICLO_SPEC_PATH": str(settings.spec_path),
        "CICLO_PREFECT_PORT": str(free_port()),
        "CICLO_SERVE_PORT": str(free_port()),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": str(SCHEDULER_SECONDS),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "CICLO_PROMETHEUS": "false",  # the off switch; Prometheus under make up is tests/operations/test_prometheus.py
    }
    with ExitStack() as database_server:
        if database == "postgresql":
            env["CICLO_PREFECT_DATABASE_URL"] = database_server.enter_context(local_postgres())
        try:
            output = make("up", env)
            stack = read_stack(settings)
            assert stack is not None, output
            assert [process.name for process in stack.processes] == [
                "prefect-server",
                "model-server",
                "worker-cicloml-local",
            ]
            assert stack.prefect_ui in output and stack.service in output, output
            api = stack.prefect_api

            assert_deployed_as_declared(api)
            assert deployments_stored(database, env) == len(declared_deployments())

            # A deployment run: the worker `make up` started picks it up, in this clone, and it completes.
            batch = deployment_id(api, "batch-predict/daily")
            run = call("POST", f"{api}/deployments/{batch}/create_flow_run", {})
            state = wait_for("the batch-predict run to end", lambda: final_state(api, run["id"]), RUN_SECONDS, stack)
            assert state == "COMPLETED", (state, tail(stack, "worker-cicloml-local"))
            assert list((settings.predictions_dir / "parquet").glob("as_of_date=*/*.parquet"))

            # Pausing: the scheduled runs go at once; resuming brings them back.
            hourly = deployment_id(api, "detect-drift/hourly")
            wait_for("scheduled detect-drift runs", lambda: scheduled_runs(api, hourly), RUN_SECONDS, stack)
            call("POST", f"{api}/deployments/{hourly}/pause_deployment")
            assert call("GET", f"{api}/deployments/{hourly}")["paused"] is True
            assert scheduled_runs(api, hourly) == []
            call("POST", f"{api}/deployments/{hourly}/resume_deployment")
            wait_for("scheduled runs after resuming", lambda: scheduled_runs(api, hourly), RUN_SECONDS, stack)

            # The model server answers with the champion, through `cicloml serve`'s proxy.
            answer = httpx.post(f"{stack.service}/predict", json={"entity_ids": [1001]}, timeout=30)
            assert answer.status_code == 200 and answer.json()[0]["model_tag"] == champion, answer.text

            # Up again: it says so and starts nothing.
            again = make("up", env)
            assert "already up" in again and read_stack(settings) == stack, again

            family = [member for process in stack.processes for member in with_descendants(process.pid)]
            ports = {int(env["CICLO_PREFECT_PORT"]), int(env["CICLO_SERVE_PORT"])}
            ports |= {connection.laddr.port for member in family for connection in listening(member)}
        finally:
            output = make("down", env)

    for process in stack.processes:
        assert f"stopped {process.name} (pid {process.pid})" in output, output
    assert read_stack(settings) is None
    assert [member for member in family if running(member)] == []
    assert [port for port in ports if port_in_use(port)] == []


def make(target: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["make", "-s", target], cwd=ROOT, env=env, capture_output=True, text=True, timeout=MAKE_SECONDS, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"make {target} exited with {done.returncode}:\n{output[-6000:]}"
    return output


def wait_for(what: str, check: Callable[[], T], timeout: float, stack: Stack) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1)
    pytest.fail(f"no {what} after {timeout:.0f} s\n" + "\n".join(tail(stack, p.name) for p in stack.processes))


def tail(stack: Stack, name: str, lines: int = 40) -> str:
    [process] = [process for process in stack.processes if process.name == name]
    return f"--- {name} ---\n" + "\n".join(process.log.read_text(errors="replace").splitlines()[-lines:])


def final_state(api: str, run_id: str) -> str | None:
    state: dict[str, Any] = call("GET", f"{api}/flow_runs/{run_id}")["state"]
    return state["type"] if state["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} else None


def scheduled_runs(api: str, deployment: str) -> list[dict[str, Any]]:
    query = {"deployments": {"id": {"any_": [deployment]}}, "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}
    return call("POST", f"{api}/flow_runs/filter", query)


def deployments_stored(database: str, env: dict[str, str]) -> int:
    """Deployments in the database the server was told to use, read from the database itself."""
    if database == "sqlite":
        with sqlite3.connect(Path(env["PREFECT_HOME"]) / "prefect.db") as connection:
            return connection.execute("select count(*) from deployment").fetchone()[0]

    async def count() -> int:
        connection = await asyncpg.connect(env["CICLO_PREFECT_DATABASE_URL"].replace("+asyncpg", ""))
        try:
            return await connection.fetchval("select count(*) from deployment")
        finally:
            await connection.close()

    return asyncio.run(count())


def with_descendants(pid: int) -> list[psutil.Process]:
    parent = psutil.Process(pid)
    return [parent, *parent.children(recursive=True)]


def listening(process: psutil.Process) -> list[Any]:
    try:
        return [c for c in process.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
    except psutil.Error:
        return []


def running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def port_in_use(port: int) -> bool:
    """Whether something still listens on `port` (a closed server's connections in TIME_WAIT do not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False
