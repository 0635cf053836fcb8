"""The local stack behind `make up` / `make down`: a Prefect server, its work pool and worker, every deployment in
prefect.yaml, the champion served by `cicloml serve`, and a Prometheus server scraping it (`cicloml.prometheus`;
CICLO_PROMETHEUS=false leaves it out).

`up` starts each part as a background process in a session of its own (so it outlives the command), waits until
it is healthy and records it in `<state>/stack/stack.json` with its log beside it. `down` stops exactly the
processes recorded there, with everything they started (flow runs, bento workers), and only if each PID still
belongs to the process `up` started. The Prefect CLI runs as a subprocess: the library never imports Prefect.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx
import psutil
import yaml
from pydantic import BaseModel

from cicloml.atomic import atomic_path
from cicloml.errors import ConfigError
from cicloml.processes import ProcessRecord, find, stop_tree
from cicloml.prometheus import prometheus_command, write_config
from cicloml.redaction import redact
from cicloml.settings import Settings

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 240.0  # upper bounds on waiting: migrations and a first bento build are slow on 2 cores
SERVE_TIMEOUT_S = 600.0
COMMAND_TIMEOUT_S = 600.0
POLL_S = 0.5

Say = Callable[[str], None]


class StackProcess(ProcessRecord):
    """One process `up` started: its name and log beside what finds it again."""

    name: str
    log: Path


class Stack(BaseModel):
    """What `up` started and where to reach it."""

    project_dir: Path
    prefect_ui: str
    prefect_api: str
    service: str
    prometheus: str | None = None
    """None when CICLO_PROMETHEUS is off."""
    work_pools: list[str]
    processes: list[StackProcess] = []
    started_at: datetime

    def running(self) -> list[StackProcess]:
        return [process for process in self.processes if _alive(process)]

    def summary(self) -> str:
        lines = [
            f"Prefect UI   {self.prefect_ui}  (deployments: {self.prefect_ui}/deployments)",
            f"Prefect API  {self.prefect_api}",
            f"model server {self.service}  (OpenAPI docs: {self.service}/, spec {self.service}/docs.json)",
        ]
        if url := self.prometheus:
            lines.append(f"Prometheus   {url}  (targets: {url}/targets, alerts: {url}/alerts, rules: {url}/rules)")
        lines += [f"  {process.name:<14} pid {process.pid:<8} log {process.log}" for process in self.processes]
        return "\n".join(lines)


class StackError(RuntimeError):
    """A part of the stack failed to start; the message names it and the tail of its log."""


@dataclass
class StackStatus:
    """`up`'s or `status`'s answer: the stack, whether it was already running, and which recorded processes died."""

    stack: Stack | None
    already_up: bool = False
    dead: tuple[str, ...] = ()


def stack_file(settings: Settings) -> Path:
    return settings.stack_dir / "stack.json"


def read_stack(settings: Settings) -> Stack | None:
    path = stack_file(settings)
    return Stack.model_validate_json(path.read_text()) if path.is_file() else None


def stack_status(settings: Settings) -> StackStatus:
    stack = read_stack(settings)
    if stack is None:
        return StackStatus(None)
    running = {process.name for process in stack.running()}
    return StackStatus(stack, dead=tuple(p.name for p in stack.processes if p.name not in running))


def up(settings: Settings, project_dir: Path, say: Say = print) -> StackStatus:
    """Start the stack, or report the one already running. Raises `StackError` (having stopped whatever it had
    started) when a part fails, and `ConfigError` when a port is taken or a half-running stack is recorded."""
    current = stack_status(settings)
    if current.stack is not None:
        if not current.dead:
            return StackStatus(current.stack, already_up=True)
        if current.stack.running():
            raise ConfigError(
                f"the stack is half up: {', '.join(current.dead)} stopped (logs in {settings.stack_dir}); "
                "run `make down`, then `make up`"
            )
        stack_file(settings).unlink()  # every recorded process is gone (a reboot, a kill): start afresh
    if not (project_dir / "prefect.yaml").is_file():
        raise ConfigError(f"no prefect.yaml in {project_dir}: run `make up` from the project folder")
    ports = [(settings.prefect_port, "CICLO_PREFECT_PORT"), (settings.serve_port, "CICLO_SERVE_PORT")]
    if settings.prometheus:
        if shutil.which("prometheus") is None:
            raise ConfigError(
                "prometheus is not installed: `make up` installs it when run as root, or `sudo apt-get install "
                "prometheus`; CICLO_PROMETHEUS=false starts the stack without it"
            )
        ports.append((settings.prometheus_port, "CICLO_PROMETHEUS_PORT"))
    for port, variable in ports:
        if _port_taken(port):
            raise ConfigError(f"port {port} on {HOST} is in use by another program: stop it or set {variable}")

    ui = f"http://{HOST}:{settings.prefect_port}"
    stack = Stack(
        project_dir=project_dir.resolve(),
        prefect_ui=ui,
        prefect_api=f"{ui}/api",
        service=f"http://{HOST}:{settings.serve_port}",
        prometheus=f"http://{HOST}:{settings.prometheus_port}" if settings.prometheus else None,
        work_pools=project_work_pools(project_dir),
        started_at=datetime.now(timezone.utc),
    )
    starter = _Starter(settings, stack, say)
    try:
        starter.start_all()
    except BaseException:
        down(settings)
        raise
    return StackStatus(stack)


def down(settings: Settings) -> list[StackProcess]:
    """Stop every process `up` recorded (and their children) that is still the process it started; the stopped."""
    stack = read_stack(settings)
    if stack is None:
        return []
    stopped = [process for process in reversed(stack.running()) if _stop(process)]
    stack_file(settings).unlink(missing_ok=True)
    return stopped


def project_work_pools(project_dir: Path) -> list[str]:
    """The work pools prefect.yaml's deployments use, in order of first use."""
    deployments = yaml.safe_load((project_dir / "prefect.yaml").read_text())["deployments"]
    return list(dict.fromkeys(deployment["work_pool"]["name"] for deployment in deployments))


class _Starter:
    """Starts the parts in order, recording each process as soon as it exists (so a failure can stop it)."""

    def __init__(self, settings: Settings, stack: Stack, say: Say) -> None:
        self.settings, self.stack, self.say = settings, stack, say
        settings.stack_dir.mkdir(parents=True, exist_ok=True)
        prefect_home = os.environ.get("PREFECT_HOME") or str(settings.state_dir / "prefect")
        # Every part (and every flow run the worker starts) sees the same state folder, server and project.
        self.env = {
            **os.environ,
            "PREFECT_HOME": prefect_home,
            "PREFECT_API_URL": stack.prefect_api,
            "CICLO_STATE_DIR": str(settings.state_dir),
            "CICLO_SPEC_PATH": str(settings.spec_path),
        }

    def start_all(self) -> None:
        """Start the parts, overlapping what does not depend on each other: the model server needs no Prefect, and
        a worker can poll its pool while the deployments are being created."""
        steps = 4
        parts = [f"Prefect server on {self.stack.prefect_ui}", f"model server on {self.stack.service}"]
        if self.stack.prometheus:
            parts.append(f"Prometheus on {self.stack.prometheus}")
        self.say(f"[1/{steps}] {', '.join(parts)}")
        server_env = {
            "PREFECT_SERVER_API_HOST": HOST,
            "PREFECT_SERVER_API_PORT": str(self.settings.prefect_port),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        if self.settings.prefect_database_url is not None:
            server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = self.settings.prefect_database_url.get_secret_value()
        server = self._start("prefect-server", [_prefect(), "server", "start"], server_env)
        command = [sys.executable, "-m", "cicloml", "serve", "--host", HOST, "--port", str(self.settings.serve_port)]
        service = self._start("model-server", command)
        prometheus = self._start_prometheus() if self.stack.prometheus else None
        self._wait(server, "a healthy Prefect server", lambda: _answers(f"{self.stack.prefect_api}/health", {200}))

        self.say(f"[2/{steps}] work pools and process workers: {', '.join(self.stack.work_pools)}")
        workers = []
        for pool in self.stack.work_pools:
            if self._prefect("work-pool", "inspect", pool, check=False).returncode != 0:
                self._prefect("work-pool", "create", pool, "--type", "process")
            command = [_prefect(), "worker", "start", "--pool", pool, "--type", "process"]
            env = {
                # prefect.yaml's pull step starts flow runs in CICLO_PROJECT_DIR, read when a run starts: only the
                # worker has it, so the deployments name no folder and any clone's worker can run them.
                "CICLO_PROJECT_DIR": str(self.stack.project_dir),
                # Take scheduled runs up to 30 s early and start their process before they are due, so that they
                # start on time (a run's process takes 6-8 s to start here; benchmarks/bench_operations.py).
                "PREFECT_WORKER_PREFETCH_SECONDS": os.environ.get("PREFECT_WORKER_PREFETCH_SECONDS", "30"),
            }
            workers.append((pool, self._start(f"worker-{pool}", command, env)))

        self.say(f"[3/{steps}] deploying everything in prefect.yaml")
        self._prefect("deploy", "--all")

        self.say(f"[4/{steps}] waiting for the workers and the model server (`cicloml serve`)")
        for pool, worker in workers:
            self._wait(worker, f"a worker online in {pool}", lambda pool=pool: self._worker_online(pool))
        if prometheus is not None:
            self._wait(prometheus, "a ready Prometheus", lambda: _answers(f"{self.stack.prometheus}/-/ready", {200}))
        champion = _has_champion(self.settings)
        if not champion:
            self.say("      no champion yet: the service answers 503 until a model is promoted (train/weekly)")
        # With a champion, healthy means its bento answers through the proxy (the first start builds the bento).
        healthy = {200} if champion else {200, 503}
        self._wait(
            service, "the model server", lambda: _answers(f"{self.stack.service}/readyz", healthy), SERVE_TIMEOUT_S
        )

    def _start_prometheus(self) -> StackProcess:
        """Prometheus over `cicloml serve`'s targets file, its configuration (written afresh, so that a changed
        CICLO_API_TOKEN is picked up) and database under the state folder."""
        config_path = write_config(self.settings)
        data_dir = self.settings.prometheus_dir / "data"
        return self._start("prometheus", prometheus_command(config_path, data_dir, self.settings.prometheus_port))

    def _start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> StackProcess:
        log = self.settings.stack_dir / f"{name}.log"
        # Through `cicloml.logs`, which rotates the log by size: the parts run for days.
        popen = subprocess.Popen(
            [sys.executable, "-m", "cicloml.logs", str(log), "--", *command],
            cwd=self.stack.project_dir,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # outlives `make up`, and a Ctrl-C in its terminal
        )
        process = StackProcess(name=name, pid=popen.pid, started=psutil.Process(popen.pid).create_time(), log=log)
        self.stack.processes.append(process)
        with atomic_path(stack_file(self.settings)) as temporary:
            temporary.write_text(self.stack.model_dump_json(indent=2))
        return process

    def _wait(
        self, process: StackProcess, what: str, ready: Callable[[], bool], timeout: float = STARTUP_TIMEOUT_S
    ) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if not _alive(process):
                raise StackError(f"{process.name} exited before {what} was up:\n{self._log_tail(process)}")
            if time.monotonic() > deadline:
                raise StackError(f"no {what} after {timeout:.0f} s:\n{self._log_tail(process)}")
            time.sleep(POLL_S)

    def _prefect(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [_prefect(), "--no-prompt", *arguments],
            cwd=self.stack.project_dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        output = redact(done.stdout + done.stderr, self.settings.secrets)
        with open(self.settings.stack_dir / "prefect-cli.log", "a") as log:
            log.write(f"$ prefect {' '.join(arguments)}\n{output}\n")
        if check and done.returncode != 0:
            tail = "\n".join(output.splitlines()[-30:])
            raise StackError(f"`prefect {' '.join(arguments)}` exited with {done.returncode}:\n{tail}")
        return done

    def _log_tail(self, process: StackProcess) -> str:
        """The end of a part's log, secrets redacted: the Prefect server is given the database URL, and its
        errors may repeat it."""
        return redact(_tail(process.log), self.settings.secrets)

    def _worker_online(self, pool: str) -> bool:
        try:
            response = httpx.post(f"{self.stack.prefect_api}/work_pools/{pool}/workers/filter", json={}, timeout=5)
        except httpx.TransportError:
            return False
        return response.status_code == 200 and any(worker["status"] == "ONLINE" for worker in response.json())


def _prefect() -> str:
    return str(Path(sys.executable).with_name("prefect"))


def _has_champion(settings: Settings) -> bool:
    from cicloml.registry import ModelRegistry  # BentoML is slow to import; only this needs it
    from cicloml.spec import load_spec

    return ModelRegistry(settings, load_spec(settings.spec_path).name).champion() is not None


def _answers(url: str, statuses: set[int]) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code in statuses
    except httpx.TransportError:
        return False


def _port_taken(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return True
    return False


def _alive(process: StackProcess) -> bool:
    return find(process) is not None


def _stop(process: StackProcess) -> bool:
    found = find(process)
    if found is None:
        return False
    stop_tree(found)
    return True


def _tail(path: Path, lines: int = 30) -> str:
    text = path.read_text(errors="replace") if path.is_file() else ""
    return "\n".join(text.splitlines()[-lines:])
