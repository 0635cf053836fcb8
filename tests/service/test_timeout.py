"""The service's request timeout in process: BentoML's 504, and nothing of an answered request kept for the timeout."""

import asyncio
import contextvars
import gc
import weakref
from typing import Any

import httpx

from bentos.timeout import CancelledTimeout

REQUEST_STATE: contextvars.ContextVar[Any] = contextvars.ContextVar("request_state")


class State:
    """Something a request's context holds (a trace span, say)."""


def app_answering_after(seconds: float) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(seconds)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"answered"})

    return app


def call(app: Any) -> tuple[httpx.Response, bool]:
    """One request through `app`: the response, and whether the state its context held is still alive once it is
    answered (the loop still running)."""

    async def run() -> tuple[httpx.Response, bool]:
        state = State()
        REQUEST_STATE.set(state)  # a timer scheduled now copies this context
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service") as client:
            response = await client.post("/predict", content=b"{}")
        REQUEST_STATE.set(None)
        await asyncio.sleep(0)  # a loop iteration: the loop lets go of what it has finished with
        held = weakref.ref(state)
        del state
        gc.collect()
        return response, held() is not None

    return asyncio.run(run())


def test_a_request_not_answered_in_time_is_504() -> None:
    response, _ = call(CancelledTimeout(app_answering_after(1.0), timeout=0.05))
    assert response.status_code == 504
    assert response.json() == {"error": "Not able to process the request in 0.05 seconds"}


def test_an_answered_request_leaves_nothing_alive_for_the_timeout() -> None:
    response, held = call(CancelledTimeout(app_answering_after(0.0), timeout=60))
    assert (response.status_code, response.text) == (200, "answered")
    assert not held  # BentoML's own middleware keeps it (in its timer) for the 60 s
