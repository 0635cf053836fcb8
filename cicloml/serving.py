"""Serving the champion locally, and switching to a new one without failing a request (`cicloml serve`).

A small reverse proxy holds the public port. Behind it runs one `bentoml serve` of the champion's bento (a
backend) on a loopback port of its own. When the registry's champion changes (checked every few seconds, or at
once on SIGHUP), the server builds the new champion's bento if needed, starts it beside the old one, waits for
its /readyz, and then points the proxy at it in one assignment. Requests already sent to the old backend finish
there; once none is left in flight the old backend gets SIGTERM, and BentoML's graceful shutdown ends it. A
caller sees no refused connection and no error during the switch, only the model version in the answers change.

The server also supervises its backend. A backend whose process has died, or whose /readyz has failed for
`UNRESPONSIVE_S`, is stopped with its whole process tree (its recorded workers too: they outlive a `kill -9` of
their server) and started again, with back-off, up to `MAX_RESTARTS` in `RESTART_WINDOW_S`; meanwhile callers
get 503 with `Retry-After`, never a 502. `serving.json` says what is served and how the backend fares.

For Prometheus, the server keeps a file_sd targets file (`cicloml.prometheus.targets_file`) naming the backend
while it serves (its port changes with every restart and switch) and a loopback endpoint of its own whose only
metric, `cicloml_serve_backend_restarts_total`, counts restarts: the backends cannot count their own.

On BentoCloud the same switch is a deployment update (`cicloml.bento.deploy_bento`).
"""

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import uvicorn
from bentoml._internal.bento.bento import BentoStore
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from cicloml.atomic import atomic_path
from cicloml.bento import BENTOML, bentoml_environment, build_bento
from cicloml.errors import ConfigError
from cicloml.logs import copy_output
from cicloml.processes import ProcessRecord, family, find, stop_all
from cicloml.prometheus import target_groups, targets_file, write_targets
from cicloml.registry import ModelRegistry
from cicloml.settings import Settings

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
"""Headers that describe one connection, not the message: the proxy does not pass them on."""

READY_TIMEOUT_S = 300.0
"""Longest wait for a new backend's /readyz: importing the stack alone takes 15-30 s on two busy cores."""
STOP_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 30.0
"""Longest wait for the requests in flight on the old backend before it is stopped anyway."""
HEALTH_INTERVAL_S = 1.0
"""How often the supervisor looks at the backend (and at once when a request could not reach it)."""
UNRESPONSIVE_S = 15.0
"""How long /readyz may fail before a live backend counts as hung: longer than a stall under full load."""
RESTART_BACKOFF_S = (0.0, 2.0, 5.0, 15.0, 30.0)
"""Waits before successive restart attempts (the last repeats): a crash loop must not spin the CPU."""
MAX_RESTARTS = 5
RESTART_WINDOW_S = 600.0
"""More restarts than `MAX_RESTARTS` within this window: the backend is given up on (503) until the champion
changes or SIGHUP asks again, and `serving.json` says so."""
RETRY_AFTER_S = 5


class SwitchingProxy:
    """An ASGI app that forwards every HTTP request to the current upstream: the request's body streamed, the
    answer read whole before it is passed on.

    Each request reads `upstream` once, so a switch never moves a request between backends, and the requests
    in flight are counted per upstream so the old one can be drained before it stops.
    """

    def __init__(self, timeout_s: float = 60.0) -> None:
        self.upstream: str | None = None
        self.unavailable = "no model is being served yet"
        """Why there is no upstream, for the 503 answered meanwhile."""
        self.on_failure: Callable[[str], None] = lambda upstream: None
        """Called when an upstream could not be reached (the supervisor looks at once)."""
        self.in_flight: Counter[str] = Counter()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=5.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        upstream = self.upstream
        if upstream is None:
            await _unavailable(send, self.unavailable)
            return
        self.in_flight[upstream] += 1
        try:
            await self._forward(upstream, scope, receive, send)
        finally:
            self.in_flight[upstream] -= 1

    async def _forward(self, upstream: str, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string", b"").decode("latin-1")
        url = upstream + scope.get("raw_path", scope["path"].encode()).decode("latin-1").split("?")[0]
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in scope["headers"]
            if name.decode("latin-1").lower() not in HOP_BY_HOP
        ]
        if scope.get("client"):
            headers.append(("x-forwarded-for", scope["client"][0]))
        request = self._client.build_request(
            scope["method"], url + (f"?{query}" if query else ""), headers=headers, content=_body(receive)
        )
        try:
            # The answer is read whole before any of it is passed on (answers are small JSON): a backend that dies
            # mid-answer then gives a 503 to retry, never a truncated response the caller cannot tell from a bug.
            response = await self._client.send(request, stream=True)
            try:
                body = b"".join([chunk async for chunk in response.aiter_raw()])  # as sent: encoding kept
            finally:
                await response.aclose()
        except httpx.TransportError as error:
            # Nothing of the request was answered: the backend is gone or going (a crash, a switch's last
            # moment). A 503 with Retry-After tells the caller to come back; the supervisor looks at once.
            logger.warning("upstream %s failed: %s", upstream, error)
            self.on_failure(upstream)
            await _unavailable(send, "the model server did not answer")
            return
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [
                    *[
                        (name.encode("latin-1"), value.encode("latin-1"))
                        for name, value in response.headers.multi_items()
                        if name.lower() not in HOP_BY_HOP
                    ],
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _body(receive: Receive):  # type: ignore[no-untyped-def]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def _unavailable(send: Send, reason: str) -> None:
    """503 with Retry-After, in the service's error shape."""
    body = json.dumps({"error": f"{reason}; retry in a few seconds"}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(RETRY_AFTER_S).encode()),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def service_overrides(workers: int, access_log: bool = False) -> str:
    """`BENTOML_CONFIG_OVERRIDES` for a backend: its worker count, and BentoML's access log (a line per request)
    off unless asked for; errors are logged either way."""
    service_config = {"workers": workers, "logging": {"access": {"enabled": access_log}}}
    return json.dumps({"services": {"cicloml": service_config}})


@dataclass
class Backend:
    """One `bentoml serve BENTO` process on a loopback port, in its own session, and the workers it started."""

    bento_tag: str
    model_tag: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    members: dict[int, ProcessRecord] = field(default_factory=dict)
    """Every process of the backend seen so far (the server and its workers), by PID: BentoML's workers run in
    sessions of their own, and a worker whose server was killed is found only through this record."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls, settings: Settings, bento_tag: str, model_tag: str, workers: int, log_dir: Path, access_log: bool = False
    ) -> "Backend":
        port = free_port()
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{bento_tag.replace(':', '-')}.log"
        environment = bentoml_environment(settings)
        environment["BENTOML_CONFIG_OVERRIDES"] = service_overrides(workers, access_log)
        # By path: a bento named like an importable module (`click:v1`) would be taken for an import string.
        bento_dir = BentoStore(str(settings.bentoml_home / "bentos")).get(bento_tag).path
        command = [str(BENTOML), "serve", bento_dir, "--host", "127.0.0.1", "--port", str(port)]
        process = subprocess.Popen(
            command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        assert process.stdout is not None
        copy_output(process.stdout, log_path)  # rotated by size: a backend runs for days
        logger.info("starting %s (%s) on port %d, log %s", bento_tag, model_tag, port, log_path)
        backend = cls(bento_tag, model_tag, port, process, log_path)
        backend.remember_members()
        return backend

    @property
    def exited(self) -> int | None:
        """The server process's exit code, None while it runs."""
        return self.process.poll()

    def remember_members(self) -> None:
        """Record the server and the processes it has started by now (its workers appear as it starts up)."""
        with suppress(psutil.NoSuchProcess):
            for member in family(psutil.Process(self.process.pid)):
                with suppress(psutil.NoSuchProcess):
                    self.members.setdefault(member.pid, ProcessRecord.of(member))

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                self.remember_members()
                if self.exited is not None:
                    raise RuntimeError(f"{self.bento_tag} exited with {self.exited}; see {self.log_path}")
                if await self.ready(client):
                    self.remember_members()
                    return
                await asyncio.sleep(0.25)
        self.stop()
        raise RuntimeError(f"{self.bento_tag} was not ready after {timeout_s:.0f} s; see {self.log_path}")

    async def ready(self, client: httpx.AsyncClient) -> bool:
        try:
            return (await client.get(f"{self.url}/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        """SIGTERM the server (BentoML finishes the requests in flight and stops its workers), then stop whatever
        of the backend is left: every recorded member still alive (a worker orphaned by a killed server) and every
        process of its process group, SIGKILL after a timeout."""
        if self.exited is None:
            self.remember_members()
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        left = [found for record in self.members.values() if (found := find(record)) is not None]
        left += [member for member in _process_group(self.process.pid) if member.pid not in self.members]
        if left:
            logger.info("stopping what is left of %s: pids %s", self.bento_tag, [member.pid for member in left])
            stop_all(left, STOP_TIMEOUT_S)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        logger.info("stopped %s", self.bento_tag)


@dataclass
class ChampionServer:
    """The proxy on `host:port` and a backend for the current champion: switched when the champion changes,
    restarted when it dies or hangs."""

    settings: Settings
    registry: ModelRegistry
    host: str = "127.0.0.1"
    port: int = 3000
    workers: int = 1
    poll_s: float = 5.0
    access_log: bool = False
    """A log line per request, from the backends (off: at hundreds of requests a second it is most of the log)."""
    proxy: SwitchingProxy = field(default_factory=SwitchingProxy)
    backend: Backend | None = None
    status: str = "waiting"
    """serving | restarting | failed (given up on after too many restarts) | waiting (no champion yet)."""
    restarts: list[float] = field(default_factory=list)
    """When the backend was last restarted (monotonic seconds), for the limit."""
    restart_count: int = 0
    """Restarts since this server started."""
    last_restart: str | None = None
    """Why the backend was last restarted, when, and how long it took."""
    _check_now: asyncio.Event = field(default_factory=asyncio.Event)
    _look_now: asyncio.Event = field(default_factory=asyncio.Event)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """One change of backend at a time: a switch and a restart never interleave."""
    _failed: str | None = None
    """The champion that could not be served (not retried on every poll)."""
    _metrics_address: str | None = None
    """`host:port` of the server's own metrics endpoint, once `run` has opened it."""

    @property
    def state_file(self) -> Path:
        """What is served now (JSON: pid, url, model and bento tags, status, restarts), for scripts and `make up`."""
        return serving_state_file(self.settings)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set; SIGHUP (where signals can be caught) checks the champion at once."""
        server = _ProxyServer(
            uvicorn.Config(self.proxy, host=self.host, port=self.port, log_level="warning", lifespan="on")
        )
        self.proxy.on_failure = lambda upstream: self._look_now.set()
        # Loopback only, on a free port that the targets file names: it is for the local Prometheus.
        metrics_server, _ = start_http_server(0, addr="127.0.0.1", registry=self._metrics_registry())
        self._metrics_address = f"127.0.0.1:{metrics_server.server_port}"
        self._write_targets()
        server_task = asyncio.create_task(server.serve())
        watcher = asyncio.create_task(self._follow_champion(stop))
        supervisor = asyncio.create_task(self._supervise(stop))
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({server_task, watcher, supervisor, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for task in (server_task, watcher, supervisor):
                if task.done() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in (watcher, supervisor, stopping):
                task.cancel()
            server.should_exit = True
            await asyncio.gather(server_task, watcher, supervisor, return_exceptions=True)
            if self.backend is not None:
                await asyncio.to_thread(self.backend.stop)
            metrics_server.shutdown()
            metrics_server.server_close()
            self.state_file.unlink(missing_ok=True)
            targets_file(self.settings).unlink(missing_ok=True)

    def check_now(self) -> None:
        self._check_now.set()

    async def _follow_champion(self, stop: asyncio.Event) -> None:
        waiting_said = False
        while not stop.is_set():
            # Cleared before acting: a SIGHUP that arrives during a switch asks for another check, and gets it.
            asked = self._check_now.is_set()
            self._check_now.clear()
            champion = self.registry.champion()
            if champion is None and self.backend is None and not waiting_said:
                logger.warning("no champion yet: waiting for one (train and promote a model)")
                waiting_said = True
            elif champion is not None and champion != (self.backend and self.backend.model_tag):
                if champion != self._failed or asked:
                    await self.switch_to(champion)
            elif asked and self.status == "failed" and self.backend is not None:
                self.restarts.clear()  # asked again: a fresh allowance of restarts
                await self._restart(self.backend, "asked again (SIGHUP) after giving up")
            try:
                await asyncio.wait_for(self._check_now.wait(), timeout=self.poll_s)
            except TimeoutError:
                pass

    async def switch_to(self, model_tag: str) -> None:
        """Build (if needed) and start `model_tag`'s bento, move traffic to it when ready, drain and stop the old.

        If the new bento cannot be built or started, the old one keeps serving, and this champion is not tried
        again until the pointer moves (or SIGHUP asks)."""
        async with self._lock:
            try:
                bento_tag, _ = await asyncio.to_thread(build_bento, self.settings, model_tag)
                self.registry.record_bento(model_tag, bento_tag)
                new = Backend.start(self.settings, bento_tag, model_tag, self.workers, self._log_dir, self.access_log)
                await new.wait_ready()
            except (RuntimeError, ConfigError, OSError):
                serving = self.backend.model_tag if self.backend else "nothing"
                logger.exception("could not serve %s; still serving %s", model_tag, serving)
                self._failed = model_tag
                return
            old, self.backend = self.backend, new
            self._serve(new)
            self.restarts.clear()
            logger.info("serving %s (%s) at http://%s:%d", model_tag, bento_tag, self.host, self.port)
            if old is not None:
                await self._drain(old.url)
                await asyncio.to_thread(old.stop)

    async def _supervise(self, stop: asyncio.Event) -> None:
        """Look at the backend every `HEALTH_INTERVAL_S` (at once after a request failed to reach it): restart it
        when its server has exited or its /readyz has failed for `UNRESPONSIVE_S`."""
        unready_since: float | None = None
        async with httpx.AsyncClient(timeout=2.0) as client:
            while not stop.is_set():
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._look_now.wait(), timeout=HEALTH_INTERVAL_S)
                self._look_now.clear()
                backend = self.backend
                if backend is None or self.status != "serving" or self._lock.locked():
                    unready_since = None
                    continue
                backend.remember_members()  # workers BentoML restarts get new PIDs
                if backend.exited is not None:
                    await self._restart(backend, f"its server exited with {backend.exited}")
                    unready_since = None
                elif await backend.ready(client):
                    unready_since = None
                elif unready_since is None:
                    unready_since = time.monotonic()
                elif time.monotonic() - unready_since > UNRESPONSIVE_S:
                    await self._restart(backend, f"/readyz failed for {UNRESPONSIVE_S:.0f} s")
                    unready_since = None

    async def _restart(self, backend: Backend, reason: str) -> None:
        """Stop `backend` with its whole tree and start its bento again, with back-off, answering 503 meanwhile; give
        up after `MAX_RESTARTS` in `RESTART_WINDOW_S`."""
        async with self._lock:
            if backend is not self.backend:
                return  # switched away meanwhile
            began = time.monotonic()
            logger.error(
                "backend %s (pid %d) is down: %s; restarting it", backend.bento_tag, backend.process.pid, reason
            )
            self.proxy.upstream = None
            self.proxy.unavailable = "the model server is restarting"
            self._set_status("restarting")
            await asyncio.to_thread(backend.stop)
            attempt = 0
            while True:
                self.restarts = [moment for moment in self.restarts if began - moment < RESTART_WINDOW_S]
                if len(self.restarts) >= MAX_RESTARTS:
                    logger.error(
                        "gave up on %s after %d restarts in %.0f s: answering 503 (SIGHUP tries again)",
                        backend.bento_tag,
                        len(self.restarts),
                        RESTART_WINDOW_S,
                    )
                    self.proxy.unavailable = "the model server keeps failing"
                    self._set_status("failed")
                    return
                await asyncio.sleep(RESTART_BACKOFF_S[min(attempt, len(RESTART_BACKOFF_S) - 1)])
                attempt += 1
                self.restarts.append(time.monotonic())
                self.restart_count += 1
                new = Backend.start(
                    self.settings, backend.bento_tag, backend.model_tag, self.workers, self._log_dir, self.access_log
                )
                try:
                    await new.wait_ready()
                except RuntimeError:
                    logger.exception("restart %d of %s failed", attempt, backend.bento_tag)
                    await asyncio.to_thread(new.stop)
                    continue
                self.backend = new
                took = time.monotonic() - began
                self.last_restart = (
                    f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}: {reason} (back in {took:.1f} s)"
                )
                self._serve(new)
                logger.info("backend %s back after %.1f s (pid %d)", new.bento_tag, took, new.process.pid)
                return

    def _serve(self, backend: Backend) -> None:
        self.proxy.upstream = backend.url
        self._set_status("serving")

    def _set_status(self, status: str) -> None:
        self.status = status
        self._write_state()

    @property
    def _log_dir(self) -> Path:
        return self.settings.state_dir / "serve" / "logs"

    async def _drain(self, upstream: str) -> None:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while self.proxy.in_flight[upstream] > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def _write_state(self) -> None:
        backend = self.backend
        state = {
            "pid": os.getpid(),
            "url": f"http://{self.host}:{self.port}",
            "status": self.status,
            "model_tag": backend.model_tag if backend else None,
            "bento_tag": backend.bento_tag if backend else None,
            "backend_pid": backend.process.pid if backend and self.status == "serving" else None,
            "backend_url": backend.url if backend and self.status == "serving" else None,
            "restarts": self.restart_count,
            "last_restart": self.last_restart,
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.state_file) as temporary:
            temporary.write_text(json.dumps(state, indent=2))
        self._write_targets()

    def _write_targets(self) -> None:
        """Name the backend to Prometheus while it serves (not while it restarts: it would only count as down)."""
        if self._metrics_address is None:
            return
        backend = self.backend if self.status == "serving" else None
        address = f"127.0.0.1:{backend.port}" if backend else None
        write_targets(
            targets_file(self.settings),
            target_groups(self._metrics_address, address, backend.model_tag if backend else None),
        )

    def _metrics_registry(self) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_RestartsCollector(self))
        return registry


class _RestartsCollector(Collector):
    """The server's restart count, read when Prometheus scrapes (a counter: it only grows while the server runs)."""

    def __init__(self, server: ChampionServer) -> None:
        self.server = server

    def collect(self) -> Iterator[CounterMetricFamily]:
        restarts = CounterMetricFamily(
            "cicloml_serve_backend_restarts",
            "Times a dead or hung backend was started again since this `cicloml serve` started (each attempt).",
        )
        restarts.add_metric([], self.server.restart_count)
        yield restarts


class _ProxyServer(uvicorn.Server):
    """uvicorn without its own signal handling: the `ChampionServer` stops it, and stops the backend too."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _process_group(pgid: int) -> list[psutil.Process]:
    """The live processes of process group `pgid` (a backend runs in a session of its own: its group is its PID)."""
    members = []
    for process in psutil.process_iter():
        with suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) == pgid:
                members.append(process)
    return members


def serving_state_file(settings: Settings) -> Path:
    return settings.state_dir / "serve" / "serving.json"


def serve_champion(settings: Settings, registry: ModelRegistry, **options: Any) -> None:
    """Run a `ChampionServer` in the foreground until SIGINT or SIGTERM; SIGHUP re-checks the champion."""

    async def main() -> None:
        stop = asyncio.Event()
        server = ChampionServer(settings, registry, **options)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGHUP, server.check_now)
        await server.run(stop)

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def notify_server(settings: Settings) -> int | None:
    """Ask a running `cicloml serve` to check the champion now (SIGHUP); its PID, or None when none runs."""
    try:
        pid = int(json.loads(serving_state_file(settings).read_text())["pid"])
        os.kill(pid, signal.SIGHUP)
    except (FileNotFoundError, KeyError, ValueError, ProcessLookupError, PermissionError):
        return None
    return pid
