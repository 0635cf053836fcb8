"""The live parts of the demo loop: a running `cicloml serve`, traffic sent to it over HTTP, and a local stand-in for
Slack's incoming webhook when no real one is configured.
"""

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from pydantic import SecretStr

from cicloml.bento import bentoml_environment
from cicloml.prediction_log import window_logged_rows
from cicloml.profiling import window_folder, window_profiled_rows
from cicloml.serving import free_port, serving_state_file
from cicloml.settings import Settings

STOP_SECONDS = 60


class LocalSlack:
    """An incoming-webhook stand-in on a free loopback port: keeps every message and appends it to `log_path`."""

    def __init__(self, log_path: Path) -> None:
        self.messages: list[dict[str, Any]] = []
        self.log_path = log_path
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                message = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.messages.append(message)
                with open(receiver.log_path, "a") as log:
                    log.write(json.dumps(message) + "\n")
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass  # the messages are the record; request lines are noise

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = SecretStr(f"http://127.0.0.1:{self._server.server_port}/services/local/demo")
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "LocalSlack":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class ServeProcess:
    """`cicloml serve` in a subprocess (its own process group) on a free loopback port, stopped on exit."""

    settings: Settings
    project_dir: Path
    log_path: Path
    port: int = field(default_factory=free_port)
    _process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "ServeProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "cicloml", "serve", "--port", str(self.port), "--poll-seconds", "2"]
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command,
                cwd=self.project_dir,
                env=bentoml_environment(self.settings),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._process is None:
            return
        self._process.terminate()  # the server drains and stops its bento
        try:
            self._process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=10)

    def wait_serving(self, model_tag: str, timeout_s: float) -> None:
        """Block until the server answers with `model_tag`; raise with the log's tail if it exits or takes too long."""
        assert self._process is not None, "start the server first (with ServeProcess(...) as server)"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"cicloml serve exited with {self._process.returncode}:\n{self.log_tail()}")
            if self.serving() == model_tag:
                return
            time.sleep(0.5)
        raise TimeoutError(f"cicloml serve did not serve {model_tag} within {timeout_s:.0f} s:\n{self.log_tail()}")

    def serving(self) -> str | None:
        """The model version the server routes traffic to now, from its state file."""
        try:
            return str(json.loads(serving_state_file(self.settings).read_text())["model_tag"])
        except (FileNotFoundError, KeyError, ValueError):
            return None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass(frozen=True)
class TrafficSent:
    requests: int
    failed_requests: int
    """Requests without an HTTP 200 answer, or with no answer."""
    scored: int
    """Entities that got a score."""
    model_tags: dict[str, int]
    """Scored entities per model version that answered."""


def send_traffic(url: str, entities: Sequence[Any], *, per_request: int = 10, clients: int = 4) -> TrafficSent:
    """POST every entity to `url`/predict, `per_request` a request, from `clients` threads; count what came back.

    Entities are ids (`{"entity_ids": [...]}`), or objects of join keys and request fields (`{"entities": [...]}`).
    """
    chunks = [list(entities[start : start + per_request]) for start in range(0, len(entities), per_request)]
    failed, scored, tags = 0, 0, Counter[str]()
    lock = threading.Lock()

    def client(share: list[list[Any]]) -> None:
        nonlocal failed, scored
        with httpx.Client(base_url=url, timeout=30) as session:
            for chunk in share:
                try:
                    field = "entities" if isinstance(chunk[0], dict) else "entity_ids"
                    response = session.post("/predict", json={field: chunk})
                except httpx.HTTPError:
                    response = None
                with lock:
                    if response is None or response.status_code != 200:
                        failed += 1
                        continue
                    answered = [row["model_tag"] for row in response.json() if row["status"] == "ok"]
                    scored += len(answered)
                    tags.update(answered)

    threads = [threading.Thread(target=client, args=(chunks[index::clients],)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return TrafficSent(requests=len(chunks), failed_requests=failed, scored=scored, model_tags=dict(tags))


class SteadyTraffic:
    """One client sending `/predict` requests for `entities` (ten ids a request) back to back until the block ends:
    what a model switch must serve without a failed request. `sent` counts them once the block has ended."""

    def __init__(self, url: str, entities: Sequence[Any], *, per_request: int = 10) -> None:
        self._url, self._chunk = url, list(entities[:per_request])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._counts = Counter[str]()
        self.sent = TrafficSent(requests=0, failed_requests=0, scored=0, model_tags={})

    def __enter__(self) -> "SteadyTraffic":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        requests = failed = scored = 0
        with httpx.Client(base_url=self._url, timeout=30) as session:
            while not self._stop.wait(0.05):  # a steady trickle, not a load test
                requests += 1
                try:
                    response = session.post("/predict", json={"entity_ids": self._chunk})
                except httpx.HTTPError:
                    failed += 1
                    continue
                if response.status_code != 200:
                    failed += 1
                    continue
                answered = [row["model_tag"] for row in response.json() if row["status"] == "ok"]
                scored += len(answered)
                self._counts.update(answered)
        self.sent = TrafficSent(requests=requests, failed_requests=failed, scored=scored, model_tags=dict(self._counts))


def fresh_window(window_seconds: int, needed_s: float) -> datetime:
    """The start of the traffic window to send into: the current one if `needed_s` still fit in it, else the next
    (after waiting for it), so that one batch of traffic lands in one window."""
    now = time.time()
    start = math.floor(now / window_seconds) * window_seconds
    if start + window_seconds - now < needed_s:
        start += window_seconds
        time.sleep(start - now)
    return datetime.fromtimestamp(start, timezone.utc)


def wait_for_window(
    settings: Settings, model_tag: str, window_start: datetime, timeout_s: float, *, rows: int | None = None
) -> None:
    """Block until the window has ended and the service's workers have written its traffic profile, and with `rows`
    (the entities the window scored) until every worker's records of them are written: the profiles and, when
    predictions are logged, the prediction log hold all `rows`."""
    end = window_start.timestamp() + settings.profile_window_seconds
    time.sleep(max(0.0, end - time.time()))
    folder = window_folder(settings.profiles_dir, model_tag, window_start)

    def written() -> bool:
        if rows is None:
            return any(folder.glob("*.bin"))
        logged = (
            window_logged_rows(settings.prediction_log_dir, model_tag, window_start)
            if settings.log_predictions
            else rows
        )
        return window_profiled_rows(folder) >= rows and logged >= rows

    deadline = time.monotonic() + timeout_s
    while not written():
        if time.monotonic() > deadline:
            raise TimeoutError(f"traffic records in {folder} incomplete {timeout_s:.0f} s after the window ended")
        time.sleep(0.25)
