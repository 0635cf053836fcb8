"""Operations benchmark: how long `make up` takes to a healthy stack, and how late a scheduled deployment run starts
beside a run asked for now; prints one JSON object.

Time to a healthy stack: `make up` returns once every part answers (Prefect's /api/health, the worker ONLINE in its
pool, the champion's bento ready behind `cicloml serve`), so its wall time is the measure. On a state folder with
a trained champion: cold (a fresh Prefect database, the bento not built yet) and warm (`make down`, then `make up`
again: database and bento exist). Baseline in the same run: a bare `prefect server start` until it is healthy, the
least any stack with a Prefect server takes; `ratio_*` are make up / bare server.

Scheduled-run latency (scheduled time -> running, for a 1-minute test schedule): a real Prefect server with its
scheduler on and a process worker on a work pool of the benchmark's own, started as the flow tests start them
(tests/prefect_server.py: `prefect server start` on a free 127.0.0.1 port, its home and SQLite database in a
temporary folder; `prefect worker start`). `benchmarks/tick.py:tick`, a flow that does nothing, is deployed from this
checkout with cron `* * * * *`; for each of its first N scheduled runs, latency = the run's start time (it entered
Running) - its expected start time (when it was scheduled for), both read from the API. Runs due less than
LEAD_SECONDS after the deployment was created are skipped: the worker's first sight of them would be late through no
fault of the schedule's.

Baseline, in the same run, on the same server and worker, measured first: N runs of the same flow created for now
(`create_flow_run_from_deployment`, what `prefect deployment run` and `run_deployment` do) on a second deployment with
no schedule, one at a time; latency measured the same way. `ratio_p50` is scheduled p50 / immediate p50.

Each latency is split at the run's Pending state (the worker took the run and starts its process):
`taken_s` = Pending - expected start (negative: taken before it was due), `pending_s` = start - Pending (the process
starting, and a run taken early waiting until it is due).
The worker asks for runs every `--poll-seconds` (PREFECT_WORKER_QUERY_SECONDS; default Prefect's own 10 s, as the
worker of `make up` runs) and takes those due within `--prefetch-seconds` (PREFECT_WORKER_PREFETCH_SECONDS; default
30 s, as `make up` sets it; Prefect's own is 10 s):
so a run asked for now waits for the next poll (up to one interval), then for its process to start; a scheduled run
can be taken up to the prefetch early, its process started before it is due, and the server holds it until then
(Prefect's WaitForScheduledTime rule), so its latency is only what the prefetch did not cover. It can be a fraction
of a second below zero: the server rounds that wait to whole seconds.

    python benchmarks/bench_operations.py                      # about 8 minutes (3 runs of each)
    python benchmarks/bench_operations.py --runs 5 --prefetch-seconds 10

Progress goes to stderr. Nothing here asserts on timings; they are wall-clock times on a machine others may share.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import Flow
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: import the tests' Prefect server harness

from tests.conftest import ciclo_environment, free_port  # noqa: E402
from tests.prefect_server import PrefectServer, local_prefect_server  # noqa: E402
from tests.service.state import build_served_state  # noqa: E402

POOL = "bench-operations"
TICK_ENTRYPOINT = "benchmarks/tick.py:tick"
SCHEDULE = "* * * * *"
LEAD_SECONDS = 30
RUN_SECONDS = 300  # upper bounds on waiting, never measured: a flow run imports Prefect on 2 busy cores
WORKER_SECONDS = 180


def log(message: str) -> None:
    print(f"[bench_operations] {message}", file=sys.stderr, flush=True)


@contextmanager
def prefect_with_worker(work_dir: Path, poll_seconds: float, prefetch_seconds: float) -> Iterator[PrefectServer]:
    """A Prefect server with its scheduler on and one process worker on POOL, online; both stopped afterwards."""
    with local_prefect_server(work_dir, scheduler=True) as server:
        server.create_process_pool(POOL)
        worker_env = {
            "PREFECT_WORKER_QUERY_SECONDS": str(poll_seconds),
            "PREFECT_WORKER_PREFETCH_SECONDS": str(prefetch_seconds),
        }
        with server.worker(POOL, worker_env):
            server.wait_for("an online worker", lambda: worker_online(server), WORKER_SECONDS)
            yield server


def worker_online(server: PrefectServer) -> bool:
    with server.client() as client:
        return any(worker.status == "ONLINE" for worker in client.read_workers_for_work_pool(POOL))


def deploy_tick(server: PrefectServer, name: str, cron: str | None = None) -> UUID:
    """Deploy the do-nothing flow from this checkout to POOL."""
    # Prefect prints a table of what it deployed: stdout is for the JSON.
    with server.connected(), redirect_stdout(sys.stderr):
        tick = Flow.from_source(str(ROOT), TICK_ENTRYPOINT)
        return tick.deploy(name, work_pool_name=POOL, cron=cron, print_next_steps=False, ignore_warnings=True)


def measure_immediate_runs(server: PrefectServer, runs: int) -> dict[str, Any]:
    """Latency of runs created for now, one at a time (each finished before the next is asked for)."""
    deployment_id = deploy_tick(server, "now")
    timings = []
    for number in range(runs):
        with server.client() as client:
            run_id = client.create_flow_run_from_deployment(deployment_id).id
        server.wait_for(
            f"immediate run {number + 1} finished", lambda run_id=run_id: finished(server, [run_id]), RUN_SECONDS
        )
        timings.append(run_timing(server, run_id))
        log(f"immediate run {number + 1}/{runs}: {timings[-1]['latency_s']:.2f} s")
    return summarize(timings)


def measure_scheduled_runs(server: PrefectServer, runs: int) -> dict[str, Any]:
    """Latency of the first `runs` runs the scheduler creates for a `* * * * *` deployment (after LEAD_SECONDS)."""
    deployed_at = datetime.now(timezone.utc)
    deployment_id = deploy_tick(server, "every-minute", cron=SCHEDULE)
    earliest = deployed_at + timedelta(seconds=LEAD_SECONDS)

    def counted() -> list[UUID]:
        with server.client() as client:
            found = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            )
        due = sorted((run for run in found if run.expected_start_time >= earliest), key=lambda r: r.expected_start_time)
        return [run.id for run in due[:runs]] if len(due) >= runs else []

    run_ids = server.wait_for("the scheduled runs", counted, RUN_SECONDS)
    log(f"waiting for {runs} scheduled runs, one a minute")
    server.wait_for("the scheduled runs finished", lambda: finished(server, run_ids), (runs + 2) * 60 + RUN_SECONDS)
    timings = [run_timing(server, run_id) for run_id in run_ids]
    for number, timing in enumerate(timings, 1):
        log(f"scheduled run {number}/{runs}: {timing['latency_s']:.2f} s")
    return {"schedule": f"cron {SCHEDULE}", "skipped_runs_due_within_s": LEAD_SECONDS, **summarize(timings)}


def finished(server: PrefectServer, run_ids: list[UUID]) -> bool:
    with server.client() as client:
        states = [client.read_flow_run(run_id).state for run_id in run_ids]
    return all(state is not None and state.is_final() for state in states)


def run_timing(server: PrefectServer, run_id: UUID) -> dict[str, Any]:
    """When a finished run was due, taken by the worker (Pending) and started (Running), relative to when it was due."""
    with server.client() as client:
        run = client.read_flow_run(run_id)
        states = client.read_flow_run_states(run_id)
    if run.start_time is None:
        raise RuntimeError(f"flow run {run_id} ended {run.state_name} without running\n{server.logs()}")
    pending = next(state.timestamp for state in states if state.is_pending())
    expected = run.expected_start_time
    return {
        "expected_start": expected.isoformat(),
        "latency_s": (run.start_time - expected).total_seconds(),
        "taken_s": (pending - expected).total_seconds(),
        "pending_s": (run.start_time - pending).total_seconds(),
        "final_state": run.state_name,
    }


def summarize(timings: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [timing["latency_s"] for timing in timings]
    return {"runs": timings, "p50_s": statistics.median(latencies), "max_s": max(latencies)}


def measure_make_up(work_dir: Path) -> dict[str, Any]:
    """Wall time of `make up` (cold, then warm) on a state folder with a champion, beside a bare Prefect server."""
    with ciclo_environment(work_dir / "state") as settings:
        log("building a state folder with a champion")
        build_served_state(settings, datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0))
        env = {
            **os.environ,
            "CICLO_STATE_DIR": str(settings.state_dir),
            "CICLO_SPEC_PATH": str(settings.spec_path),
            "CICLO_PREFECT_PORT": str(free_port()),
            "CICLO_SERVE_PORT": str(free_port()),
            "PREFECT_HOME": str(work_dir / "prefect"),
        }
    started = time.perf_counter()
    with local_prefect_server(work_dir / "bare") as server:
        server.wait_until_healthy()
        bare = time.perf_counter() - started
    log(f"bare Prefect server healthy in {bare:.1f} s")
    timings = {}
    for attempt in ("cold", "warm"):
        started = time.perf_counter()
        try:
            make("up", env)
            timings[attempt] = time.perf_counter() - started
        finally:
            make("down", env)
        log(f"make up ({attempt}) healthy in {timings[attempt]:.1f} s")
    return {
        "bare_prefect_server_s": bare,
        "make_up_cold_s": timings["cold"],
        "make_up_warm_s": timings["warm"],
        "ratio_cold": timings["cold"] / bare,
        "ratio_warm": timings["warm"] / bare,
    }


def make(target: str, env: dict[str, str]) -> None:
    done = subprocess.run(["make", "-s", target], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"make {target} exited with {done.returncode}:\n{done.stdout}{done.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="scheduled runs, and immediate runs, to time (default 3)")
    parser.add_argument(
        "--poll-seconds", type=float, default=10.0, help="the worker's PREFECT_WORKER_QUERY_SECONDS (default 10)"
    )
    parser.add_argument(
        "--prefetch-seconds", type=float, default=30.0, help="the worker's PREFECT_WORKER_PREFETCH_SECONDS (default 30)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-operations-") as folder:
        stack = measure_make_up(Path(folder) / "stack")
        log("starting a Prefect server (scheduler on) and a process worker")
        with prefect_with_worker(Path(folder), args.poll_seconds, args.prefetch_seconds) as server:
            immediate = measure_immediate_runs(server, args.runs)
            scheduled = measure_scheduled_runs(server, args.runs)
    print(
        json.dumps(
            {
                "benchmark": "cicloml operations",
                "make_up_to_healthy": stack,
                "scheduled_run_latency": scheduled,
                "immediate_run_latency": immediate,
                "ratio_p50": scheduled["p50_s"] / immediate["p50_s"],
                "worker": {"query_seconds": args.poll_seconds, "prefetch_seconds": args.prefetch_seconds},
                "environment": {"cpu_count": os.cpu_count(), "python": sys.version.split()[0]},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
