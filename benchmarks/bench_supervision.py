"""Recovery of `cicloml serve` from a killed backend, under steady traffic.

With 1 and with 2 bento workers: `kill -9` of the whole backend tree (server and workers), `--kills` times. For
each kill: the time from the kill to the first successful answer, and what the callers got meanwhile (503 with
Retry-After from the proxy; anything else counts as failed). With 2 workers also `kill -9` of one worker alone:
BentoML starts a new one while the other keeps answering, so that is not an outage at all (the baseline a
whole-backend restart is held against).

Traffic: 3 client threads posting `/predict` back to back (one id each), pausing 0.2 s after a 503. State: a
temporary state folder with a small champion (`tests.service.state.build_served_state`). Prints one JSON object
on stdout; progress on stderr.

    python benchmarks/bench_supervision.py             # about 8 minutes
    python benchmarks/bench_supervision.py --kills 2 --workers 1
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: import cicloml and the service tests' state builder

from cicloml.settings import get_settings  # noqa: E402

CLIENTS = 3
START_SECONDS = 360.0
RECOVERY_SECONDS = 180.0


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class Traffic:
    """Clients posting /predict back to back, counting answers by status over time."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: list[tuple[float, str]] = []  # (monotonic time, "200" | "503" | "failed")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(index,)) for index in range(CLIENTS)]

    def __enter__(self) -> "Traffic":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _client(self, index: int) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(f"{self.url}/predict", json={"entity_ids": [1000 + index]})
                    outcome = str(response.status_code)
                    if response.status_code == 503 and not response.headers.get("retry-after"):
                        outcome = "failed"
                except httpx.HTTPError:
                    outcome = "failed"
                with self._lock:
                    self.events.append((time.monotonic(), outcome if outcome in ("200", "503") else "failed"))
                if outcome == "503":
                    time.sleep(0.2)

    def first_ok_after(self, moment: float) -> float | None:
        with self._lock:
            return next((at for at, outcome in self.events if at > moment and outcome == "200"), None)

    def recovered_after(self, killed: float, settled: float) -> float | None:
        """The first success after the last refusal between `killed` and `settled`: an answer that was already on
        its way when the backend died does not count as recovery."""
        with self._lock:
            refused = [at for at, outcome in self.events if killed < at <= settled and outcome != "200"]
        return self.first_ok_after(max(refused, default=killed))

    def outcomes(self, start: float, end: float) -> dict[str, int]:
        with self._lock:
            return dict(Counter(outcome for at, outcome in self.events if start < at <= end))


def state(state_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((state_dir / "serve" / "serving.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def wait(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} within {seconds:.0f} s")


def backend_tree(state_dir: Path) -> list[psutil.Process]:
    server = psutil.Process(state(state_dir)["backend_pid"])
    return [server, *server.children(recursive=True)]


def is_worker(process: psutil.Process) -> bool:
    try:
        return any("_bentoml_impl.worker" in part for part in process.cmdline())
    except psutil.Error:  # gone, or a killed worker its server has not reaped yet
        return False


def measure(state_dir: Path, workers: int, kills: int) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {
        **os.environ,
        "CICLO_STATE_DIR": str(state_dir),
        "CICLO_SPEC_PATH": str(ROOT / "cicloml.yaml"),
        "BENTOML_HOME": str(state_dir / "bentoml"),
    }
    command = [sys.executable, "-m", "cicloml", "serve", "--port", str(port), "--workers", str(workers)]
    log_path = state_dir / f"serve-{workers}w.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    result: dict[str, Any] = {"workers": workers, "whole_backend": [], "one_worker": []}
    try:
        wait(lambda: state(state_dir).get("status") == "serving", START_SECONDS, "nothing was served")
        wait(lambda: len(backend_tree(state_dir)) > workers, 60, "the workers did not start")
        with Traffic(url) as traffic:
            wait(lambda: traffic.first_ok_after(0) is not None, 60, "no answer")
            time.sleep(2)
            restarts = state(state_dir).get("restarts", 0)
            for kill in range(kills):
                for member in backend_tree(state_dir):
                    member.send_signal(signal.SIGKILL)
                killed = time.monotonic()
                expected = restarts + kill + 1
                wait(lambda n=expected: state(state_dir).get("restarts") == n, RECOVERY_SECONDS, "no restart")
                time.sleep(3)  # answers from the new backend, to tell recovery from answers already under way
                back = traffic.recovered_after(killed, time.monotonic())
                assert back is not None
                outcome = {"seconds": round(back - killed, 2), **traffic.outcomes(killed, back)}
                log(f"{workers} worker(s), kill {kill + 1}: whole backend back in {outcome}")
                result["whole_backend"].append(outcome)
                wait(lambda: len(backend_tree(state_dir)) > workers, 60, "the workers did not start")
                time.sleep(2)
            if workers > 1:
                for kill in range(kills):
                    worker = next(member for member in backend_tree(state_dir) if is_worker(member))
                    worker.send_signal(signal.SIGKILL)
                    killed = time.monotonic()
                    wait(lambda t=killed: traffic.first_ok_after(t) is not None, RECOVERY_SECONDS, "no answer")
                    time.sleep(5)  # the window in which the lost worker's share of connections is re-made
                    back = traffic.recovered_after(killed, killed + 5)
                    assert back is not None
                    outcome = {"seconds": round(back - killed, 2), **traffic.outcomes(killed, killed + 5)}
                    log(f"{workers} workers, kill {kill + 1}: one worker killed: {outcome}")
                    result["one_worker"].append(outcome)
                    wait(lambda: len(backend_tree(state_dir)) > workers, 60, "the worker did not come back")
    finally:
        process.terminate()
        process.wait(timeout=90)
    seconds = [kill["seconds"] for kill in result["whole_backend"]]
    result["whole_backend_median_seconds"] = round(statistics.median(seconds), 2) if seconds else None
    result["whole_backend_failed_requests"] = sum(kill.get("failed", 0) for kill in result["whole_backend"])
    result["whole_backend_503s"] = sum(kill.get("503", 0) for kill in result["whole_backend"])
    if result["one_worker"]:
        result["one_worker_median_seconds"] = round(statistics.median(k["seconds"] for k in result["one_worker"]), 2)
        result["one_worker_failed_requests"] = sum(kill.get("failed", 0) for kill in result["one_worker"])
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5, help="kills per configuration")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--keep", action="store_true", help="keep the temporary state folder (and the logs)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-supervision-"))
    try:
        os.environ.update(CICLO_STATE_DIR=str(workdir), CICLO_SPEC_PATH=str(ROOT / "cicloml.yaml"))
        get_settings.cache_clear()
        from tests.service.state import build_served_state  # imports pytest; only needed here

        build_served_state(get_settings(), datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0))
        results = [measure(workdir, workers, args.kills) for workers in args.workers]
        print(json.dumps({"runs": results, "cpus": os.cpu_count(), "kills": args.kills}, indent=2))
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
