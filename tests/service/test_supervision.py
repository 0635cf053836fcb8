"""`cicloml serve` supervises its backend: `kill -9` of the whole bento tree, and then of its server alone (its
workers orphaned), under steady traffic: callers get 503 with Retry-After until a new backend answers (never a
502, never a refused connection), the orphans are stopped, and once `cicloml serve` stops nothing of any backend
is left and no port listens."""

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone

import httpx
import psutil
import pytest

from tests.conftest import ROOT, ciclo_environment, free_port
from tests.service.conftest import serving_environment
from tests.service.state import build_served_state

pytestmark = pytest.mark.slow

END = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
CLIENTS = 3
START_SECONDS = 360  # build the bento (~20 s) and start it (~30 s) on two busy cores
RESTORE_SECONDS = 120
"""The bound on a restart, kill to the first answer again: the backend's stop and a fresh start (15-40 s here)."""


class Traffic:
    """CLIENTS threads posting /predict back to back; every answer's status, and what was not an answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.statuses: Counter[int] = Counter()
        self.last_ok = 0.0
        self.problems: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(index,)) for index in range(CLIENTS)]

    def __enter__(self) -> "Traffic":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _client(self, index: int) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(f"{self.url}/predict", json={"entity_ids": [1000 + index]})
                except httpx.HTTPError as error:
                    self.problems.append(f"client {index}: {type(error).__name__}: {error}")
                    continue
                self.statuses[response.status_code] += 1
                if response.status_code == 200:
                    self.last_ok = time.monotonic()
                elif response.status_code == 503 and response.headers.get("retry-after"):
                    time.sleep(0.2)  # as a polite client would, a little
                else:
                    self.problems.append(f"client {index}: HTTP {response.status_code}: {response.text[:200]}")


def wait_for(condition, seconds: float, what: str, log_path) -> float:
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        if condition():
            return time.monotonic() - began
        time.sleep(0.2)
    pytest.fail(f"{what} after {seconds} s; log:\n" + "\n".join(log_path.read_text().splitlines()[-60:]))


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_a_killed_backend_is_restarted_with_503s_meanwhile_and_nothing_is_left_behind(tmp_path_factory) -> None:
    state_dir = tmp_path_factory.mktemp("supervision")
    with ciclo_environment(state_dir) as settings:
        build_served_state(settings, END, customers=200)
    state_file = state_dir / "serve" / "serving.json"
    log_path = state_dir / "cicloml-serve.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "cicloml", "serve", "--port", str(port), "--workers", "2"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=serving_environment(state_dir),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def state() -> dict:
        try:
            return json.loads(state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    seen: dict[int, psutil.Process] = {}  # every backend process, to check none is left at the end
    backend_ports: set[int] = set()

    def backend_family() -> list[psutil.Process]:
        server = psutil.Process(state()["backend_pid"])
        members = [server, *server.children(recursive=True)]
        seen.update((member.pid, member) for member in members)
        backend_ports.add(int(state()["backend_url"].rsplit(":", 1)[1]))
        return members

    try:
        wait_for(lambda: state().get("status") == "serving", START_SECONDS, "nothing was served", log_path)
        wait_for(lambda: len(backend_family()) >= 3, 60, "the bento's workers did not start", log_path)
        with Traffic(url) as traffic:
            wait_for(lambda: traffic.statuses[200] > 20, 60, "no traffic was answered", log_path)

            # 1. The whole tree killed: server and workers.
            first = backend_family()
            for member in first:
                member.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            wait_for(lambda: state().get("restarts") == 1, RESTORE_SECONDS, "no restart", log_path)
            wait_for(lambda: traffic.last_ok > killed + 1, RESTORE_SECONDS, "answers did not resume", log_path)
            restored = traffic.last_ok - killed
            assert state()["status"] == "serving" and state()["backend_pid"] != first[0].pid
            assert "its server exited with -9" in state()["last_restart"]
            assert restored < RESTORE_SECONDS

            # 2. Only the server killed: its workers, orphaned, would go on answering on the old port.
            wait_for(lambda: len(backend_family()) >= 3, 60, "the new bento's workers did not start", log_path)
            server, *workers = backend_family()
            server.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            wait_for(lambda: state().get("restarts") == 2, RESTORE_SECONDS, "no second restart", log_path)
            wait_for(lambda: traffic.last_ok > killed + 1, RESTORE_SECONDS, "answers did not resume", log_path)
            assert not any(worker.is_running() for worker in workers), "an orphaned worker was left running"
            backend_family()

        assert traffic.problems == [], traffic.problems[:5]  # only 200s and 503s with Retry-After
        assert set(traffic.statuses) <= {200, 503} and traffic.statuses[503] > 0
    finally:
        process.terminate()
        process.wait(timeout=90)
    assert process.returncode == 0, log_path.read_text()[-3000:]
    assert not state_file.exists()
    left = [pid for pid, member in seen.items() if member.is_running() and member.status() != psutil.STATUS_ZOMBIE]
    assert left == [], f"processes of a backend still run: {left}"
    assert not listening(port) and not any(listening(backend_port) for backend_port in backend_ports)
