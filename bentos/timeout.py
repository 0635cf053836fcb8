"""BentoML's request timeout, without keeping every answered request's timer alive for the whole timeout.

BentoML 1.4's `TimeoutMiddleware` (`bentoml/_internal/server/http/traffic.py`) schedules `loop.call_later(timeout,
...)` for each request and never cancels it: an answered request's timer, its future and the copy of its context
that the timer holds (the request's trace span with it) stay alive for the full 10 s. At ~800 requests/s that is
some 8,000 requests' objects at any moment, which the garbage collector promotes to its oldest generation and then
walks in full every 2-4 s: 30-75 ms pauses (measured with `gc.callbacks` in a worker), most of a /predict's p99 at
half load. Here the timer is cancelled once the request is done; the deadline and its 504 are BentoML's.
"""

import asyncio
from typing import Any

from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse


class CancelledTimeout(traffic.TimeoutMiddleware):
    """BentoML's `TimeoutMiddleware` (504 when no answer has started within `timeout` seconds), its timer cancelled
    when the request is done."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message: Any) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        answer = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
        try:
            await waiter
        except TimeoutError:
            if answer.cancel():
                message = f"Not able to process the request in {self.timeout} seconds"
                await JSONResponse({"error": message}, status_code=504)(scope, receive, send)
        else:
            await answer
        finally:
            timer.cancel()


def cancel_timers_when_done() -> None:
    """Make BentoML's service app build its timeout middleware as `CancelledTimeout` (it imports the class by name
    from its traffic module when it assembles the app, in each worker)."""
    traffic.TimeoutMiddleware = CancelledTimeout  # type: ignore[misc]
