"""Local runs clean up after themselves: the temporary server dies with its process, and a killed run ends Crashed.

The real parts: each run is a separate Python process with no PREFECT_API_URL and its own PREFECT_HOME, so that
Prefect starts its temporary server (and SQLite database) there, as `python -m flows.<name>` does by hand. (This
test process itself runs under the session's `prefect_test_harness`.)
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
from prefect import flow, runtime
from prefect.server.api.server import SubprocessASGIServer

from cicloml.processes import ProcessRecord
from flows.local import PROCESS_TAG, gone_process, process_tag, run_locally
from flows.temporary_server import ServerDyingWithParent, start_temporary_server

ROOT = Path(__file__).resolve().parents[2]
STARTUP_S = 120.0  # a process importing Prefect and a temporary server migrating a new database, on two busy cores
GONE_S = 15.0

SCRIPT = """
import json, sys, time
from pathlib import Path

from prefect import flow, runtime
from prefect.client.orchestration import get_client

from cicloml.processes import ProcessRecord
from flows.local import run_locally


@flow
def nap(seconds: float, started: str) -> None:
    Path(started).write_text(str(runtime.flow_run.id))
    time.sleep(seconds)


if __name__ == "__main__":
    run_locally(nap, float(sys.argv[1]), sys.argv[2])
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
    print(json.dumps({str(run.id): [run.state.type.value, run.state.message] for run in runs}))
"""


def test_the_temporary_server_is_started_as_prefect_starts_it(monkeypatch):
    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda **kwargs: started.append(kwargs))
    SubprocessASGIServer._run_uvicorn_command(SimpleNamespace(port=8123))
    ServerDyingWithParent._run_uvicorn_command(SimpleNamespace(port=8123))

    prefects, ours = started
    assert callable(ours.pop("preexec_fn"))
    app = prefects["args"].index("prefect.server.api.server:create_app")
    assert ours["args"][app] == "flows.temporary_server:create_app"  # Prefect's app behind RetryWhileBusy
    ours["args"][app] = prefects["args"][app]
    assert ours == prefects


def test_with_an_api_url_configured_nothing_changes():
    @flow
    def tagged() -> list[str]:
        return sorted(runtime.flow_run.tags)

    assert start_temporary_server() is None  # the session's prefect_test_harness sets PREFECT_API_URL
    assert run_locally(tagged) == []


def test_a_run_names_its_process_which_counts_as_gone_only_once_it_is():
    assert gone_process([process_tag()]) is None
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    tag = process_tag(ProcessRecord.of(psutil.Process(child.pid)))
    child.wait()
    assert gone_process(["other", tag]).pid == child.pid
    assert gone_process([tag.replace(f"{PROCESS_TAG}=", f"{PROCESS_TAG}=elsewhere-")]) is None  # another host
    assert gone_process(["untagged"]) is None


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for(condition, timeout: float, what: str, logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s; its log:\n{logs.read_text()[-4000:]}")
        time.sleep(0.2)


@pytest.mark.slow
def test_a_killed_local_run_leaves_no_server_and_ends_crashed_on_the_next_start(tmp_path):
    script = tmp_path / "nap.py"
    script.write_text(SCRIPT)
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect"), "PYTHONPATH": str(ROOT)}
    started, log = tmp_path / "started", tmp_path / "first.log"

    with log.open("w") as out:
        first = subprocess.Popen(
            [sys.executable, str(script), "600", str(started)], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    try:
        wait_for(started.exists, STARTUP_S, "the first flow run was not RUNNING", log)
        tree = [psutil.Process(first.pid), *psutil.Process(first.pid).children(recursive=True)]
        assert any("uvicorn" in member.cmdline() for member in tree[1:]), "no temporary server below the run"
    finally:
        first.kill()
        first.wait()
    killed_at = time.monotonic()
    wait_for(lambda: not any(alive(member) for member in tree), GONE_S, "the killed run's processes were left", log)
    gone_after = time.monotonic() - killed_at

    second = subprocess.run(
        [sys.executable, str(script), "0", str(tmp_path / "second")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=STARTUP_S,
    )
    assert second.returncode == 0, second.stderr[-4000:]
    states = json.loads(second.stdout.strip().splitlines()[-1])

    kind, message = states[started.read_text()]
    assert kind == "CRASHED"
    assert f"The process that ran it is gone (PID {first.pid} " in message
    assert states[(tmp_path / "second").read_text()][0] == "COMPLETED"
    print(f"tree gone {gone_after:.1f} s after kill -9")
