"""The drift flow over 20 model versions on the Dask task runner against threads, same run; prints one JSON object.

Setup, untimed: the seeded demo world (2,000 customers, 90 days) is materialized and a champion trained, both through
their flows; 19 copies of it are registered (the same pipeline and reference, new versions: what a registry holds
after retrainings on unchanged data), and every version gets two windows of served traffic written by two
`TrafficProfiler` workers as the service writes them: a first window (the skew check) and the checked window, where
every other version's traffic is drifted (`price_rise`).

Timed: the `detect-drift-all` flow over the checked window (load each version's reference, merge its window's worker
files, compare, write the HTML report; then the alert and retraining request per drifted version, which stay in the
flow's process), one flow run per configuration and round, the configurations alternated within each round:
- `threads`: the default task runner (CICLO_TASK_RUNNER=threads), the checks mapped over threads in the flow's
  process. This is the baseline.
- `dask_cluster`: CICLO_TASK_RUNNER=dask with CICLO_DASK_ADDRESS pointing at a running `distributed.LocalCluster`
  (one single-threaded worker process per core on 127.0.0.1, started once and warmed by an untimed run), as a
  deployment would use a standing cluster.
- `dask_temporary`: CICLO_TASK_RUNNER=dask with no address: each flow run starts its own local cluster of worker
  processes and stops it, so the time includes starting the workers and their imports.
Also reported: `plain_loop`, the same checks called one after another without Prefect (`cicloml.monitoring`), for
the orchestration's share. Ratios are the baseline's median over each configuration's median (above 1: faster than
threads). Every configuration's per-version verdicts are compared with the baseline's. One temporary Prefect server
(PREFECT_API_URL) serves every run, as a deployment's server would.

    python benchmarks/bench_dask.py [--models 20] [--rounds 3] [--customers 2000] [--workers N]

Progress goes to stderr. On 2 cores the checks are CPU-bound in both, so the best Dask can do is about the core
count; other work on the machine moves the numbers (see `environment.load_average_*`).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
END = datetime(2026, 11, 1, 6, tzinfo=timezone.utc)
FIRST, CHECKED = END + timedelta(hours=1), END + timedelta(hours=2)
CONFIGURATIONS = ("threads", "dask_cluster", "dask_temporary")


def log(message: str) -> None:
    print(f"[bench_dask] {message}", file=sys.stderr, flush=True)


@contextmanager
def environment(**variables: str | None) -> Iterator[None]:
    """Set (or, with None, unset) environment variables for the duration, with cicloml's settings re-read."""
    from cicloml.settings import get_settings

    def apply(values: dict[str, str | None]) -> None:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()

    previous = {name: os.environ.get(name) for name in variables}
    apply(variables)
    try:
        yield
    finally:
        apply(previous)


@contextmanager
def prefect_server() -> Iterator[None]:
    """One temporary Prefect server for the flow runs and every Dask worker, as deployments have one
    (PREFECT_API_URL): without it each worker process would start a temporary server of its own."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = SubprocessASGIServer()
    server.start()
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield
    finally:
        server.stop()


def build_world(models: int, customers: int) -> list[str]:
    """A champion and `models - 1` copies of it, each with traffic in FIRST and CHECKED; their tags."""
    from cicloml.demo.churn import generate_churn_data, generate_traffic, served_features
    from cicloml.models.row_scorer import row_scoring
    from cicloml.registry import ModelRegistry
    from cicloml.settings import get_settings
    from cicloml.traffic import TrafficProfiler
    from flows.local import run_locally
    from flows.materialize_features import MaterializeParams, materialize_features
    from flows.train import TrainParams, train

    days = 90
    run_locally(
        materialize_features,
        MaterializeParams(end=END, generate_demo_data=True, demo_customers=customers, demo_days=days),
    )
    champion = run_locally(train, TrainParams(as_of=END)).tag
    settings = get_settings()
    registry = ModelRegistry(settings, "churn")
    model = registry.load(champion)
    reference = model.reference_profile()
    tags = [champion] + [registry.register(model.pipeline, model.lineage, reference, {}) for _ in range(models - 1)]

    history = generate_churn_data(END, customers=customers, days=days, seed=7)
    schema = model.lineage.features
    scorer = row_scoring(model.pipeline, schema)
    windows = {}
    for window_start, scenario in ((FIRST, "none"), (CHECKED, "none"), (CHECKED, "price_rise")):
        features = served_features(history, generate_traffic(history, window_start, scenario=scenario))
        columns = {name: features[name].tolist() for name in schema.features}
        windows[window_start, scenario] = (columns, scorer(columns).tolist())
    for number, tag in enumerate(tags):
        checked = "price_rise" if number % 2 else "none"
        for window_start, scenario in ((FIRST, "none"), (CHECKED, checked)):
            columns, scores = windows[window_start, scenario]
            half = len(scores) // 2
            for worker, rows in (("worker-a", slice(0, half)), ("worker-b", slice(half, None))):
                profiler = TrafficProfiler(
                    settings.profiles_dir,
                    tag,
                    worker,
                    buffer_rows=len(scores),
                    clock=lambda start=window_start: start.timestamp() + 60,
                )
                profiler.record({name: values[rows] for name, values in columns.items()}, scores[rows])
                profiler.close()
    return tags


def run_flow() -> tuple[float, list[dict[str, Any]]]:
    """One detect-drift-all run over the checked window: its wall time and each version's verdict."""
    from flows.detect_drift import DetectDriftAllParams, detect_drift_all
    from flows.local import run_locally

    began = time.perf_counter()
    result = run_locally(detect_drift_all, DetectDriftAllParams(window_start=CHECKED, retrain_in_process=False))
    seconds = time.perf_counter() - began
    return seconds, [verdict(item.model_tag, item.drifted, item.drifted_features) for item in result.results]


def run_plain_loop(tags: list[str]) -> tuple[float, list[dict[str, Any]]]:
    """The same checks one after another, without Prefect."""
    from cicloml.monitoring import check_window
    from cicloml.settings import get_settings
    from cicloml.spec import load_spec

    settings = get_settings()
    spec = load_spec(settings.spec_path)
    began = time.perf_counter()
    checks = [check_window(settings, spec, tag, CHECKED, now=datetime.now(timezone.utc)) for tag in sorted(tags)]
    seconds = time.perf_counter() - began
    return seconds, [
        verdict(check.report.model_tag, check.report.drifted, check.report.drifted_features) for check in checks
    ]


def verdict(model_tag: str, drifted: bool, features: list[str]) -> dict[str, Any]:
    return {"model_tag": model_tag, "drifted": drifted, "drifted_features": features}


def summarize(times: list[float]) -> dict[str, Any]:
    return {"median_s": round(statistics.median(times), 3), "runs_s": [round(value, 3) for value in times]}


def measure(tags: list[str], rounds: int, workers: int) -> dict[str, Any]:
    from distributed import LocalCluster

    with LocalCluster(
        host="127.0.0.1", n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        settings_for: dict[str, dict[str, str | None]] = {
            "threads": {"CICLO_TASK_RUNNER": "threads", "CICLO_DASK_ADDRESS": None},
            "dask_cluster": {"CICLO_TASK_RUNNER": "dask", "CICLO_DASK_ADDRESS": cluster.scheduler_address},
            "dask_temporary": {"CICLO_TASK_RUNNER": "dask", "CICLO_DASK_ADDRESS": None},
        }
        times: dict[str, list[float]] = {name: [] for name in (*CONFIGURATIONS, "plain_loop")}
        verdicts: dict[str, list[dict[str, Any]]] = {}
        log("warming up: one untimed run on threads and one on the running cluster (its workers import cicloml)")
        for name in ("threads", "dask_cluster"):
            with environment(**settings_for[name]):
                run_flow()
        for number in range(1, rounds + 1):
            for name in CONFIGURATIONS:
                with environment(**settings_for[name]):
                    seconds, verdicts[name] = run_flow()
                times[name].append(seconds)
                log(f"round {number}/{rounds}: {name} {seconds:.2f} s")
            seconds, verdicts["plain_loop"] = run_plain_loop(tags)
            times["plain_loop"].append(seconds)
            log(f"round {number}/{rounds}: plain_loop {seconds:.2f} s")
    baseline = statistics.median(times["threads"])
    return {
        "seconds": {name: summarize(values) for name, values in times.items()},
        "ratio_threads_over": {
            name: round(baseline / statistics.median(values), 3) for name, values in times.items() if name != "threads"
        },
        "same_verdicts_as_threads": {name: verdicts[name] == verdicts["threads"] for name in verdicts},
        "drifted_versions": sum(item["drifted"] for item in verdicts["threads"]),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=20, help="model versions with traffic in the window (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs per configuration (default 3)")
    parser.add_argument("--customers", type=int, default=2000, help="demo customers: rows per window (default 2000)")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes of the running cluster (default: cores)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    began = time.monotonic()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as folder:
        with environment(CICLO_STATE_DIR=folder, CICLO_SPEC_PATH=str(ROOT / "cicloml.yaml")), prefect_server():
            log(f"building {args.models} model versions with traffic ({args.customers} rows per window)")
            tags = build_world(args.models, args.customers)
            results = measure(tags, args.rounds, args.workers)
    output = {
        "benchmark": "detect-drift-all over many model versions: Dask task runner vs threads",
        "config": {
            "models": args.models,
            "rows_per_window": args.customers,
            "rounds": args.rounds,
            "cluster_workers": args.workers,
            "baseline": "threads (CICLO_TASK_RUNNER=threads, the default)",
        },
        **results,
        "wall_seconds": round(time.monotonic() - began, 1),
        "environment": {
            "cpu_count": os.cpu_count(),
            "load_average_at_start": round(load, 2),
            "load_average_at_end": round(os.getloadavg()[0], 2),
            "python": sys.version.split()[0],
            "prefect": version("prefect"),
            "prefect_dask": version("prefect-dask"),
            "distributed": version("distributed"),
        },
    }
    print(json.dumps(output, indent=2))


if __name__ == "__main__":
    main()
