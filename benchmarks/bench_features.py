"""Feature-store benchmark: materialization throughput and online lookup latency, SQLite and Redis side by side.

What it measures, in one run, on the seeded churn demo (`cicloml.demo.churn`, `--entities` customers x 2 days):

1. Materialization: `cicloml.feature_store.materialize` loading every online view of the Feast repo in `features/`
   into a fresh SQLite online store and into a fresh Redis (a private `redis-server` started for the run).
   Throughput is entity rows written (`MaterializeReport.rows`, summed over views) per `MaterializeReport.seconds`.
   Baseline: Feast's own `FeatureStore.materialize(start, end)` into the same SQLite configuration, on a fresh state
   folder, for the same data and window. That configuration selects cicloml's `MonotonicSqliteOnlineStore`, so Feast's
   materialize writes through the same store plugin: the ratio compares the pipelines around the write.
2. Online lookups: `OnlineFeatureReader(store, <feature service>).fetch(ids)` for 1 and for 50 random known entities,
   in process, after a warm-up. Baseline: Feast's `get_online_features(...).to_dict()` for the same ids, timed
   interleaved with ours, so the cost of cicloml's unknown/missing/stale checks shows as a ratio.

Every store lives in its own temporary state folder (`CICLO_STATE_DIR`), removed at the end with the Redis server.
A small untimed warm-up materialization comes first so that no timed run pays for first-use imports.

The result is one JSON object on stdout (measurements, targets, whether each target is met, versions, CPU count);
progress goes to stderr. Nothing here asserts on timings.

    python benchmarks/bench_features.py                       # 100k entities, 2000 single / 500 batch lookups
    python benchmarks/bench_features.py --entities 10000 --lookups 500
"""

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from feast import FeatureService, FeatureStore

from cicloml.contract import FeatureContract
from cicloml.demo.churn import DemoTables, generate_churn_data
from cicloml.feature_store import OnlineFeatureReader, apply_repo, materialize, open_store
from cicloml.settings import Settings, get_settings
from cicloml.spec import ProjectSpec, load_spec

ROOT = Path(__file__).resolve().parents[1]
DAYS = 2
BATCH = 50
WARMUP_ENTITIES = 500
TARGETS = {"sqlite_rows_per_s": 5000.0, "redis_rows_per_s": 10000.0, "sqlite_single_lookup_p99_ms": 1.0}

OnlineStore = Literal["sqlite", "redis"]


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- command line -----------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Benchmark cicloml's feature store: materialization throughput (rows/s) into SQLite and Redis, with "
            "Feast's own materialize as a baseline, and online lookup latency p50/p99 for 1 and 50 entities, "
            "with raw Feast get_online_features as a baseline. Prints one JSON object on stdout; progress on stderr."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--entities", type=int, default=100_000, help="customers in the demo data (x 2 days)")
    parser.add_argument(
        "--lookups", type=int, default=2000, help=f"timed single-entity lookups per store; {BATCH}-entity: a quarter"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed for the demo data and the looked-up ids")
    parser.add_argument("--spec", type=Path, default=ROOT / "cicloml.yaml", help="the project spec")
    parser.add_argument("--redis-server", default="redis-server", help="the redis-server executable")
    args = parser.parse_args(argv)
    if args.entities < BATCH or args.lookups < 4:
        parser.error(f"--entities must be at least {BATCH} and --lookups at least 4")
    return args


# --- data and stores --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Demo:
    """The demo tables and a materialization window that holds all of them."""

    tables: DemoTables
    start: datetime
    end: datetime

    @classmethod
    def generate(cls, entities: int, seed: int) -> "Demo":
        """End at the next UTC midnight, so every value is within its view's TTL while the benchmark runs."""
        end = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        tables = generate_churn_data(end, customers=entities, days=DAYS, seed=seed)
        earliest = min(tables.customers["event_timestamp"].min(), tables.activity["event_timestamp"].min())
        return cls(tables=tables, start=pd.Timestamp(earliest).floor("D").to_pydatetime(), end=end)

    @property
    def known_ids(self) -> list[int]:
        return sorted(int(entity) for entity in self.tables.activity["customer_id"].unique())


@dataclass(frozen=True)
class Workspace:
    """The run's temporary folder: one state folder per store, all using the same project spec."""

    root: Path
    spec: ProjectSpec
    spec_path: Path

    def fresh_store(self, name: str, demo: Demo, online_store: OnlineStore, redis_url: str = "") -> FeatureStore:
        """Write the demo tables under a new state folder, open the Feast repo there and apply it."""
        settings = self._use_settings(self.root / name, online_store, redis_url)
        demo.tables.write(settings.data_dir)
        repo = self.spec.features.repo
        store = open_store(repo if repo.is_absolute() else self.spec_path.parent / repo, settings)
        apply_repo(store)
        return store

    def online_rows(self, name: str) -> int:
        """Entity rows in a SQLite online store (Feast keeps a row per entity and feature: count distinct keys)."""
        with contextlib.closing(sqlite3.connect(self.root / name / "feast" / "online.db")) as connection:
            tables = [table for (table,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            counts = [connection.execute(f'SELECT COUNT(DISTINCT entity_key) FROM "{t}"').fetchone()[0] for t in tables]
            return sum(counts)

    def _use_settings(self, state_dir: Path, online_store: OnlineStore, redis_url: str) -> Settings:
        """Point cicloml (and the Feast repo's data sources, read at import) at `state_dir` via `CICLO_*`."""
        os.environ.update(
            CICLO_STATE_DIR=str(state_dir),
            CICLO_ONLINE_STORE=online_store,
            CICLO_REDIS_URL=redis_url,
            CICLO_SPEC_PATH=str(self.spec_path),
        )
        get_settings.cache_clear()
        return get_settings()


@contextlib.contextmanager
def redis_server(executable: str, workdir: Path) -> Iterator[str]:
    """A throwaway, non-persistent redis-server on a free 127.0.0.1 port; yields its Feast connection string."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen([*command, "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, process)
        log(f"redis-server (pid {process.pid}) listening on 127.0.0.1:{port}")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: "subprocess.Popen[bytes]", timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"redis-server exited with status {process.returncode}: {error}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not accept connections on port {port} within {timeout}s")


# --- materialization --------------------------------------------------------------------------------------------


def materialize_ours(store: FeatureStore, demo: Demo) -> dict[str, Any]:
    began = time.perf_counter()
    report = materialize(store, demo.end, start=demo.start)
    wall = time.perf_counter() - began
    return {
        "rows": report.rows,
        "rows_by_view": {view.view: view.rows for view in report.views},
        "seconds": round(report.seconds, 3),
        "wall_seconds": round(wall, 3),
        "rows_per_s": round(report.rows / report.seconds, 1),
    }


def materialize_feast(store: FeatureStore, demo: Demo) -> float:
    """Wall seconds of Feast's own materialize (it reports no row count)."""
    return timed(lambda: store.materialize(demo.start, demo.end))


def feast_baseline(seconds: float, rows: int, online_rows: int) -> dict[str, Any]:
    """Feast loaded the same data and window as ours, so it wrote as many rows; `online_rows` checks that."""
    return {
        "rows": rows,
        "wall_seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds, 1),
        "online_rows": online_rows,
    }


def warm_up(workspace: Workspace, seed: int) -> None:
    """Untimed small runs of both materialize paths, so first-use imports and caches are paid before timing."""
    demo = Demo.generate(WARMUP_ENTITIES, seed)
    materialize_ours(workspace.fresh_store("warmup-ours", demo, "sqlite"), demo)
    materialize_feast(workspace.fresh_store("warmup-feast", demo, "sqlite"), demo)


# --- online lookups ---------------------------------------------------------------------------------------------


def benchmark_lookups(reader: OnlineFeatureReader, known_ids: Sequence[int], lookups: int, seed: int) -> dict[str, Any]:
    """Latency for 1-entity and BATCH-entity lookups, ours against raw Feast, after a warm-up of each size.

    The warm-up's entity statuses are reported too: all should be found ("ok", or "missing_values" for the demo's
    deliberate gaps); "unknown_entity" or "stale_values" would mean the store was not loaded as intended.
    """
    rng = random.Random(seed)
    results: dict[str, Any] = {}
    for size, count in ((1, lookups), (BATCH, max(1, lookups // 4))):
        warmup = [rng.sample(known_ids, size) for _ in range(max(20, count // 10))]
        statuses = Counter(status for ids in warmup for status in reader.fetch(ids).statuses)
        ours, feast = lookup_latencies(reader, [rng.sample(known_ids, size) for _ in range(count)])
        ours_summary, feast_summary = summarize(ours), summarize(feast)
        results[f"{size}_entities"] = {
            "ours": ours_summary,
            "feast": feast_summary,
            "ours_over_feast_p50": round(ours_summary["p50_ms"] / feast_summary["p50_ms"], 3),
            "ours_over_feast_p99": round(ours_summary["p99_ms"] / feast_summary["p99_ms"], 3),
            "warmup_statuses": dict(sorted(statuses.items())),
        }
    return results


def lookup_latencies(reader: OnlineFeatureReader, id_sets: list[list[int]]) -> tuple[list[float], list[float]]:
    """Time `reader.fetch` and the raw Feast lookup per id set, interleaved so both see the same load (seconds)."""
    ours: list[float] = []
    feast: list[float] = []
    service = reader.store.get_feature_service(reader.contract.service)  # resolved once, as the reader resolves it
    for ids in id_sets:
        ours.append(timed(partial(reader.fetch, ids)))
        feast.append(timed(partial(raw_feast_lookup, reader, service, ids)))
    return ours, feast


def raw_feast_lookup(reader: OnlineFeatureReader, service: FeatureService, ids: Sequence[int]) -> dict[str, Any]:
    """What a plain Feast client does for the same service and ids: no unknown/missing/stale checks."""
    (join_key,) = reader.join_keys
    return reader.store.get_online_features(features=service, entity_rows=[{join_key: e} for e in ids]).to_dict()


def timed(call: Callable[[], Any]) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def summarize(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000.0
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "mean_ms": round(float(ms.mean()), 4),
        "max_ms": round(float(ms.max()), 4),
    }


# --- the run ----------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    spec_path = args.spec.resolve()
    workspace = Workspace(root=workdir, spec=load_spec(spec_path), spec_path=spec_path)
    log(f"warm-up: materializing {WARMUP_ENTITIES} entities (untimed)")
    warm_up(workspace, args.seed)

    log(f"generating demo data: {args.entities} customers x {DAYS} days")
    demo = Demo.generate(args.entities, args.seed)
    log("sqlite: Feast's own materialize (baseline)")
    feast_seconds = materialize_feast(workspace.fresh_store("feast-sqlite", demo, "sqlite"), demo)
    sqlite_materialization, sqlite_lookups = bench_store(workspace, demo, args, "sqlite")
    with redis_server(args.redis_server, workdir / "redis") as redis_url:
        redis_materialization, redis_lookups = bench_store(workspace, demo, args, "redis", redis_url)

    sqlite_materialization["online_rows"] = workspace.online_rows("sqlite")
    baseline = feast_baseline(feast_seconds, sqlite_materialization["rows"], workspace.online_rows("feast-sqlite"))
    materialization = {
        "sqlite": sqlite_materialization,
        "redis": redis_materialization,
        "feast_sqlite_baseline": baseline,
        "sqlite_ours_over_feast_rows_per_s": round(sqlite_materialization["rows_per_s"] / baseline["rows_per_s"], 3),
    }
    lookups = {"sqlite": sqlite_lookups, "redis": redis_lookups}
    return {
        "benchmark": "cicloml feature store",
        "config": run_config(args, demo, workspace.spec),
        "materialization": materialization,
        "lookups": lookups,
        "targets": TARGETS,
        "meets_targets": meets_targets(materialization, lookups),
        "environment": environment(),
    }


def bench_store(
    workspace: Workspace, demo: Demo, args: argparse.Namespace, online_store: OnlineStore, redis_url: str = ""
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Materialize the demo into a fresh store of the given kind, then time lookups against it."""
    store = workspace.fresh_store(online_store, demo, online_store, redis_url)
    log(f"{online_store}: cicloml materialize")
    materialization = materialize_ours(store, demo)
    log(f"{online_store}: {materialization['rows_per_s']:.0f} rows/s; timing lookups")
    reader = OnlineFeatureReader(store, FeatureContract.resolve(store, workspace.spec.features.feature_service))
    return materialization, benchmark_lookups(reader, demo.known_ids, args.lookups, args.seed)


def run_config(args: argparse.Namespace, demo: Demo, spec: ProjectSpec) -> dict[str, Any]:
    return {
        "entities": args.entities,
        "days": DAYS,
        "source_rows": {"customers": len(demo.tables.customers), "activity": len(demo.tables.activity)},
        "window": {"start": demo.start.isoformat(), "end": demo.end.isoformat()},
        "feature_service": spec.features.feature_service,
        "single_lookups": args.lookups,
        "batch_lookups": max(1, args.lookups // 4),
        "batch_size": BATCH,
        "seed": args.seed,
    }


def meets_targets(materialization: dict[str, Any], lookups: dict[str, Any]) -> dict[str, bool]:
    measured = {
        "sqlite_rows_per_s": materialization["sqlite"]["rows_per_s"],
        "redis_rows_per_s": materialization["redis"]["rows_per_s"],
        "sqlite_single_lookup_p99_ms": lookups["sqlite"]["1_entities"]["ours"]["p99_ms"],
    }
    return {
        name: (measured[name] <= target) if name.endswith("_ms") else (measured[name] >= target)
        for name, target in TARGETS.items()
    }


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "feast": version("feast"),
        "redis_py": version("redis"),
        # redis-py packs commands and parses replies in C when hiredis is installed, in Python otherwise.
        "hiredis": optional_version("hiredis"),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }


def optional_version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="cicloml-bench-"))
    try:
        # Feast prints progress on stdout; keep stdout for the JSON result alone.
        with contextlib.redirect_stdout(sys.stderr):
            result = run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
