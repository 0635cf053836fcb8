"""`cicloml serve`: a new champion takes over the traffic with zero failed requests, and the old bento stops."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import httpx
import pytest

from cicloml.registry import ModelRegistry
from tests.conftest import ROOT, ciclo_environment, free_port
from tests.service.conftest import serving_environment
from tests.service.state import build_served_state

pytestmark = pytest.mark.slow

END = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
CLIENTS = 4
SWITCH_SECONDS = 360  # build the new bento (~20 s) and start it (~30 s) on two cores busy with the traffic


class SteadyTraffic:
    """CLIENTS threads, each posting /predict back to back and recording what came back, in order."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[list[str]] = [[] for _ in range(CLIENTS)]
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(index,)) for index in range(CLIENTS)]

    def __enter__(self) -> "SteadyTraffic":
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
                    self.failures.append(f"client {index}: {type(error).__name__}: {error}")
                    continue
                if response.status_code != 200:
                    self.failures.append(f"client {index}: HTTP {response.status_code}: {response.text[:200]}")
                    continue
                self.answers[index].append(response.json()[0]["model_tag"])

    def served(self, tag: str) -> int:
        """Answers from `tag` in the last 10 of every client."""
        return sum(answers[-10:].count(tag) for answers in self.answers)


def wait_for(condition, seconds: float, what: str, log_path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    pytest.fail(f"{what} after {seconds} s; log:\n" + "\n".join(log_path.read_text().splitlines()[-40:]))


def answers_with(url: str, tag: str) -> bool:
    try:
        response = httpx.post(f"{url}/predict", json={"entity_ids": [1000]}, timeout=5)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json()[0]["model_tag"] == tag


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_new_champion_takes_the_traffic_with_no_failed_request(tmp_path_factory) -> None:
    state_dir = tmp_path_factory.mktemp("switch")
    with ciclo_environment(state_dir) as settings:
        first = build_served_state(settings, END, customers=200)
        registry = ModelRegistry(settings, "churn")
        model = registry.load(first)
        second = registry.register(model.pipeline, model.lineage, model.reference_profile(), {"gate": "passed"})
    state_file = state_dir / "serve" / "serving.json"
    log_path = state_dir / "cicloml-serve.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "cicloml", "serve", "--port", str(port), "--poll-seconds", "2"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=serving_environment(state_dir),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: answers_with(url, first), SWITCH_SECONDS, f"{first} was not served", log_path)
        first_backend = json.loads(state_file.read_text())
        assert first_backend["model_tag"] == first and first_backend["url"] == url

        with SteadyTraffic(url) as traffic:
            time.sleep(1)
            with ciclo_environment(state_dir) as settings:
                ModelRegistry(settings, "churn").promote(second)
            process.send_signal(signal.SIGHUP)  # check the champion now rather than at the next poll
            wait_for(lambda: traffic.served(second) == 10 * CLIENTS, SWITCH_SECONDS, "no switch", log_path)

        assert traffic.failures == []
        for answers in traffic.answers:
            # Each client saw the old model, then the new one, and never the old one again.
            switch = answers.index(second)
            assert switch > 0 and set(answers[:switch]) == {first} and set(answers[switch:]) == {second}
        second_backend = json.loads(state_file.read_text())
        assert (second_backend["model_tag"], second_backend["bento_tag"]) == (second, second)
        wait_for(lambda: not alive(first_backend["backend_pid"]), 60, "the old bento still runs", log_path)
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert process.returncode == 0, log_path.read_text()[-3000:]
    assert not state_file.exists()
    assert not alive(second_backend["backend_pid"])
