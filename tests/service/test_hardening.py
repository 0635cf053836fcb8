"""The service's traffic limits and shutdown over real HTTP, made deterministic without a slow-down hook.

A request whose body has not fully arrived is in flight: BentoML has admitted it (its concurrency slot is taken, its
timeout clock runs) and our middleware is waiting for the rest of the body. Holding requests like that (a slow
client, which is also what the limits are for) gives in-flight requests on demand, with no sleep in the service and
no timing assertion in the test: the test waits for BentoML's own in-progress gauge, then acts.
"""

import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import httpx
import pytest

from cicloml.settings import Settings
from tests.conftest import ROOT, ciclo_environment, free_port
from tests.service.conftest import BENTOML, SERVICE, STOP_SECONDS, _tail, _wait_ready, bento_server, serving_environment
from tests.service.state import build_served_state

pytestmark = pytest.mark.slow

END = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
KNOWN_IDS = [1001, 1002]
BODY = b'{"entity_ids": [1001, 1002]}'
WAIT_SECONDS = 60  # upper bound on waiting for the server to reach a state; never a measured duration
MAX_CONCURRENCY = 2
TIMEOUT_SECONDS = 8
"""Tiny limits for the test server (the service ships 256 and 10 s), set through a BentoML config file."""

LIMITS_CONFIG = f"""\
services:
  cicloml:
    traffic:
      max_concurrency: {MAX_CONCURRENCY}
      timeout: {TIMEOUT_SECONDS}
"""


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with ciclo_environment(tmp_path_factory.mktemp("hardening")) as settings:
        build_served_state(settings, END, customers=100)
        yield settings


# --- raw HTTP/1.1, so a request can be held half-sent -----------------------------------------------------------


def held_request(base_url: str, sent: int = 5) -> socket.socket:
    """POST /predict with all headers but only the first `sent` bytes of the body: in flight until finished."""
    host, port = base_url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=WAIT_SECONDS)
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    ).encode()
    connection.sendall(head + BODY[:sent])
    return connection


def read_response(connection: socket.socket) -> tuple[int, bytes]:
    response = http.client.HTTPResponse(connection)
    response.begin()
    return response.status, response.read()


def wait_in_progress(client: httpx.Client, count: int) -> None:
    """Until BentoML's in-progress gauge for /predict shows `count` (the requests are admitted and waiting)."""
    deadline = time.monotonic() + WAIT_SECONDS
    gauge = 'bentoml_service_request_in_progress{endpoint="/predict"'
    while time.monotonic() < deadline:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith(gauge) and float(line.rsplit(" ", 1)[1]) == count:
                return
        time.sleep(0.05)
    pytest.fail(f"/predict never had {count} requests in progress")


def response_counts(client: httpx.Client) -> dict[str, float]:
    """BentoML's request counter for /predict by status code."""
    counts = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('bentoml_service_request_total{endpoint="/predict"'):
            code = line.split('http_response_code="', 1)[1].split('"', 1)[0]
            counts[code] = float(line.rsplit(" ", 1)[1])
    return counts


# --- 429 from traffic.max_concurrency, 504 from traffic.timeout --------------------------------------------------


@pytest.fixture(scope="module")
def limited_url(state: Settings) -> Iterator[str]:
    config_path = state.state_dir / "limits.yaml"
    config_path.write_text(LIMITS_CONFIG)
    environment = serving_environment(state.state_dir) | {"BENTOML_CONFIG": str(config_path)}
    with bento_server(environment, state.state_dir / "serve-limited.log") as base_url:
        yield base_url


def test_past_max_concurrency_a_request_is_429_and_held_ones_time_out_with_504(limited_url: str) -> None:
    with httpx.Client(base_url=limited_url, timeout=WAIT_SECONDS) as client:
        held = [held_request(limited_url) for _ in range(MAX_CONCURRENCY)]
        try:
            wait_in_progress(client, MAX_CONCURRENCY)

            refused = client.post("/predict", json={"entity_ids": KNOWN_IDS})
            assert refused.status_code == 429
            assert refused.json() == {"error": "Too many requests"}
            # Probes bypass the limit: a full worker is busy, not unready.
            assert client.get("/readyz").status_code == 200

            # The held requests never finish their body: BentoML's timeout answers them (no 500, no hang).
            for connection in held:
                status, body = read_response(connection)
                assert status == 504
                assert b"Not able to process the request in" in body
        finally:
            for connection in held:
                connection.close()

        # The slots are free again and the worker serves normally.
        assert client.post("/predict", json={"entity_ids": KNOWN_IDS}).status_code == 200
        counts = response_counts(client)
        assert counts.get("429", 0) >= 1 and counts.get("504", 0) >= MAX_CONCURRENCY
        assert counts.get("500", 0) == 0


# --- graceful shutdown --------------------------------------------------------------------------------------------


def test_requests_in_flight_at_sigterm_complete_with_200_and_the_server_exits_cleanly(state: Settings) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = state.state_dir / "serve-shutdown.log"
    command = [str(BENTOML), "serve", SERVICE, "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=serving_environment(state.state_dir),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    held: list[socket.socket] = []
    try:
        _wait_ready(process, base_url, log_path)
        with httpx.Client(base_url=base_url, timeout=WAIT_SECONDS) as client:
            held = [held_request(base_url) for _ in range(3)]
            wait_in_progress(client, len(held))
        # An idle keep-alive connection is the signal that the worker has begun its shutdown: it closes idle
        # connections at once but lets the ones with a request in progress finish.
        idle = socket.create_connection(("127.0.0.1", port), timeout=WAIT_SECONDS)
        idle.sendall(f"GET /livez HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert read_response(idle)[0] == 200

        process.send_signal(signal.SIGTERM)
        assert idle.recv(1) == b"", "the worker did not close its idle connection after SIGTERM"

        for connection in held:
            connection.sendall(BODY[5:])
        for connection in held:
            status, body = read_response(connection)
            assert status == 200, body
            assert [row["status"] for row in httpx.Response(200, content=body).json()] == ["ok", "ok"]

        assert process.wait(timeout=STOP_SECONDS) == 0, _tail(log_path)
        assert "Traceback" not in log_path.read_text(errors="replace"), _tail(log_path)
    finally:
        for connection in held:
            connection.close()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
