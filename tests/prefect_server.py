"""A real Prefect server, work pool, deployments and process worker for tests, each under a temporary folder.

`prefect_test_harness` (tests/flows/conftest.py) runs an in-process server with no workers; this runs what
production runs, as subprocesses: `prefect server start` on a free loopback port with its own PREFECT_HOME and
SQLite database, `prefect deploy` from this repo's prefect.yaml, and `prefect worker start` on a process pool. So
deployments, event triggers, work pools and workers are exercised for real. Every process's log is a file in the
folder; a wait that times out shows their tails. Leaving the context stops the worker and the server and every
process they started (flow runs start in sessions of their own, so process groups alone would miss them).
"""

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import psutil
import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL, temporary_settings

from cicloml.processes import stop_tree
from tests.conftest import ROOT, free_port

PREFECT = Path(sys.executable).with_name("prefect")
STARTUP_SECONDS = 180  # upper bounds on waiting, never measured durations: 2 busy cores run migrations slowly
CLI_SECONDS = 300
STOP_SECONDS = 30
POLL_SECONDS = 0.5
WORKER_POLL_SECONDS = "2"  # Prefect's default, 10 s, would be most of a short test's wait for its run to start

T = TypeVar("T")


@dataclass
class PrefectServer:
    """A started server; `env` is what a process needs to talk to it (PREFECT_API_URL, PREFECT_HOME).

    The server starts in the background (it takes several seconds): the first call that needs it waits until it is
    healthy, so a test can prepare its own state meanwhile.
    """

    api_url: str
    work_dir: Path
    env: dict[str, str]
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    healthy: bool = False

    def cli(self, *arguments: str, timeout: float = CLI_SECONDS) -> str:
        """`prefect <arguments>` against this server from the repo root (prefect.yaml's folder); its output.

        Fails the test with the output when the command fails.
        """
        self.wait_until_healthy()
        command = [str(PREFECT), "--no-prompt", *arguments]
        done = subprocess.run(
            command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        output = done.stdout + done.stderr
        if done.returncode != 0:
            pytest.fail(f"`prefect {' '.join(arguments)}` exited with {done.returncode}:\n{_last_lines(output)}")
        return output

    def create_process_pool(self, name: str) -> None:
        self.cli("work-pool", "create", name, "--type", "process")

    def deploy(self, *names: str) -> str:
        """Deploy the named deployments (`flow/deployment`) from prefect.yaml, or all of them with no names."""
        selection = [argument for name in names for argument in ("--name", name)] or ["--all"]
        return self.cli("deploy", *selection)

    @contextmanager
    def worker(self, pool: str, env: Mapping[str, str] | None = None) -> Iterator[Path]:
        """A process worker polling `pool`, stopped (with any flow run it started) on exit; flow runs inherit its
        environment: this server's, plus `env`. Yields its log file."""
        self.wait_until_healthy()
        log_path = self.work_dir / f"worker-{pool}.log"
        command = [str(PREFECT), "worker", "start", "--pool", pool, "--type", "process"]
        worker_env = {
            **self.env,
            "PREFECT_WORKER_QUERY_SECONDS": WORKER_POLL_SECONDS,
            "CICLO_PROJECT_DIR": str(ROOT),  # prefect.yaml's pull step: flow runs start in this checkout
            **(env or {}),
        }
        process = self._start(f"worker {pool}", command, log_path, worker_env)
        try:
            yield log_path
        finally:
            _stop(process)
            self.processes.remove((f"worker {pool}", process))  # stopped on purpose: no longer watched by wait_for

    @contextmanager
    def connected(self) -> Iterator[None]:
        """Point this process's Prefect client (`emit_event`, flows, `get_client`) at this server; events emitted
        inside are delivered before it returns."""
        self.wait_until_healthy()
        # Prefect keeps one events worker per process and reads the API URL only when it starts one: a worker left
        # by an earlier test (the session's test harness server) would carry these events there instead.
        EventsWorker.drain_all()
        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            try:
                yield
            finally:
                EventsWorker.drain_all()  # events go out from a background thread

    @contextmanager
    def client(self) -> Iterator[SyncPrefectClient]:
        with self.connected(), get_client(sync_client=True) as client:
            yield client

    def wait_until_healthy(self) -> None:
        if not self.healthy:
            self.wait_for(f"a healthy server at {self.api_url}", lambda: _healthy(self.api_url), STARTUP_SECONDS)
            self.healthy = True

    def wait_for(self, what: str, check: Callable[[], T], timeout: float) -> T:
        """Poll `check` until it returns something true (a non-empty list, True); fail with the logs' tails after
        `timeout` seconds, or as soon as a process started here has exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = check()
            if result:
                return result
            for name, process in self.processes:
                if process.poll() is not None:
                    pytest.fail(f"{name} exited with {process.returncode} while waiting for {what}\n{self.logs()}")
            time.sleep(POLL_SECONDS)
        pytest.fail(f"no {what} after {timeout:.0f} s\n{self.logs()}")

    def logs(self, lines: int = 40) -> str:
        """The last lines of every log file here."""
        return "\n".join(
            f"--- {path.name} (last {lines} lines) ---\n{_last_lines(path.read_text(errors='replace'), lines)}"
            for path in sorted(self.work_dir.glob("*.log"))
        )

    def _start(self, name: str, command: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes.append((name, process))
        return process


@contextmanager
def local_prefect_server(work_dir: Path, *, scheduler: bool = False, ui: bool = False) -> Iterator[PrefectServer]:
    """`prefect server start` on a free 127.0.0.1 port with its home and database in `work_dir`; stopped (with
    any worker and flow run still alive) on exit.

    The scheduler is off by default so that prefect.yaml's schedules do not start runs in the middle of a test; so
    is the UI, which only browser tests look at.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(work_dir / "home"),  # overrides prefect.toml's home, as PREFECT_* variables do
        "PREFECT_API_URL": api_url,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{work_dir / 'prefect.db'}",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_LOGGING_LEVEL": "INFO",  # e.g. which automation each event reached, for a failed wait
        "PREFECT_SERVER_UI_ENABLED": str(ui).lower(),
        # The browser calls the API at this URL (it defaults to PREFECT_API_URL): named, so that a developer's own
        # PREFECT_UI_API_URL cannot send the UI elsewhere.
        "PREFECT_SERVER_UI_API_URL": api_url,
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": str(scheduler).lower(),
    }
    server = PrefectServer(api_url=api_url, work_dir=work_dir, env=env)
    server._start("prefect server", [str(PREFECT), "server", "start"], work_dir / "server.log", env)
    try:
        yield server
    finally:
        # Newest first: workers (normally stopped by their own context already) before the server they report to.
        for _, process in reversed(server.processes):
            _stop(process)


def _healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the process and everything it started (SIGTERM, then SIGKILL after STOP_SECONDS)."""
    if process.poll() is not None:
        return
    with suppress(psutil.NoSuchProcess):
        stop_tree(psutil.Process(process.pid), STOP_SECONDS)
    process.wait(timeout=10)


def _last_lines(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])
