"""On-demand feature views online: the lookup plus Feast's transformation, and what they cost `/predict`.

On the test Feast repository that cicloml did not write (`tests/byo/feature_repo`: a user x item compound key, a
`python`-mode on-demand view with a request source, a `pandas`-mode one), in one run:

1. One entity's online features, `OnlineFeatureReader.fetch` (per-view `online_read`, then the on-demand views'
   own transformations) beside Feast's `get_online_features` for the same features and entity row, on SQLite:
   p50 / p99 over `--lookups` calls each, alternated, for three feature sets: the python-mode view's outputs (and
   the view feature it reads), the pandas-mode view's, and every feature of the model's service. Targets: cicloml
   no slower than Feast at p50 and p99, and p99 <= 2 ms for the python-mode view.
2. `/predict` under wrk (one entity per request, 16 connections, 1 worker), the service serving a model trained on
   `click_plain_v1` (stored features only: the baseline), on `click_python_v1` (the same, plus the python-mode view
   with its request fields) and on `click_v1` (plus the pandas-mode view too), servers started together and runs
   alternated. Target: python-mode / baseline >= 0.8 (2xx requests per second); both / baseline is reported: a
   pandas-mode view costs what its pandas calls cost on one row (~0.5 ms here, of a ~1.7 ms request), and
   `/predict_batch` (concurrent requests merged into one call) is measured beside it.

Prints one JSON object on stdout; progress on stderr. Needs wrk (Debian package). Nothing asserts on timings.

    python benchmarks/bench_on_demand.py              # about 3 minutes
    python benchmarks/bench_on_demand.py --lookups 500 --duration 4 --warmup 1
"""

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: import cicloml, the test repository and bench_serve's wrk runner
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_serve  # noqa: E402

from cicloml.contract import FeatureContract  # noqa: E402
from cicloml.feature_store import OnlineFeatureReader, apply_repo, materialize, open_store  # noqa: E402
from cicloml.settings import Settings, get_settings  # noqa: E402
from cicloml.spec import SklearnModelSpec  # noqa: E402

TARGETS = {"p99_ms_python_mode": 2.0, "lookup_over_feast": 1.0, "python_mode_over_baseline_rps": 0.8}
SERVICES = {"baseline": "click_plain_v1", "python_mode": "click_python_v1", "both_modes": "click_v1"}
"""The model of each server: the feature service it is trained on."""
EXCLUDED = ["preferences", "attributes"]
FEATURE_SETS = {
    "python_mode": ["price", "discounted_price", "evening"],
    "pandas_mode": ["clicks_30d", "last_rating", "affinity"],
    "service": None,  # every feature of click_v1 a model reads
}
MODEL = SklearnModelSpec(params={"max_iter": 100, "learning_rate": 0.1})


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="On-demand views online: cicloml's lookup + transformation beside Feast's get_online_features, "
        "and /predict with and without on-demand views under wrk. One JSON object on stdout.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--lookups", type=int, default=3000, help="timed lookups per feature set and library")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of each timed wrk run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of untimed wrk load before each run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=2, help="wrk runs per server, alternated (median kept)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--wrk", default="wrk", help="the wrk executable")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if shutil.which(args.wrk) is None:
        parser.error(f"{args.wrk!r} not found: install wrk (Debian: apt-get install wrk)")
    return args


# --- state ------------------------------------------------------------------------------------------------------


def prepare(workdir: Path) -> tuple[Settings, Any, list[dict[str, Any]]]:
    """The test repository with its seeded world up to today, applied and materialized; the request rows (join
    keys and request fields) of pairs whose features are all there."""
    from tests.byo.conftest import make_project  # imports pytest; only needed here

    end = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    project = make_project(workdir / "project", end=end, users=300, items=40, days=40, clicks_per_day=120)
    project.write_spec()
    os.environ.update(CICLO_STATE_DIR=str(workdir / "state"), CICLO_SPEC_PATH=str(project.spec_path))
    get_settings.cache_clear()
    settings = get_settings()
    store = open_store(project.repo, settings)
    apply_repo(store)
    materialize(store, datetime.now(timezone.utc))
    contract = FeatureContract.resolve(store, "click_v1", exclude=EXCLUDED)
    activity = project.world.interactions
    recent = activity[activity["event_timestamp"] > end - timedelta(days=25)].drop_duplicates(["user_id", "item_id"])
    rng = random.Random(0)
    rows = [
        {
            "user_id": str(user),
            "item_id": int(item),
            "discount": rng.choice([0.0, 0.1, 0.2]),
            "hour_of_day": rng.randrange(24),
        }
        for user, item in recent[["user_id", "item_id"]].itertuples(index=False, name=None)
    ]
    online = OnlineFeatureReader(store, contract).fetch(
        {name: [row[name] for row in rows] for name in contract.entity_fields}
    )
    usable = [row for row, status in zip(rows, online.statuses, strict=True) if status == "ok"]
    log(f"{len(usable)} of {len(rows)} pairs have every feature online")
    return settings, store, usable


def train_and_register(settings: Settings, store: Any, service: str) -> str:
    """A model on `service`, registered (no Prefect: the flows are measured elsewhere)."""
    from tests.service.state import register_trained  # imports pytest; only needed here

    return register_trained(settings, store, FeatureContract.resolve(store, service, exclude=EXCLUDED), MODEL)


# --- 1. lookups -------------------------------------------------------------------------------------------------


def percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
    }


def time_calls(calls: dict[str, Callable[[dict[str, Any]], Any]], rows: list[dict[str, Any]], count: int) -> dict:
    """Each call `count` times on random rows, the callers alternated call by call (so drift in the machine's
    load hits them alike), after 100 untimed warm-up calls each."""
    rng = random.Random(1)
    timings: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        for _ in range(100):
            call(rng.choice(rows))
    for _ in range(count):
        row = rng.choice(rows)
        for name, call in calls.items():
            began = time.perf_counter()
            call(row)
            timings[name].append(time.perf_counter() - began)
    return {name: percentiles(values) for name, values in timings.items()}


def bench_lookups(store: Any, rows: list[dict[str, Any]], count: int) -> dict[str, Any]:
    results = {}
    for name, features in FEATURE_SETS.items():
        contract = FeatureContract.resolve(store, "click_v1", features=features, exclude=[] if features else EXCLUDED)
        reader = OnlineFeatureReader(store, contract)
        fields = contract.entity_fields
        owner = {
            field.name: projection.name
            for projection in store.get_feature_service("click_v1").feature_view_projections
            for field in projection.features
        }
        references = [f"{owner[feature]}:{feature}" for feature in contract.features]

        def cicloml(row: dict[str, Any], reader: OnlineFeatureReader = reader, fields: list[str] = fields) -> Any:
            return reader.fetch({field: [row[field]] for field in fields})

        def feast(row: dict[str, Any], references: list[str] = references, fields: list[str] = fields) -> Any:
            entity = {field: row[field] for field in fields}
            return store.get_online_features(features=references, entity_rows=[entity]).to_dict()

        # Both answer the same values for one row before they are timed.
        check = rows[0]
        ours, theirs = cicloml(check), feast(check)
        for feature in contract.features:
            if ours.columns[feature][0] != theirs[feature][0]:
                raise RuntimeError(f"{name}: {feature} differs: {ours.columns[feature][0]} vs {theirs[feature][0]}")
        timed = time_calls({"cicloml": cicloml, "feast": feast}, rows, count)
        timed["features"] = contract.features
        timed["cicloml_over_feast_p50"] = round(timed["cicloml"]["p50_ms"] / timed["feast"]["p50_ms"], 3)
        timed["cicloml_over_feast_p99"] = round(timed["cicloml"]["p99_ms"] / timed["feast"]["p99_ms"], 3)
        log(f"lookup {name}: cicloml {timed['cicloml']}, feast {timed['feast']}")
        results[name] = timed
    return results


# --- 2. /predict ------------------------------------------------------------------------------------------------


def bench_predict(
    args: argparse.Namespace, settings: Settings, tags: dict[str, str], rows: list[dict], workdir: Path
) -> dict:
    runner = SimpleNamespace(wrk=args.wrk, warmup=args.warmup, duration=args.duration, rebalance=True)
    keys_only = [{"user_id": row["user_id"], "item_id": row["item_id"]} for row in rows]
    bodies = {name: [{"entities": [row]} for row in (keys_only if name == "baseline" else rows)] for name in tags}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in tags}
    servers = {}
    try:
        for name, tag in tags.items():
            environment = {
                **os.environ,
                "CICLO_STATE_DIR": str(settings.state_dir),
                "CICLO_SPEC_PATH": str(settings.spec_path),
                "CICLO_MODEL_TAG": tag,
                "BENTOML_HOME": str(settings.bentoml_home),
                "BENTOML_DO_NOT_TRACK": "True",
                "PYTHONWARNINGS": "ignore",
            }
            port = bench_serve.free_port()
            command = [str(Path(sys.executable).with_name("bentoml")), "serve", bench_serve.SERVICE]
            command += ["--host", "127.0.0.1", "--port", str(port)]
            context = bench_serve.running(name, command, environment, workdir, port, 1, "Service cicloml initialized")
            servers[name] = (context, context.__enter__())
        loads = {name: bench_serve.write_load(workdir, name, "/predict", bodies[name], args.seed) for name in tags}
        # Adaptive batching merges concurrent requests into one lookup, one transformation and one model call.
        batched = bench_serve.write_load(workdir, "both_modes_batch", "/predict_batch", bodies["both_modes"], args.seed)
        results["both_modes_batch"] = []
        for _ in range(args.rounds):
            for name in tags:
                results[name].append(bench_serve.measure(runner, servers[name][1], loads[name], args.connections))
            run = bench_serve.measure(runner, servers["both_modes"][1], batched, args.connections)
            results["both_modes_batch"].append(run)
    finally:
        for context, _ in servers.values():
            context.__exit__(None, None, None)
    median = {name: statistics.median(run["ok_rps"] for run in runs) for name, runs in results.items()}
    return {
        "runs": results,
        "median_ok_rps": median,
        "python_mode_over_baseline_rps": round(median["python_mode"] / median["baseline"], 3),
        "both_modes_over_baseline_rps": round(median["both_modes"] / median["baseline"], 3),
        "both_modes_batch_over_baseline_rps": round(median["both_modes_batch"] / median["baseline"], 3),
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-on-demand-"))
    try:
        log(f"work folder {workdir}")
        settings, store, rows = prepare(workdir)
        lookups = bench_lookups(store, rows, args.lookups)
        log(f"training a model on each of {', '.join(SERVICES.values())}")
        tags = {name: train_and_register(settings, store, service) for name, service in SERVICES.items()}
        predict = bench_predict(args, settings, tags, rows, workdir)
        met = {
            "p99_ms_python_mode": lookups["python_mode"]["cicloml"]["p99_ms"] <= TARGETS["p99_ms_python_mode"],
            "lookup_over_feast": all(
                lookups[name][f"cicloml_over_feast_{which}"] <= TARGETS["lookup_over_feast"]
                for name in FEATURE_SETS
                for which in ("p50", "p99")
            ),
            "python_mode_over_baseline_rps": (
                predict["python_mode_over_baseline_rps"] >= TARGETS["python_mode_over_baseline_rps"]
            ),
        }
        print(
            json.dumps(
                {
                    "lookups": lookups,
                    "predict": predict,
                    "targets": TARGETS,
                    "met": met,
                    "entities": len(rows),
                    "environment": {
                        "python": platform.python_version(),
                        "cpus": os.cpu_count(),
                        "feast": version("feast"),
                        "bentoml": version("bentoml"),
                    },
                },
                indent=2,
            )
        )
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
