"""A real PostgreSQL cluster for tests: `initdb` in a temporary folder, on a free loopback port, stopped and removed
on exit. Prefect's server runs on it as on SQLite (`PREFECT_API_DATABASE_CONNECTION_URL`)."""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import free_port

USER = "prefect"
DATABASE = "prefect"


@contextmanager
def local_postgres() -> Iterator[str]:
    """Yield the SQLAlchemy URL (asyncpg) of an empty database in a fresh cluster."""
    binaries = _binaries()
    # PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user the package created.
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="ciclo-postgres-"))  # under /tmp: pytest's tmp_path is root-only
    if run_as:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", free_port()

    def run(*command: str) -> None:
        done = subprocess.run([*run_as, *command], capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            log = (folder / "postgres.log").read_text() if (folder / "postgres.log").is_file() else ""
            pytest.fail(f"`{' '.join(command)}` exited with {done.returncode}:\n{done.stdout}{done.stderr}\n{log}")

    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {folder} -c fsync=off"  # fsync: a test's data is disposable
    try:
        run(str(binaries / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8")
        run(str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "postgres.log"), "-w", "start")
        try:
            run(str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE)
            yield f"postgresql+asyncpg://{USER}@127.0.0.1:{port}/{DATABASE}"
        finally:
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _binaries() -> Path:
    """The newest installed PostgreSQL server's bin folder (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda path: int(path.parent.parent.name))
    if found:
        return found[-1].parent
    if shutil.which("initdb"):
        return Path(shutil.which("initdb")).parent  # type: ignore[arg-type]
    pytest.skip("PostgreSQL server binaries are not installed (apt-get install postgresql)")
