"""Serving benchmark: the BentoML prediction service beside a plain FastAPI app and MLflow's model server, under wrk,
with 1 and 2 workers.

What it measures, in one run, with one model, on this machine, with one load generator (wrk, POST JSON bodies
from a Lua script that picks a random body per request):

(a) `bentos.service:PredictionService` `/predict_features`: one caller-supplied feature row per request;
(b) the same bento's `/predict`: one random known entity id per request, features looked up in Feast (SQLite);
(c) `benchmarks/serve_baseline.py` under uvicorn: (b)'s work (same `OnlineFeatureReader` lookup, same pipeline,
    same response rows) with no BentoML serving code: the baseline;
(d) adaptive batching: the bento's `/predict_batch` against its `/predict` at 16, 32 and 64 connections;
(e) today's path: (b) on a second bento started with `CICLO_COMPILED_INFERENCE=false`, which scores every call with
    the scikit-learn classifier instead of the model version's compiled trees (`cicloml.models.compiled`); (a)-(d)
    run with the setting on, the default, and so does (c);
(f) the peer: `mlflow models serve --env-manager local` (MLflow 3) serving the same fitted pipeline: `/invocations`
    with (a)'s feature rows, one per request, as MLflow's `{"dataframe_split": {"columns": [...], "data": [[...]]}}`.

Each of (a)-(f) and every (d) pair is run with 1 and with 2 worker processes. The service declares
`workers=1`; the benchmark serves it with N workers through BentoML's configuration override, as `cicloml serve`
sets it (`cicloml.serving.service_overrides`: N workers, BentoML's access log off; checked: the server starts N
`_bentoml_impl.worker.service` processes); the baseline runs `uvicorn --workers N --no-access-log`, MLflow
`--workers N` (uvicorn's).

MLflow 3: pip resolves mlflow 1.26 beside this project's constraints.txt, so MLflow lives in a virtualenv of its own
(`--mlflow-venv`, by default `<state folder>/bench/mlflow-venv`; ~0.8 GB, about a minute to build), made with
`python -m venv` and `pip install "mlflow==3.*"` plus this environment's exact scikit-learn, numpy, pandas, scipy
and joblib (the pickled pipeline loads only with them), uvicorn (MLflow serves with it), uvloop and httptools
(uvicorn takes them when present, as it does under the bento and the baseline; without them wrk's connections all
land on one of 2 workers), and reused while those are unchanged. The champion's pipeline is plain scikit-learn (no
cicloml class in the pickle), so that virtualenv needs nothing from this repository: a short script there loads the
model store's `pipeline.joblib` and saves it with `mlflow.sklearn.save_model(..., signature=<inferred from sample
rows>, pyfunc_predict_fn="predict_proba")` in skops, MLflow 3's default format, so `/invocations` answers
probabilities as the bento does, and checks its input against the signature as the bento validates its own. MLflow
logs every request, as BentoML does. `--no-mlflow` leaves (f) out (no virtualenv needed).

Every load run is a wrk warm-up (`--warmup` s, discarded) then a timed run (`--duration` s) at a fixed number of
connections, one wrk thread (the server needs the cores more than wrk does). From each timed run: requests/s (all
responses) and 2xx/s, latency p50/p90/p99/max from wrk's latency distribution (what `--latency` prints; read
through the Lua `done` hook), responses by HTTP status (a Lua `response` hook) with the non-2xx total, socket
errors (connect/read/write/timeout; wrk's timeout is the service's 10 s traffic timeout, MLflow is given the same),
and how many of the connections each server process held a second in. Ratios and targets use 2xx/s: a 429
answered in a millisecond is not throughput. wrk is closed-loop: at full load, latency includes queueing. Before
each run the benchmark waits until the server is idle: the requests a finished run left queued are still computed,
and would otherwise hold the next run's CPU and `max_concurrency` slots (429s). That limit (64) is per service,
split between workers.

Workers share one listening socket and a kept-alive connection stays with the worker that accepted it, so 2
workers are often loaded unevenly (16 connections split 16/0 or 14/2 as often as 9/7), and wrk reconnects for every
run. A timed run whose spread is uneven (a worker holding more than 1.25x its share, or none) is therefore
restarted a second in, so that runs compare the servers rather than the luck of the accept queue; the spreads it
restarted on are reported (`uneven_spreads_restarted`), and `--no-rebalance` keeps every run as it lands.

(b)'s p99 at half its maximum throughput: wrk has no rate limit (wrk2 has; it is not packaged here), so the paced
runs schedule requests from wrk's Lua `delay()` hook: each request a connection is about to send takes the next
free slot of one schedule at R = half of (b)'s 2xx/s at full load, and waits for it (LuaJIT's ffi reads the
monotonic clock). `run`, the one the target is judged on, spaces the slots evenly, as wrk2 does; `poisson_arrivals`
draws the gaps from an exponential distribution with the same mean (random arrivals queue more). wrk times a
request from its write to its response, so the wait for the slot is not latency. A slot no connection is free for
is not caught up later (wrk2 would send it late and count the wait), so an overloaded server gets a lower rate
rather than a longer tail; the measured rate is reported (`load_fraction` of the full-load rate).

Startup (`startup`): for every server, the seconds from its start to the first 200 from its readiness endpoint
(`/readyz`; MLflow's `/ping`) and to every worker having logged its startup. The compiled bento starts before the
uncompiled one, so a cold file cache would count against the compiled path.

Targets (`targets`; `meets_targets` per worker count; 2xx/s at 16 connections): (b) >= 0.8x (a) and >= 0.5x (c);
(b) >= 2.5x (e) (same worker count, so per worker too); (a) >= 3x (f); (b)'s p99 at half its maximum rate <= 10 ms;
`/predict_batch` >= 1.15x `/predict` with no failed request; and the compiled bento's time to `/readyz` no slower
than the uncompiled one's: at most 10 % or 0.5 s over it, whichever is looser (one start of each is compared).

CPU noise: the machine may be shared. For every timed run the CPU time of the server's process tree, of wrk and
of everything else on the machine (from /proc) is reported in cores; `other_cores` well above 0 means another
workload competed with the run. Repeat the benchmark to check stability.

State: a temporary state folder with a trained and promoted champion of the project's model (cicloml.yaml's:
HistGradientBoosting, 200 iterations, compiled at registration and checked on its test split) and a
materialized SQLite online store, built with library calls (`tests.service.state.build_served_state`, as the
service tests do: no Prefect).
Every server gets CICLO_MODEL_TAG set to that champion (MLflow its pipeline), so all serve the same model version;
before loading each, a few rows are scored through it and a RuntimeError stops the run unless the scores agree with
(b)'s within SCORE_TOLERANCE. Everything but MLflow's virtualenv is removed at the end, and every server is stopped
(on errors and interrupts too).

The result is one JSON object on stdout: each run, the ratios, targets and whether each is met, versions, CPU
count and noise. Progress goes to stderr. Nothing here asserts on timings. Needs `wrk` (Debian package).

The servers run as `bentoml serve` runs them, with this process's environment: no thread limits for the numerical
libraries unless `--server-env` sets some (e.g. OMP_NUM_THREADS=1, for a diagnosis).

    python benchmarks/bench_serve.py                                   # about 8-10 minutes (+1 to build MLflow's venv)
    python benchmarks/bench_serve.py --workers 1 --duration 5 --warmup 2 --no-mlflow
    python benchmarks/bench_serve.py --server-env OMP_NUM_THREADS=1    # an environment variable for every server
"""

import argparse
import contextlib
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: import cicloml and the service tests' state builder

from cicloml.contract import FeatureContract  # noqa: E402
from cicloml.feature_store import OnlineFeatureReader, open_store  # noqa: E402
from cicloml.registry import MODEL_FILE, ModelRegistry  # noqa: E402
from cicloml.serving import free_port, service_overrides  # noqa: E402
from cicloml.settings import Settings, get_settings  # noqa: E402
from cicloml.spec import load_spec  # noqa: E402

SERVICE = "bentos.service:PredictionService"
BASELINE_APP = "benchmarks.serve_baseline:app"
WRK_TIMEOUT_S = 10  # the service's traffic timeout: a request wrk gives up on would be a 504 anyway
STARTUP_SECONDS = 240  # importing the service and the stack takes ~15-30 s on 2 busy cores
STOP_SECONDS = 30
HALF_LOAD = 0.5
HALF_LOAD_TOLERANCE = 0.1  # accept a paced run within 40-60 % of the maximum rate
SETTLE_SECONDS = 30  # longest wait for a server to finish the previous run's requests
SETTLE_INTERVAL = 0.3
IDLE_CORES = 0.1
REBALANCE_ATTEMPTS = 10  # uneven spreads are common: about 2 runs in 3 on 2 workers here
BALANCE_SLACK = 1.25  # 16 connections on 2 workers: at most 10 on one
SAMPLE_IDS = 20  # ids scored through every endpoint before the load, to check they agree
SCORE_TOLERANCE = 1e-4  # the compiled trees agree with scikit-learn within 1e-6; another model differs far more

MLFLOW_REQUIREMENT = "mlflow==3.*"
# At this environment's versions: what unpickles the pipeline; uvicorn, and the event loop and HTTP parser it takes
# when they are installed, as under the bento and the baseline. `pip install mlflow` brings neither of the two:
# asyncio's accept loop then hands all of wrk's connections to one of 2 workers, and h11 parses slower.
MLFLOW_PINNED = ("scikit-learn", "numpy", "pandas", "scipy", "joblib", "uvicorn", "uvloop", "httptools")
# Saved in skops, MLflow 3's default format, which loads only the types it is told to trust: the pipeline is our own,
# so every type skops finds in it is trusted.
MLFLOW_SAVE_SCRIPT = """
import json, sys
import joblib, mlflow, mlflow.sklearn, pandas as pd, skops.io
from mlflow.models import infer_signature

pipeline_path, example_path, model_dir = sys.argv[1:]
pipeline = joblib.load(pipeline_path)
split = json.loads(open(example_path).read())
example = pd.DataFrame(split["data"], columns=split["columns"])
mlflow.sklearn.save_model(
    pipeline,
    model_dir,
    signature=infer_signature(example, pipeline.predict_proba(example)),
    pyfunc_predict_fn="predict_proba",
    skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)),
)
print(mlflow.__version__)
"""

SCALED_RUNS = ("a_predict_features", "b_predict", "c_baseline_predict", "e_predict_uncompiled", "f_mlflow_invocations")

TARGETS = {
    "b_over_a_rps": 0.8,
    "b_over_c_rps": 0.5,
    "predict_p99_at_half_max_ms": 10.0,
    "batch_over_predict_rps_min": 1.15,
    "batch_failed_requests": 0,
    "predict_over_uncompiled_per_worker": 2.5,
    "predict_features_over_mlflow": 3.0,
    # Time to /readyz, compiled over uncompiled: no slower means at most 10 % or 0.5 s more, whichever is looser.
    "readyz_compiled_over_uncompiled_max": 1.1,
    "readyz_compiled_minus_uncompiled_max_s": 0.5,
}

LUA_SCRIPT = """-- generated by benchmarks/bench_serve.py: POST a random JSON body from the list below per request
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {
%(bodies)s
}
local interval_ms = 0
local poisson = false
local threads = {}
statuses = {}  -- global: done() reads each thread's copy with thread:get

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_index", #threads)
end

function init(args)
  math.randomseed(%(seed)d + (thread_index or 0))
  if args[1] ~= nil then interval_ms = tonumber(args[1]) end
  poisson = args[2] == "poisson"
end

function request()
  return wrk.format(nil, nil, nil, bodies[math.random(#bodies)])
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
%(delay)s
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%%d duration_us=%%d status_errors=%%d connect=%%d read=%%d write=%%d timeout=%%d " ..
    "p50_us=%%d p90_us=%%d p99_us=%%d min_us=%%d max_us=%%d mean_us=%%d\\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.min, latency.max,
    math.floor(latency.mean)))
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      io.write(string.format("BENCH_STATUS %%d %%d\\n", status, count))
    end
  end
end
"""

DELAY_FUNCTION = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local next_slot = nil

local function now_ms()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

-- Called before every request (the first of each connection too): wait for the schedule's next free slot.
function delay()
  local now = now_ms()
  if next_slot == nil or next_slot < now then next_slot = now end  -- a missed slot is not caught up
  local wait = next_slot - now
  local gap = interval_ms
  if poisson then gap = -math.log(1 - math.random()) * interval_ms end
  next_slot = next_slot + gap
  return wait
end
"""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- command line -----------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Benchmark the BentoML prediction service under wrk: /predict_features (a), /predict with the Feast "
            "lookup (b), a plain FastAPI+uvicorn app doing (b)'s work (c, the baseline), /predict_batch against "
            "/predict (d), /predict with compiled inference off (e, today's path) and `mlflow models serve` on the "
            "same pipeline (f, the peer), with 1 and 2 workers; and each bento's time to /readyz. Reports req/s, "
            "p50/p99 and non-2xx per run, ratios and targets as one JSON object on stdout; progress on stderr. "
            "Needs wrk (apt-get install wrk); MLflow 3 is installed into a virtualenv of its own on first use."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to measure")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections for (a), (b), (c), (e) and (f)")
    parser.add_argument(
        "--batch-connections", type=int, nargs="+", default=[16, 32, 64], help="wrk connections for (d)"
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of each timed wrk run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of untimed wrk load before each run")
    parser.add_argument("--customers", type=int, default=1000, help="customers in the demo data (90 days each)")
    parser.add_argument("--seed", type=int, default=7, help="seed for the bodies' order and wrk's random choices")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for every server (bentos, baseline, MLflow); repeatable",
    )
    parser.add_argument("--wrk", default="wrk", help="the wrk executable")
    parser.add_argument(
        "--no-rebalance",
        dest="rebalance",
        action="store_false",
        help="keep runs whose connections landed unevenly on the workers (default: restart them)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (state, server logs)")
    parser.add_argument("--no-mlflow", dest="mlflow", action="store_false", help="leave out the MLflow peer (f)")
    parser.add_argument(
        "--mlflow-venv",
        type=Path,
        default=get_settings().state_dir / "bench" / "mlflow-venv",  # read before the run points settings elsewhere
        help="MLflow 3's virtualenv: built there if missing or stale, else reused",
    )
    args = parser.parse_args(argv)
    if min(args.workers) < 1 or args.connections < 1 or min(args.batch_connections) < 1:
        parser.error("--workers and connection counts must be positive")
    if args.duration < 1 or args.warmup < 0:
        parser.error("--duration must be at least 1 s and --warmup not negative")
    for item in args.server_env:
        if "=" not in item:
            parser.error(f"--server-env takes NAME=VALUE, not {item!r}")
    if shutil.which(args.wrk) is None:
        parser.error(f"{args.wrk!r} not found: install wrk (Debian: apt-get install wrk)")
    return args


# --- state ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServedState:
    state_dir: Path
    model_tag: str
    ids: list[int]
    """Known entities whose features are all present and fresh (status ok): every request does the full work."""
    feature_rows: list[dict[str, Any]]
    """Their online feature vectors, as /predict_features takes them (same order as `ids`)."""
    statuses: dict[str, int]
    pipeline_path: Path
    """The champion's fitted pipeline in the model store (joblib), which MLflow serves."""
    compilation: dict[str, Any] | None
    """Whether the champion carries compiled trees, and why (`cicloml.models.compiled.CompilationReport`)."""


def build_state(state_dir: Path, customers: int) -> ServedState:
    """A state folder with a promoted champion and a materialized SQLite store; the entities all endpoints get."""
    os.environ.update(CICLO_STATE_DIR=str(state_dir), CICLO_SPEC_PATH=str(ROOT / "cicloml.yaml"))
    get_settings.cache_clear()
    settings = get_settings()
    from tests.service.state import build_served_state  # imports pytest; only needed here

    # Data up to this hour: fresh for the activity view's 2-day TTL for the whole run.
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    # The project's own model (cicloml.yaml: HistGradientBoosting, 200 iterations), the demo's champion.
    tag = build_served_state(settings, end, customers=customers, model_spec=load_spec(settings.spec_path).model)
    ids, rows, statuses = usable_entities(settings, list(range(1001, 1001 + customers)))
    if not ids:
        raise RuntimeError(f"no entity has complete, fresh online features (statuses: {statuses})")
    registry = ModelRegistry(settings, load_spec(settings.spec_path).name)
    compilation = registry.compilation(tag)
    return ServedState(
        state_dir=state_dir,
        model_tag=tag,
        ids=ids,
        feature_rows=rows,
        statuses=statuses,
        pipeline_path=registry.load(tag).path / MODEL_FILE,
        compilation=compilation.model_dump() if compilation else None,
    )


def usable_entities(settings: Settings, candidates: list[int]) -> tuple[list[int], list[dict[str, Any]], dict]:
    spec = load_spec(settings.spec_path)
    store = open_store(spec.features.repo, settings)
    reader = OnlineFeatureReader(store, FeatureContract.resolve(store, spec.features.feature_service))
    online = reader.fetch(candidates)
    statuses: dict[str, int] = {}
    ids, rows = [], []
    for row, (entity, status) in enumerate(zip(candidates, online.statuses, strict=True)):
        statuses[status] = statuses.get(status, 0) + 1
        if status == "ok":
            ids.append(entity)
            rows.append({name: online.columns[name][row] for name in reader.features})
    return ids, rows, statuses


# --- servers ----------------------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    workers: int
    workers_started: int = 0
    """Workers that logged their startup (the service initialized, or the app's startup complete)."""
    readyz_seconds: float = 0.0
    """From the start to the readiness endpoint's first 200."""
    ready_seconds: float = 0.0
    """From the start to every worker having logged its startup."""

    def tree(self) -> list[int]:
        return [self.process.pid, *descendants(self.process.pid)]


def variables(server_env: Sequence[str]) -> dict[str, str]:
    """`--server-env`'s NAME=VALUE items."""
    return {name: value for name, _, value in (item.partition("=") for item in server_env)}


def serving_environment(
    state: ServedState, server_env: list[str], workers: int, compiled: bool = True
) -> dict[str, str]:
    environment = {
        **os.environ,
        "CICLO_STATE_DIR": str(state.state_dir),
        "CICLO_SPEC_PATH": str(ROOT / "cicloml.yaml"),
        "CICLO_MODEL_TAG": state.model_tag,
        "BENTOML_HOME": str(state.state_dir / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        # The service declares workers=1; BentoML 1.4 merges this over the service's own config.
        "BENTOML_CONFIG_OVERRIDES": service_overrides(workers),  # as `cicloml serve` serves a bento
        "CICLO_COMPILED_INFERENCE": str(compiled).lower(),  # set either way: this process's environment may have it
        "PYTHONWARNINGS": "ignore",
    }
    environment.update(variables(server_env))
    return environment


@contextlib.contextmanager
def bento_server(
    state: ServedState, args: argparse.Namespace, workers: int, log_dir: Path, compiled: bool = True
) -> Iterator[Server]:
    """The bento with N workers; `compiled` is the `compiled_inference` setting (off: today's scikit-learn path)."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("bentoml")), "serve", SERVICE, "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    environment = serving_environment(state, args.server_env, workers, compiled)
    name = f"bento-{workers}w" if compiled else f"bento-uncompiled-{workers}w"
    # Each BentoML worker logs this once its service instance (model and feature reader) exists.
    with running(name, command, environment, log_dir, port, workers, "Service cicloml initialized") as s:
        yield s


@contextlib.contextmanager
def baseline_server(state: ServedState, args: argparse.Namespace, workers: int, log_dir: Path) -> Iterator[Server]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", BASELINE_APP, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers), "--no-access-log", "--log-level", "info"]
    environment = serving_environment(state, args.server_env, workers)
    with running(
        f"baseline-{workers}w", command, environment, log_dir, port, workers, "Application startup complete"
    ) as s:
        yield s


@contextlib.contextmanager
def running(
    name: str,
    command: list[str],
    environment: dict[str, str],
    log_dir: Path,
    port: int,
    workers: int,
    marker: str,
    ready_path: str = "/readyz",
) -> Iterator[Server]:
    """Start a server in its own session, wait until `ready_path` answers 200 and every worker logged `marker`
    (both timed from the start); stop it afterwards, whatever happens. BentoML's workers run in sessions of their
    own, so they are found by parentage and killed by pid if the server does not stop them."""
    log_path = log_dir / f"{name}.log"
    log(f"starting {name}: {' '.join(command)}")
    began = time.monotonic()
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(name, process, f"http://127.0.0.1:{port}", log_path, workers)
    try:
        server.readyz_seconds = wait_ready(server, workers, marker, ready_path) - began
        server.ready_seconds = time.monotonic() - began
        server.workers_started = log_path.read_text(errors="replace").count(marker)
        log(
            f"{name}: {ready_path} answered in {server.readyz_seconds:.1f} s, all workers up in "
            f"{server.ready_seconds:.1f} s (processes: {len(server.tree())})"
        )
        yield server
    finally:
        stop(server)


def wait_ready(server: Server, workers: int, marker: str, ready_path: str) -> float:
    """Wait for `ready_path`'s first 200 and `workers` startup markers in the log; when (monotonic) the 200 came."""
    deadline = time.monotonic() + STARTUP_SECONDS
    ready_at: float | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}:\n{tail(server.log_path)}")
        if ready_at is None and http_status(server.base_url + ready_path) == 200:
            ready_at = time.monotonic()
        if ready_at is not None and server.log_path.read_text(errors="replace").count(marker) >= workers:
            return ready_at
        time.sleep(0.25)
    raise RuntimeError(f"{server.name} was not ready after {STARTUP_SECONDS} s:\n{tail(server.log_path)}")


def startup(server: Server) -> dict[str, Any]:
    return {
        "readyz_s": round(server.readyz_seconds, 2),
        "all_workers_s": round(server.ready_seconds, 2),
        "workers_started": server.workers_started,
    }


def stop(server: Server) -> None:
    """SIGTERM the server (it stops its workers), then SIGKILL whatever of its tree is left."""
    tree = {pid: cmdline(pid) for pid in server.tree()}
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            log(f"{server.name} did not stop in {STOP_SECONDS} s: killing it")
            server.process.kill()
            server.process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [pid for pid, command in tree.items() if pid != server.process.pid and cmdline(pid) == command]
        if not left:
            return
        time.sleep(0.2)
    for pid in left:
        log(f"{server.name}: killing leftover worker {pid}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def cmdline(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def post_json(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --- the MLflow peer --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MlflowPeer:
    """MLflow 3's virtualenv and the champion's pipeline saved there as an MLflow model."""

    venv_dir: Path
    model_dir: Path
    version: str
    venv_build_seconds: float | None
    """None: the virtualenv was there already, and reused."""
    venv_megabytes: float

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "venv": str(self.venv_dir),
            "venv_build_s": self.venv_build_seconds,
            "venv_megabytes": self.venv_megabytes,
            "model": "mlflow.sklearn.save_model(pipeline, signature=<inferred>, pyfunc_predict_fn='predict_proba')",
            "serve": "mlflow models serve --env-manager local --workers N --timeout "
            f"{WRK_TIMEOUT_S}; POST /invocations with dataframe_split, one row per request",
        }


def mlflow_venv(venv_dir: Path) -> float | None:
    """Make MLflow 3's virtualenv unless it holds the requirements already; the seconds the build took, or None.

    Its own virtualenv because pip resolves mlflow 1.26 beside this project's constraints; with this environment's
    exact versions of MLFLOW_PINNED. A venv cannot be moved once built, so it is built in place and marked complete
    by writing its requirements last."""
    requirements = [MLFLOW_REQUIREMENT, *(f"{name}=={version(name)}" for name in MLFLOW_PINNED)]
    marker = venv_dir / "cicloml-requirements.txt"
    if marker.is_file() and marker.read_text().split() == requirements:
        return None
    log(f"building MLflow's virtualenv at {venv_dir}: pip install {' '.join(requirements)}")
    began = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv_dir)], check=True)
    pip = [str(venv_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *requirements], check=True, stdout=sys.stderr)  # stdout is the JSON's alone
    marker.write_text("\n".join(requirements) + "\n")
    seconds = round(time.monotonic() - began, 1)
    log(f"built MLflow's virtualenv in {seconds} s")
    return seconds


def prepare_mlflow(venv_dir: Path, state: ServedState, workdir: Path) -> MlflowPeer:
    """The virtualenv (built or reused) and the champion's pipeline saved as an MLflow model in `workdir`."""
    built = mlflow_venv(venv_dir)
    example_path = workdir / "mlflow-example.json"
    example_path.write_text(json.dumps(mlflow_body(state.feature_rows[:SAMPLE_IDS])["dataframe_split"]))
    model_dir = workdir / "mlflow-model"
    # -I: nothing from this repository or its environment on the path; the pickle needs scikit-learn alone.
    command = [str(venv_dir / "bin" / "python"), "-I", "-c", MLFLOW_SAVE_SCRIPT]
    command += [str(state.pipeline_path), str(example_path), str(model_dir)]
    saved = subprocess.run(command, cwd=workdir, env=mlflow_environment(), capture_output=True, text=True)
    if saved.returncode != 0:
        raise RuntimeError(f"saving the pipeline as an MLflow model failed:\n{saved.stderr[-3000:]}")
    size = sum(path.lstat().st_size for path in venv_dir.rglob("*") if not path.is_symlink() and path.is_file())
    return MlflowPeer(venv_dir, model_dir, saved.stdout.split()[-1], built, round(size / 2**20, 1))


def mlflow_environment(server_env: Sequence[str] = ()) -> dict[str, str]:
    environment = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONWARNINGS": "ignore"}
    environment.update(variables(server_env))
    return environment


def mlflow_body(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """MLflow's split-oriented DataFrame input: the feature rows /predict_features takes, as columns and values."""
    columns = list(rows[0])
    return {"dataframe_split": {"columns": columns, "data": [[row[name] for name in columns] for row in rows]}}


@contextlib.contextmanager
def mlflow_server(peer: MlflowPeer, args: argparse.Namespace, workers: int, log_dir: Path) -> Iterator[Server]:
    port = free_port()
    command = [str(peer.venv_dir / "bin" / "mlflow"), "models", "serve", "-m", str(peer.model_dir)]
    command += ["--env-manager", "local", "--host", "127.0.0.1", "-p", str(port), "--workers", str(workers)]
    command += ["--timeout", str(WRK_TIMEOUT_S)]
    environment = mlflow_environment(args.server_env)
    # MLflow execs `uvicorn` from PATH: the one beside it, not this environment's.
    environment["PATH"] = f"{peer.venv_dir / 'bin'}{os.pathsep}{environment.get('PATH', '')}"
    with running(
        f"mlflow-{workers}w", command, environment, log_dir, port, workers, "Application startup complete", "/ping"
    ) as s:
        yield s


# --- CPU accounting ---------------------------------------------------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK")


def connections_by_process(server: Server, tree: list[int]) -> list[int]:
    """Established client connections each server process holds (most first). Workers share one listening
    socket, and a kept-alive connection stays with the worker that accepted it, so the load can be uneven."""
    port = int(server.base_url.rsplit(":", 1)[1])
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":  # local port, ESTABLISHED
            inodes.add(fields[9])
    counts = []
    for pid in tree:
        held = 0
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    held += link.startswith("socket:[") and link[8:-1] in inodes
        if held:
            counts.append(held)
    return sorted(counts, reverse=True)


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent outside idle and iowait since boot."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / TICKS


def process_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- load -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """A wrk script: the bodies one endpoint is called with."""

    name: str
    path: str
    script: Path
    paced_script: Path


def write_load(workdir: Path, name: str, path: str, bodies: list[Any], seed: int) -> Load:
    encoded = [json.dumps(body, separators=(",", ":")) for body in bodies]
    random.Random(seed).shuffle(encoded)
    listed = ",\n".join(f"  [=[{body}]=]" for body in encoded)  # Lua long strings: no escaping, JSON has no "]=]"
    scripts = []
    for suffix, delay in (("", ""), ("-paced", DELAY_FUNCTION)):
        script = workdir / f"{name}{suffix}.lua"
        script.write_text(LUA_SCRIPT % {"bodies": listed, "seed": seed, "delay": delay})
        scripts.append(script)
    return Load(name=name, path=path, script=scripts[0], paced_script=scripts[1])


def wrk(
    args: argparse.Namespace,
    server: Server,
    load: Load,
    connections: int,
    duration: float,
    *,
    rate: float | None = None,
    arrivals: str = "even",
    rebalance: bool = True,
) -> dict[str, Any]:
    """One wrk run against `server`; the measurements and the CPU each party used meanwhile.

    With several workers, a run whose connections landed unevenly on them (checked a second in) is restarted, up
    to REBALANCE_ATTEMPTS times, unless `rebalance` is off here or on the command line; the spreads it restarted
    on are reported (`uneven_spreads_restarted`), as they show how often one worker gets most of the load."""
    script = load.script if rate is None else load.paced_script
    command = [args.wrk, "-t1", f"-c{connections}", f"-d{duration:g}s", f"--timeout={WRK_TIMEOUT_S}s", "--latency"]
    command += ["-s", str(script), server.base_url + load.path]
    if rate is not None:
        command += ["--", f"{1000 / rate:.3f}", arrivals]
    tree = server.tree()
    spreads: list[list[int]] = []
    for attempt in range(1, REBALANCE_ATTEMPTS + 1):
        settle(server, tree)
        busy, served, waited, own = machine_busy_seconds(), process_seconds(tree), children_seconds(), self_seconds()
        began = time.monotonic()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(min(1.0, duration / 2))
            spread = connections_by_process(server, tree)
            spreads.append(spread)
            if rebalance and args.rebalance and attempt < REBALANCE_ATTEMPTS and not even(spread, server.workers):
                log(f"  {server.name}: connections per worker {spread}, uneven: restarting wrk")
                continue
            stdout, stderr = process.communicate(timeout=duration + WRK_TIMEOUT_S + 30)
            break
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    completed = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    wall = time.monotonic() - began
    busy, served = machine_busy_seconds() - busy, process_seconds(tree) - served
    waited, own = children_seconds() - waited, self_seconds() - own
    match = re.search(r"^BENCH_RESULT (.*)$", completed.stdout, re.MULTILINE)
    if completed.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stdout}\n{completed.stderr}")
    raw = {key: int(value) for key, value in (item.split("=") for item in match.group(1).split())}
    status_counts: dict[str, int] = {}
    for code, count in re.findall(r"^BENCH_STATUS (\d+) (\d+)$", completed.stdout, re.MULTILINE):
        status_counts[code] = status_counts.get(code, 0) + int(count)
    seconds = raw["duration_us"] / 1e6
    ok = sum(count for code, count in status_counts.items() if code.startswith("2"))
    result: dict[str, Any] = {
        "connections": connections,
        "seconds": round(seconds, 2),
        "requests": raw["requests"],
        "rps": round(raw["requests"] / seconds, 1),
        "ok_rps": round(ok / seconds, 1),
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p90_ms": round(raw["p90_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 2),
        "mean_ms": round(raw["mean_us"] / 1000, 2),
        "non_2xx": raw["requests"] - ok,
        "status_counts": dict(sorted(status_counts.items())),
        "socket_errors": {kind: raw[kind] for kind in ("connect", "read", "write", "timeout")},
        "connections_per_worker": spread,
        "balanced": server.workers == 1 or even(spread, server.workers),
        "uneven_spreads_restarted": spreads[:-1],
        "cpu_cores": {
            "server": round(served / wall, 2),
            "wrk": round(waited / wall, 2),
            "other": round(max(0.0, busy - served - waited - own) / wall, 2),
        },
    }
    if rate is not None:
        result["schedule"] = {"rate": round(rate, 1), "arrivals": arrivals}
    log(
        f"  {server.name} {load.path} c={connections}{f' at {rate:.1f}/s ({arrivals})' if rate is not None else ''}: "
        f"{result['rps']} req/s ({result['ok_rps']} 2xx/s), p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"statuses {result['status_counts']}, socket errors {sum(result['socket_errors'].values())}, "
        f"cpu server/wrk/other {result['cpu_cores']['server']}/{result['cpu_cores']['wrk']}/"
        f"{result['cpu_cores']['other']}, connections per worker {spread}"
    )
    return result


def even(spread: list[int], workers: int) -> bool:
    """Every worker holds connections, none more than BALANCE_SLACK times its even share."""
    return len(spread) >= workers and max(spread) <= math.ceil(sum(spread) / workers * BALANCE_SLACK)


def near_half(rate: float, full_rate: float) -> bool:
    return bool(full_rate) and abs(rate / full_rate - HALF_LOAD) <= HALF_LOAD_TOLERANCE


def settle(server: Server, tree: list[int]) -> None:
    """Wait until the server is idle. wrk closes its connections at the end of a run, but the requests the server
    already accepted are still computed (a sync API is not cancelled when its client leaves): without this, a run
    would start behind the previous run's backlog, holding `max_concurrency` slots (429s) and the CPU."""
    began = time.monotonic()
    quiet = 0
    while time.monotonic() - began < SETTLE_SECONDS and quiet < 2:
        before = process_seconds(tree)
        time.sleep(SETTLE_INTERVAL)
        quiet = quiet + 1 if (process_seconds(tree) - before) / SETTLE_INTERVAL < IDLE_CORES else 0
    waited = time.monotonic() - began
    if quiet < 2:
        log(f"  {server.name} still busy after {waited:.0f} s; starting anyway")
    elif waited > 2:
        log(f"  {server.name} drained the previous run's backlog in {waited:.1f} s")


def measure(args: argparse.Namespace, server: Server, load: Load, connections: int) -> dict[str, Any]:
    """Warm up (untimed), then time a run at the same concurrency."""
    if args.warmup > 0:
        wrk(args, server, load, connections, args.warmup, rebalance=False)
    return wrk(args, server, load, connections, args.duration)


def ratio(numerator: float, denominator: float) -> float | None:
    """None where the denominator is 0 (a run in which no request completed)."""
    return round(numerator / denominator, 3) if denominator else None


def at_least(value: float | None, target: float) -> bool:
    return value is not None and value >= target


def failed(run: dict[str, Any]) -> int:
    return int(run["non_2xx"] + sum(run["socket_errors"].values()))


def half_load(args: argparse.Namespace, server: Server, load: Load, full: dict[str, Any]) -> dict[str, Any]:
    """(b)'s latency with requests scheduled at half its full-load 2xx/s: evenly spaced, then Poisson."""
    if not full["ok_rps"]:
        return {"skipped": "no request completed at full load", "run": None}
    rate = HALF_LOAD * full["ok_rps"]
    connections = full["connections"]
    run = wrk(args, server, load, connections, args.duration, rate=rate)
    poisson = wrk(args, server, load, connections, args.duration, rate=rate, arrivals="poisson")
    return {
        "rate": round(rate, 1),
        "load_fraction": ratio(run["ok_rps"], full["ok_rps"]),
        "load_within_tolerance": near_half(run["ok_rps"], full["ok_rps"]),
        "run": run,
        "poisson_arrivals": {"load_fraction": ratio(poisson["ok_rps"], full["ok_rps"]), "run": poisson},
    }


# --- the run ----------------------------------------------------------------------------------------------------


def check_agreement(
    server: Server, calls: list[tuple[str, str, Any]], state: ServedState, scores: dict[str, list[float]]
) -> None:
    """Score the sample rows through each (key, path, body) of `server`: every answer must be ok, from the served
    model, and within SCORE_TOLERANCE of (b)'s scores. The first scores of each key are kept for the report."""
    for key, path, body in calls:
        status, answer = post_json(server.base_url + path, body)
        if status != 200 or any(row["status"] != "ok" for row in answer):
            raise RuntimeError(f"{server.name} {path} answered {status}: {str(answer)[:500]}")
        tags = {row["model_tag"] for row in answer}
        if tags != {state.model_tag}:
            raise RuntimeError(f"{server.name} {path} serves {tags}, not {state.model_tag}")
        compare_scores(server, path, key, [row["score"] for row in answer], scores)


def check_mlflow_agreement(server: Server, state: ServedState, scores: dict[str, list[float]]) -> None:
    """MLflow's probabilities for the sample rows, P(label = 1) compared with (b)'s."""
    status, answer = post_json(server.base_url + "/invocations", mlflow_body(state.feature_rows[:SAMPLE_IDS]))
    if status != 200:
        raise RuntimeError(f"{server.name} /invocations answered {status}: {str(answer)[:500]}")
    compare_scores(server, "/invocations", "f", [positive for _, positive in answer["predictions"]], scores)


def compare_scores(server: Server, path: str, key: str, values: list[float], scores: dict[str, list[float]]) -> None:
    scores.setdefault(key, values)
    reference = scores.get("b", values)
    difference = max(abs(x - y) for x, y in zip(values, reference, strict=True))
    if difference > SCORE_TOLERANCE:
        raise RuntimeError(f"{server.name} {path} scores differ from (b)'s by up to {difference:.3g}: another model?")


def bench_workers(
    args: argparse.Namespace,
    state: ServedState,
    loads: dict[str, Load],
    workers: int,
    log_dir: Path,
    scores: dict,
    peer: MlflowPeer | None,
) -> dict[str, Any]:
    connections = args.connections
    ids = state.ids[:SAMPLE_IDS]
    result: dict[str, Any] = {}
    started: dict[str, Any] = {}
    with bento_server(state, args, workers, log_dir) as bento:
        started["bento"] = startup(bento)
        check_agreement(
            bento,
            [  # (b) first: the others are compared with it
                ("b", "/predict", {"entity_ids": ids}),
                ("a", "/predict_features", {"rows": state.feature_rows[:SAMPLE_IDS]}),
                ("d", "/predict_batch", {"entity_ids": ids}),
            ],
            state,
            scores,
        )
        log(f"{workers} worker(s): (a) /predict_features and (b) /predict at {connections} connections")
        result["a_predict_features"] = measure(args, bento, loads["features"], connections)
        result["b_predict"] = measure(args, bento, loads["ids"], connections)
        log(f"{workers} worker(s): (b) at half its maximum throughput")
        result["b_predict_half_load"] = half_load(args, bento, loads["ids"], result["b_predict"])
        log(f"{workers} worker(s): (d) /predict_batch against /predict")
        batching = {}
        for batch_connections in args.batch_connections:
            predict = measure(args, bento, loads["ids"], batch_connections)
            batch = measure(args, bento, loads["batch"], batch_connections)
            batching[str(batch_connections)] = {
                "predict": predict,
                "predict_batch": batch,
                "batch_over_predict_rps": ratio(batch["ok_rps"], predict["ok_rps"]),
                "failed_requests": {"predict": failed(predict), "predict_batch": failed(batch)},
            }
        result["d_batching"] = batching
    with bento_server(state, args, workers, log_dir, compiled=False) as today:
        started["bento_uncompiled"] = startup(today)
        check_agreement(today, [("e", "/predict", {"entity_ids": ids})], state, scores)
        log(f"{workers} worker(s): (e) /predict with compiled inference off at {connections} connections")
        result["e_predict_uncompiled"] = measure(args, today, loads["ids"], connections)
    with baseline_server(state, args, workers, log_dir) as baseline:
        started["baseline"] = startup(baseline)
        check_agreement(baseline, [("c", "/predict", {"entity_ids": ids})], state, scores)
        log(f"{workers} worker(s): (c) the FastAPI baseline /predict at {connections} connections")
        result["c_baseline_predict"] = measure(args, baseline, loads["ids"], connections)
    if peer is not None:
        with mlflow_server(peer, args, workers, log_dir) as mlflow:
            started["mlflow"] = startup(mlflow)
            check_mlflow_agreement(mlflow, state, scores)
            log(f"{workers} worker(s): (f) MLflow /invocations at {connections} connections")
            result["f_mlflow_invocations"] = measure(args, mlflow, loads["mlflow"], connections)
    result["startup"] = started

    a, b, c = result["a_predict_features"], result["b_predict"], result["c_baseline_predict"]
    e = result["e_predict_uncompiled"]
    f = result.get("f_mlflow_invocations")
    result["ratios"] = {
        "b_over_a_rps": ratio(b["ok_rps"], a["ok_rps"]),
        "b_over_c_rps": ratio(b["ok_rps"], c["ok_rps"]),
        "b_over_a_p50": ratio(b["p50_ms"], a["p50_ms"]),
        "b_over_c_p50": ratio(b["p50_ms"], c["p50_ms"]),
        "b_over_a_p99": ratio(b["p99_ms"], a["p99_ms"]),
        "b_over_c_p99": ratio(b["p99_ms"], c["p99_ms"]),
        "batch_over_predict_rps": {key: pair["batch_over_predict_rps"] for key, pair in batching.items()},
        "predict_over_uncompiled_rps": ratio(b["ok_rps"], e["ok_rps"]),
        "readyz_compiled_over_uncompiled": ratio(started["bento"]["readyz_s"], started["bento_uncompiled"]["readyz_s"]),
    }
    if f is not None:
        result["ratios"]["predict_features_over_mlflow_rps"] = ratio(a["ok_rps"], f["ok_rps"])
    return result


def meets_targets(by_workers: dict[str, dict[str, Any]]) -> dict[str, bool]:
    met = {}
    for workers, result in by_workers.items():
        ratios = result["ratios"]
        met[f"w{workers}_b_over_a_rps"] = at_least(ratios["b_over_a_rps"], TARGETS["b_over_a_rps"])
        met[f"w{workers}_b_over_c_rps"] = at_least(ratios["b_over_c_rps"], TARGETS["b_over_c_rps"])
        # Judged only on a run that completed requests at no less than 40 % of the full-load rate (lighter load
        # would flatter the tail); a heavier one is accepted, as it can only make the tail worse.
        half = result["b_predict_half_load"]
        met[f"w{workers}_predict_p99_at_half_max_ms"] = (
            half["run"] is not None
            and half["run"]["requests"] > 0
            and half["load_fraction"] >= HALF_LOAD - HALF_LOAD_TOLERANCE
            and half["run"]["p99_ms"] <= TARGETS["predict_p99_at_half_max_ms"]
        )
        pairs = result["d_batching"].values()
        met[f"w{workers}_batch_over_predict_rps"] = all(
            at_least(value, TARGETS["batch_over_predict_rps_min"])
            for value in ratios["batch_over_predict_rps"].values()
        )
        met[f"w{workers}_batch_zero_failed"] = all(
            failed(pair["predict_batch"]) == TARGETS["batch_failed_requests"] for pair in pairs
        )
        met[f"w{workers}_predict_over_uncompiled_per_worker"] = at_least(
            ratios["predict_over_uncompiled_rps"], TARGETS["predict_over_uncompiled_per_worker"]
        )
        if "predict_features_over_mlflow_rps" in ratios:
            met[f"w{workers}_predict_features_over_mlflow"] = at_least(
                ratios["predict_features_over_mlflow_rps"], TARGETS["predict_features_over_mlflow"]
            )
        compiled_s = result["startup"]["bento"]["readyz_s"]
        today_s = result["startup"]["bento_uncompiled"]["readyz_s"]
        met[f"w{workers}_readyz_no_slower"] = compiled_s <= max(
            today_s * TARGETS["readyz_compiled_over_uncompiled_max"],
            today_s + TARGETS["readyz_compiled_minus_uncompiled_max_s"],
        )
    return met


def agreement(scores: dict[str, list[float]]) -> dict[str, float]:
    reference = scores["b"]
    return {
        f"max_abs_score_diff_{key}_vs_b": max(abs(x - y) for x, y in zip(values, reference, strict=True))
        for key, values in sorted(scores.items())
        if key != "b"
    }


def cpu_noise(by_workers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    others = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if "cpu_cores" in node:
                others.append(node["cpu_cores"]["other"])
            for value in node.values():
                collect(value)

    collect(by_workers)
    return {
        "other_cores_mean": round(sum(others) / len(others), 2),
        "other_cores_max": round(max(others), 2),
        "timed_runs": len(others),
    }


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    began = time.monotonic()
    load_before = os.getloadavg()
    log(f"building the state folder: {args.customers} customers, trained and promoted champion, SQLite online store")
    state = build_state(workdir / "state", args.customers)
    log(f"champion {state.model_tag}; {len(state.ids)} entities with complete fresh features {state.statuses}")
    loads = {
        "features": write_load(
            workdir, "features", "/predict_features", [{"rows": [r]} for r in state.feature_rows], args.seed
        ),
        "ids": write_load(workdir, "ids", "/predict", [{"entity_ids": [i]} for i in state.ids], args.seed),
        "batch": write_load(workdir, "batch", "/predict_batch", [{"entity_ids": [i]} for i in state.ids], args.seed),
    }
    peer = None
    if args.mlflow:
        peer = prepare_mlflow(args.mlflow_venv, state, workdir)
        log(f"MLflow {peer.version} in {peer.venv_dir} ({peer.venv_megabytes:.0f} MB); model saved in {peer.model_dir}")
        # Same rows, same seed, so the same shuffled order as (a)'s bodies.
        bodies = [mlflow_body([row]) for row in state.feature_rows]
        loads["mlflow"] = write_load(workdir, "mlflow", "/invocations", bodies, args.seed)
    log_dir = workdir / "logs"
    log_dir.mkdir()
    scores: dict[str, list[float]] = {}
    by_workers = {str(w): bench_workers(args, state, loads, w, log_dir, scores, peer) for w in args.workers}
    scaling = {}
    if "1" in by_workers and "2" in by_workers:
        for key in SCALED_RUNS:
            if key in by_workers["1"]:
                scaling[f"{key}_2w_over_1w_rps"] = ratio(by_workers["2"][key]["ok_rps"], by_workers["1"][key]["ok_rps"])
    return {
        "benchmark": "cicloml serving",
        "config": {
            "workers": args.workers,
            "connections": args.connections,
            "batch_connections": args.batch_connections,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "wrk": f"-t1 --timeout {WRK_TIMEOUT_S}s --latency, Lua script: one random body per request",
            "customers": args.customers,
            "entities_in_bodies": len(state.ids),
            "model_tag": state.model_tag,
            "server_env": args.server_env,
            "rebalance_uneven_runs": args.rebalance,
            "bento_config": f"BENTOML_CONFIG_OVERRIDES={service_overrides(1)} (N workers)",
            "baseline": f"uvicorn {BASELINE_APP} --workers N --no-access-log",
            "uncompiled": "(e): the bento with CICLO_COMPILED_INFERENCE=false; (a)-(d) and (c) with it true",
            "compilation": state.compilation,
            "mlflow": peer.describe() if peer is not None else None,
            "readyz_no_slower": "compiled readyz_s <= max(1.1 x uncompiled, uncompiled + 0.5 s), per worker count",
            "half_load": "requests scheduled from wrk's Lua delay() at half of (b)'s full-load 2xx/s: evenly "
            "spaced (run) and Poisson (poisson_arrivals)",
            "seed": args.seed,
        },
        "score_agreement": agreement(scores),
        "by_workers": by_workers,
        "scaling": scaling,
        "targets": TARGETS,
        "meets_targets": meets_targets(by_workers),
        "cpu_noise": {
            **cpu_noise(by_workers),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "wall_seconds": round(time.monotonic() - began, 1),
        "environment": environment(args),
    }


def environment(args: argparse.Namespace) -> dict[str, Any]:
    wrk_version = subprocess.run([args.wrk, "--version"], capture_output=True, text=True).stdout.splitlines()
    return {
        "python": platform.python_version(),
        "bentoml": version("bentoml"),
        "fastapi": version("fastapi"),
        "uvicorn": version("uvicorn"),
        "scikit_learn": version("scikit-learn"),
        "treelite": version("treelite"),
        "feast": version("feast"),
        "wrk": wrk_version[0].strip() if wrk_version else None,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # A SIGTERM unwinds like Ctrl-C, so every server started so far is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="cicloml-bench-serve-"))
    try:
        # Feast prints progress on stdout; keep stdout for the JSON result alone.
        with contextlib.redirect_stdout(sys.stderr):
            result = run(args, workdir)
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
