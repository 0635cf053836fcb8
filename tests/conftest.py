"""Shared fixtures: a temporary state folder per test (or module), with settings pointed at it."""

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from cicloml.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[1]
FEATURE_REPO = ROOT / "features"


@contextmanager
def ciclo_environment(state_dir: Path, **settings: str) -> Iterator[Settings]:
    """Point cicloml (and the Feast repo, which reads settings on import) at `state_dir` for the duration."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CICLO_STATE_DIR", str(state_dir))
        patch.setenv("CICLO_SPEC_PATH", str(ROOT / "cicloml.yaml"))
        for name, value in settings.items():
            patch.setenv(f"CICLO_{name.upper()}", value)
        get_settings.cache_clear()
        try:
            yield get_settings()
        finally:
            get_settings.cache_clear()


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    with ciclo_environment(tmp_path / "state") as current:
        yield current


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def redis_server(work_dir: Path) -> Iterator[str]:
    """A real redis-server on a free loopback port, stopped afterwards; yields Feast's connection string."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(
            "redis-server is not installed (make test installs it when run as root: apt-get install redis-server)"
        )
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(work_dir),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
