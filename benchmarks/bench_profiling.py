"""The cost of profiling live traffic: the bento's /predict with whylogs traffic profiling on and off, same run.

Each round starts the bento twice on one state folder, with CICLO_PROFILE_TRAFFIC=false and =true (in that order,
then the other way round in the next round, so neither always runs on a warmer machine), and loads /predict with
wrk at 16 connections. Reports req/s and p99 per run and the ratios of the medians; targets: throughput with
profiling >= 0.9x without, p99 <= 1.2x. Uses benchmarks/bench_serve.py's servers and wrk runs.

Before the servers, `flush_path` measures the profiler's own work in process, which a shared machine disturbs far
less than a wrk run: the CPU time (thread time) its flush takes per 1,000 rows, the rows being the state's online
feature vectors recorded one per request as /predict records them, at the batch sizes a 1-s flush sees at 100, 300
and 1,500 requests/s, and how long one flush holds the thread (wall time: the GIL is the requests' too).

With `--compare segments` the two servers both profile and log predictions, and differ in how often each worker
writes its records (`CICLO_PROFILE_SEGMENT_SECONDS`): every second ("on", the worst case: a crash loses at most a
second) against every 60 s ("off", the default: a minute). Target: throughput >= 0.95x.

    python benchmarks/bench_profiling.py [--rounds 2] [--workers 1] [--flush-only] [--compare profiling|segments]
"""

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_serve  # noqa: E402  (the serving benchmark's servers and wrk runs; puts the project on sys.path)

from cicloml.traffic import TrafficProfiler  # noqa: E402

TARGETS = {"rps_with_over_without_min": 0.9, "p99_with_over_without_max": 1.2}
SEGMENT_TARGETS = {"rps_with_over_without_min": 0.95, "p99_with_over_without_max": 1.2}
VARIANTS = {
    "profiling": {"off": "CICLO_PROFILE_TRAFFIC=false", "on": "CICLO_PROFILE_TRAFFIC=true"},
    "segments": {"off": "CICLO_PROFILE_SEGMENT_SECONDS=60", "on": "CICLO_PROFILE_SEGMENT_SECONDS=1"},
}
"""What each comparison switches between its two servers."""
FLUSH_BATCHES = (100, 300, 1500)
"""Rows per flush: a second of /predict traffic (one row per request) at 100, 300 and 1,500 requests/s."""
FLUSH_ROUNDS = 20


def flush_path(state: bench_serve.ServedState, workdir: Path) -> dict[str, Any]:
    """The profiler thread's CPU per 1,000 rows and wall time per flush, per batch size (min and median of rounds)."""
    chooser = random.Random(0)
    results = {}
    for batch in FLUSH_BATCHES:
        # One row per request, as /predict hands them over: one single-value list per feature, and its score.
        requests = [
            ({name: [value] for name, value in chooser.choice(state.feature_rows).items()}, [chooser.random()])
            for _ in range(batch)
        ]
        profiler = TrafficProfiler(workdir / "flush-path", state.model_tag, f"bench-{batch}", clock=lambda: 0.0)
        cpu_ms, wall_ms = [], []
        for _ in range(FLUSH_ROUNDS + 1):  # the first round warms up
            for columns, scores in requests:
                profiler.record(columns, scores)
            began, began_cpu = time.perf_counter(), time.thread_time()
            profiler.flush()
            cpu_ms.append((time.thread_time() - began_cpu) * 1000)
            wall_ms.append((time.perf_counter() - began) * 1000)
        profiler.close()
        results[f"{batch}_rows"] = {
            "cpu_ms_per_1000_rows": spread([ms * 1000 / batch for ms in cpu_ms[1:]]),
            "wall_ms_per_flush": spread(wall_ms[1:]),
        }
        bench_serve.log(f"flush path, {batch} rows per flush: {results[f'{batch}_rows']}")
    return results


def spread(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 2), "median": round(statistics.median(values), 2)}


def run(rounds: int, workers: int, workdir: Path, *, flush_only: bool, compare: str = "profiling") -> dict[str, Any]:
    args = bench_serve.parse_args(["--workers", str(workers)])
    bench_serve.log(f"building the state folder: {args.customers} customers")
    state = bench_serve.build_state(workdir / "state", args.customers)
    flush = flush_path(state, workdir)
    if flush_only:
        return {"benchmark": "cicloml traffic profiling cost", "flush_path": flush}
    load = bench_serve.write_load(workdir, "ids", "/predict", [{"entity_ids": [i]} for i in state.ids], args.seed)
    log_dir = workdir / "logs"
    log_dir.mkdir()
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for round_ in range(rounds):
        order = ["off", "on"] if round_ % 2 == 0 else ["on", "off"]
        for profiling in order:
            server_args = argparse.Namespace(**{**vars(args), "server_env": [VARIANTS[compare][profiling]]})
            bench_serve.log(f"round {round_ + 1}/{rounds}: {VARIANTS[compare][profiling]}")
            with bench_serve.bento_server(state, server_args, workers, log_dir) as server:
                runs[profiling].append(bench_serve.measure(server_args, server, load, args.connections))
    profiles = sorted((state.state_dir / "profiles").rglob("*.bin"))  # every segment

    def median(profiling: str, key: str) -> float:
        return statistics.median(result[key] for result in runs[profiling])

    rps_ratio = bench_serve.ratio(median("on", "ok_rps"), median("off", "ok_rps"))
    p99_ratio = bench_serve.ratio(median("on", "p99_ms"), median("off", "p99_ms"))
    failed = sum(bench_serve.failed(result) for results in runs.values() for result in results)
    targets = SEGMENT_TARGETS if compare == "segments" else TARGETS
    return {
        "benchmark": f"cicloml traffic records cost: {compare}",
        "compared": VARIANTS[compare],
        "config": {"rounds": rounds, "workers": workers, "connections": args.connections, "duration_s": args.duration},
        "without_profiling": {"ok_rps": median("off", "ok_rps"), "p99_ms": median("off", "p99_ms")},
        "with_profiling": {"ok_rps": median("on", "ok_rps"), "p99_ms": median("on", "p99_ms")},
        "rps_with_over_without": rps_ratio,
        "p99_with_over_without": p99_ratio,
        "profile_files_written": len(profiles),
        "failed_requests": failed,
        "flush_path": flush,
        "runs": runs,
        "targets": targets,
        "meets_targets": {
            "throughput": rps_ratio is not None and rps_ratio >= targets["rps_with_over_without_min"],
            "p99": p99_ratio is not None and p99_ratio <= targets["p99_with_over_without_max"],
            "zero_failed": failed == 0,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs (default 2)")
    parser.add_argument("--workers", type=int, default=1, help="BentoML workers (default 1)")
    parser.add_argument("--flush-only", action="store_true", help="measure the flush path only, start no server")
    parser.add_argument(
        "--compare", choices=sorted(VARIANTS), default="profiling", help="what the two servers differ in"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, stopping any server started
    workdir = Path(tempfile.mkdtemp(prefix="cicloml-bench-profiling-"))
    began = time.monotonic()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Feast prints progress on stdout
            result = run(args.rounds, args.workers, workdir, flush_only=args.flush_only, compare=args.compare)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result["wall_seconds"] = round(time.monotonic() - began, 1)
    result["environment"] = {"cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
