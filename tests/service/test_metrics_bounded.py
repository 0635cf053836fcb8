"""A scanner cannot grow the service: 5,000 requests to random paths without the token leave `/metrics` (which
now needs the token) and the worker's memory within a small bound, the refusals counted under one label."""

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import httpx
import psutil
import pytest

from bentos.metrics import REFUSED
from tests.conftest import ciclo_environment
from tests.service.conftest import bento_server, serving_environment
from tests.service.state import build_served_state

pytestmark = pytest.mark.slow

END = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
TOKEN = "metrics-token-" + "x" * 16
SCANS = 5000
MAX_METRICS_GROWTH_BYTES = 50_000
"""Before the fix, 5,000 random paths grew /metrics by 40 MB (100,528 series); a fixed label adds a few lines."""
MAX_RSS_GROWTH_BYTES = 40 * 2**20
"""Before the fix, 150 MB; what is left is allocator noise of 5,000 requests."""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, psutil.Process]]:
    with ciclo_environment(tmp_path_factory.mktemp("metrics")) as settings:
        build_served_state(settings, END, customers=100)
        environment = serving_environment(settings.state_dir, api_token=TOKEN)
        with bento_server(environment, settings.state_dir / "serve.log") as url:
            port = int(url.rsplit(":", 1)[1])
            server = next(p for p in psutil.process_iter() if any(c.laddr.port == port for c in _listening(p)))
            workers = [child for child in server.children(recursive=True) if "worker" in " ".join(child.cmdline())]
            yield url, workers[0] if workers else server


def _listening(process: psutil.Process) -> list:
    try:
        return [c for c in process.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        return []


def metrics(client: httpx.Client) -> str:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    return response.text


def test_random_paths_without_the_token_do_not_grow_metrics_or_memory(served) -> None:
    url, worker = served
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/metrics").status_code == 401
        for _ in range(50):  # warm up: the allocator's first arenas, the first series
            client.get(f"/{secrets.token_hex(8)}")
        before_metrics, before_rss = len(metrics(client)), worker.memory_info().rss

        def scan(count: int) -> list[int]:
            with httpx.Client(base_url=url, timeout=30) as scanner:
                return [
                    scanner.get(f"/{secrets.token_hex(12)}/{secrets.token_hex(4)}").status_code for _ in range(count)
                ]

        with ThreadPoolExecutor(4) as pool:
            statuses = [status for part in pool.map(scan, [SCANS // 4] * 4) for status in part]
        assert set(statuses) == {401}

        after = metrics(client)
        growth, rss_growth = len(after) - before_metrics, worker.memory_info().rss - before_rss
        assert growth < MAX_METRICS_GROWTH_BYTES, growth
        assert rss_growth < MAX_RSS_GROWTH_BYTES, rss_growth
        refused = [
            line
            for line in after.splitlines()
            if line.startswith("bentoml_service_request_total{") and f'endpoint="{REFUSED}"' in line
        ]
        assert any('http_response_code="401"' in line and float(line.rsplit(" ", 1)[1]) >= SCANS for line in refused)
        # Routes keep their own series.
        assert 'endpoint="/predict"' in after
