"""The temporary Prefect server of a run started by hand, tied to the life of the process that needs it.

With no PREFECT_API_URL, Prefect 3.8.8 starts a temporary API server in a subprocess the first time a client is
asked for (`SubprocessASGIServer`, prefect/server/api/server.py) and stops it from an `atexit` hook only. A
`kill -9` runs no `atexit` hook, so the server (about 236 MB) was left running, alone, for good.

Prefect looks that server up as `SubprocessASGIServer()`, a per-port singleton keyed `None` for the temporary one
(the same registry `prefect_test_harness` fills with its own server). `start_temporary_server` registers a subclass
there before Prefect does, and starts it at once. The subclass differs in one thing: its child asks Linux for
SIGTERM when its parent dies (`prctl(PR_SET_PDEATHSIG)`, set between fork and exec). Where prctl is unavailable
it is Prefect's server unchanged.

The signal comes when the *thread* that started the child exits, not the process. So the server is started here,
eagerly, from the main thread, which lives as long as the process; called from any other thread, Prefect's own
server is started instead (still eagerly, no different from what the first client would do).

It also serves Prefect's app behind `RetryWhileBusy`: the temporary server's SQLite database is locked while the
server's own services write the previous run's events, and a request that finds it so (often the next flow run's
`INSERT INTO flow_run`) is answered 503, after which Prefect's client waits a fixed ~2 s before trying again. Two
local runs in five of the train flow spent that wait (PrefectHQ/prefect#18934).
"""

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import prefect
from prefect.server.api import server as prefect_server
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL, get_current_settings

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
SERVICE_UNAVAILABLE = 503


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that has the child SIGTERMed when its parent dies, or None where prctl is unavailable."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None).prctl  # libc, which the interpreter is linked against
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    sigterm = int(signal.SIGTERM)

    def preexec() -> None:
        # Runs in the child between fork and exec: nothing may raise (Popen would fail) and nothing takes locks.
        if prctl(PR_SET_PDEATHSIG, sigterm, 0, 0, 0) == 0 and os.getppid() != parent:
            os.kill(os.getpid(), sigterm)  # the parent died before prctl took effect

    return preexec


def uvicorn_command(port: int | None) -> list[str]:
    """The command Prefect 3.8.8 starts its temporary server with (`SubprocessASGIServer._run_uvicorn_command`),
    serving `create_app` below instead of Prefect's."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(prefect.__module_path__.parent),
        "--factory",
        "flows.temporary_server:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]


def uvicorn_environment() -> dict[str, str]:
    """The environment Prefect 3.8.8 gives its temporary server: no UI, and marked ephemeral."""
    return {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        **get_current_settings().to_environment_variables(exclude_unset=True),
    }


class RetryWhileBusy:
    """Answers a request that Prefect's server answered 503 (its database locked, "the client can retry") by
    running it again after a short pause, doubling from `first_pause_s`, for up to `budget_s`; then the 503 goes
    to the client as before, which backs off on its own. A locked write rolls back, so running it again is what the
    client's retry would do, only sooner. The request body is read first, to be replayed."""

    def __init__(self, app: Any, first_pause_s: float = 0.02, budget_s: float = 5.0) -> None:
        self.app = app
        self.first_pause_s = first_pause_s
        self.budget_s = budget_s

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        body = [await receive()]
        while body[-1]["type"] == "http.request" and body[-1].get("more_body"):
            body.append(await receive())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.budget_s
        pause = self.first_pause_s
        while await self._held_back(scope, body, receive, send, retry=loop.time() + pause < deadline):
            await asyncio.sleep(pause)
            pause *= 2

    async def _held_back(self, scope: Any, body: list[Any], receive: Any, send: Any, retry: bool) -> bool:
        """Run the request once; True when it was answered 503 and `retry`: that answer is then not sent."""
        replay = iter(body)
        held = False

        async def replayed() -> Any:
            return next(replay, None) or await receive()

        async def answer(message: Any) -> None:
            nonlocal held
            if retry and message["type"] == "http.response.start" and message["status"] == SERVICE_UNAVAILABLE:
                held = True
            if not held:
                await send(message)

        # A fresh scope each time: the app's routing and middleware write into the one they are given.
        fresh = {**scope, "state": dict(scope["state"])} if "state" in scope else dict(scope)
        try:
            await self.app(fresh, replayed, answer)
        except Exception:
            # Starlette re-raises what its error handler answered, for the server to log; a held 503 is retried.
            if not held:
                raise
        return held


def create_app() -> RetryWhileBusy:
    """The temporary server's app: Prefect's (`create_app`, configured by the environment as Prefect's command
    configures it) behind `RetryWhileBusy`."""
    return RetryWhileBusy(prefect_server.create_app())


class ServerDyingWithParent(SubprocessASGIServer):
    """Prefect's temporary server, whose process is SIGTERMed when the process that started it dies, serving
    Prefect's app behind `RetryWhileBusy`."""

    def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
        # Prefect's Popen takes no preexec_fn, so the command is repeated here (tests/flows/test_local.py checks
        # it against Prefect's, the app aside); start() around it (health wait, port retry, atexit stop) stays
        # Prefect's.
        return subprocess.Popen(
            args=uvicorn_command(self.port), env=uvicorn_environment(), preexec_fn=die_with_parent()
        )


def start_temporary_server() -> SubprocessASGIServer | None:
    """Start this process's temporary Prefect server now; None when an API URL is configured (no temporary one).

    Starting it twice is harmless: the server already registered, whichever class, is returned, started.
    """
    if PREFECT_API_URL.value():
        return None
    if threading.current_thread() is threading.main_thread():
        server = ServerDyingWithParent()
    else:
        server = SubprocessASGIServer()
    server.start()
    return server
