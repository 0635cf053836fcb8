"""The temporary server answers a request its database was too busy for by running it again, not with a 503."""

import asyncio
from typing import Any

import httpx

from flows.temporary_server import RetryWhileBusy


class BusyAtFirst:
    """An ASGI app answering 503 (as Prefect's server does when its SQLite database is locked) `busy` times, then
    200 with the request body it read."""

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.calls = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.calls += 1
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, answer = (503, b'{"exception_message": "Service Unavailable"}') if self.busy else (200, body)
        self.busy = max(0, self.busy - 1)
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": answer})


def post(app: Any, body: bytes) -> httpx.Response:
    async def run() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://prefect") as client:
            return await client.post("/api/flow_runs/", content=body)

    return asyncio.run(run())


def test_a_request_answered_503_is_run_again_with_its_body() -> None:
    app = BusyAtFirst(busy=3)
    response = post(RetryWhileBusy(app, first_pause_s=0.001), b'{"flow_id": "f"}')
    assert (response.status_code, response.content) == (200, b'{"flow_id": "f"}')
    assert app.calls == 4


def test_past_its_budget_the_503_goes_to_the_client() -> None:
    """Which then backs off on its own, as it did without the retries."""
    app = BusyAtFirst(busy=1000)
    response = post(RetryWhileBusy(app, first_pause_s=0.001, budget_s=0.05), b"{}")
    assert response.status_code == 503
    assert response.json() == {"exception_message": "Service Unavailable"}
    assert 2 <= app.calls < 10  # pauses of 1, 2, 4, 8, 16 ms fit in 50 ms, 32 more would not


def test_other_answers_pass_straight_through() -> None:
    app = BusyAtFirst(busy=0)
    response = post(RetryWhileBusy(app), b"payload")
    assert (response.status_code, response.content, app.calls) == (200, b"payload", 1)
