"""A real `bentoml serve` of the prediction service on a free loopback port, over a temporary state folder."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port

BENTOML = Path(sys.executable).with_name("bentoml")
SERVICE = "bentos.service:PredictionService"
STARTUP_SECONDS = 180  # importing the service and the stack takes ~15 s alone on 2 busy cores
STOP_SECONDS = 30


def serving_environment(state_dir: Path, **settings: str) -> dict[str, str]:
    """The environment a served bento sees: cicloml settings and BentoML's home under the state folder."""
    environment = {
        **os.environ,
        "CICLO_STATE_DIR": str(state_dir),
        "CICLO_SPEC_PATH": str(ROOT / "cicloml.yaml"),
        "BENTOML_HOME": str(state_dir / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    environment.update({f"CICLO_{name.upper()}": value for name, value in settings.items()})
    return environment


@contextmanager
def bento_server(
    environment: dict[str, str], log_path: Path, *arguments: str, target: str = SERVICE, cwd: Path = ROOT
) -> Iterator[str]:
    """Start `bentoml serve` of `target` (the service from this checkout, or a built bento's tag) in `cwd`, wait
    until /readyz answers 200, yield its base URL; stop it afterwards.

    The server runs in its own process group, so a worker left behind by a server that would not stop can be
    killed with it.
    """
    port = free_port()
    command = [str(BENTOML), "serve", target, "--host", "127.0.0.1", "--port", str(port), *arguments]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=cwd, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, base_url, log_path)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _wait_ready(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"bentoml serve exited with {process.returncode}:\n{_tail(log_path)}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(f"bentoml serve was not ready after {STARTUP_SECONDS} s:\n{_tail(log_path)}")


def _tail(log_path: Path, lines: int = 40) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
