"""Property-based fuzzing of the served OpenAPI schema over real HTTP, with and without the API token: every
schemathesis check passes (no 5xx; every answer's status and body as documented; a request the schema allows is
accepted, one it refuses is refused), and the worker is still up afterwards.

Schemathesis reads BentoML 1.4's schema at `/docs.json` (there is no `/openapi.json`) and generates valid and invalid
bodies, wrong content types and unsupported methods for every operation. It found the `JsonOnly` middleware's reason
to exist: `Content-Type: multipart/form-data` without a boundary was a 500 from BentoML's form parser.
"""

import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from tests.conftest import ciclo_environment
from tests.service.conftest import bento_server, serving_environment
from tests.service.state import build_served_state

pytestmark = pytest.mark.slow

END = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
MAX_EXAMPLES = 50
"""Per operation, bounded for CI time; the coverage phase adds its own edge cases (methods, content types) on top."""
TOKEN = "fuzz-token-0123456789abcdef"


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with ciclo_environment(tmp_path_factory.mktemp("fuzz")) as ciclo_settings:
        build_served_state(ciclo_settings, END, customers=100)
        yield ciclo_settings.state_dir


@pytest.fixture(params=[None, TOKEN], ids=["open", "token"])
def served(request: pytest.FixtureRequest, state: Path) -> Iterator[tuple[str, dict[str, str]]]:
    token = request.param
    environment = serving_environment(state, **({"api_token": token} if token else {}))
    with bento_server(environment, state / f"serve-{request.param_index}.log") as url:
        yield url, {"Authorization": f"Bearer {token}"} if token else {}


def test_every_check_passes_and_the_worker_stays_up(served: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    """Every operation, every phase (examples, edge-case coverage, fuzzing), valid and invalid inputs."""
    base_url, headers = served
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{base_url}/docs.json",
        f"--url={base_url}",
        "--checks=all",
        f"--max-examples={MAX_EXAMPLES}",
        "--mode=all",
        "--request-timeout=60",  # a shared 2-core machine: timing is not the property under test
        "--generation-database=none",
        "--continue-on-failure",
        "--no-color",
        *[f"--header={name}: {value}" for name, value in headers.items()],
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]

    # Afterwards the worker is still up, still predicts, and BentoML's own request counter saw no 5xx at all.
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        assert client.get("/readyz").status_code == 200
        assert client.post("/predict", json={"entity_ids": [1001]}).status_code == 200
        metrics = client.get("/metrics").text
    server_errors = [
        line
        for line in metrics.splitlines()
        if line.startswith("bentoml_service_request_total") and 'http_response_code="5' in line
    ]
    assert all(line.endswith(" 0.0") for line in server_errors), server_errors
