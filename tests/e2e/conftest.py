from collections.abc import Iterator

import pytest
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[None]:
    """A temporary Prefect server and database for the demo's flows."""
    with prefect_test_harness(server_startup_timeout=120):
        yield
