"""Live traffic profiles from a real two-worker `bentoml serve`: exact counts after a graceful stop, a window the
drift check reads against the model's training reference, and no corrupt file after a crash.

The profiles are whylogs sketches, merged across workers the way the drift flow merges them: counts are exact, so the
merged profile must count every scored row once, whichever worker answered it.
"""

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path

import httpx
import psutil
import pytest

from cicloml.drift import compare_profiles
from cicloml.prediction_log import read_prediction_log, rows_disagreement, window_logged_rows
from cicloml.profiling import (
    DatasetProfileView,
    read_profile,
    read_window_profiles,
    window_folder,
    window_profile_paths,
    window_profiled_rows,
)
from cicloml.registry import ModelRegistry
from cicloml.settings import Settings
from cicloml.spec import DriftSpec, load_spec
from tests.conftest import ROOT, ciclo_environment, free_port
from tests.service.conftest import BENTOML, SERVICE, STOP_SECONDS, _tail, _wait_ready, serving_environment
from tests.service.state import build_served_state

pytestmark = pytest.mark.slow

END = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
CUSTOMERS = 100
DEMO_IDS = list(range(1001, 1001 + CUSTOMERS))
REQUESTS = 300
FEATURE = "tenure_days"
WAIT_SECONDS = 120  # upper bound on waiting for the server to reach a state; never a measured duration
TWO_WORKERS = json.dumps({"services": {"cicloml": {"workers": 2}}})


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with ciclo_environment(tmp_path_factory.mktemp("profiling")) as settings:
        build_served_state(settings, END, customers=CUSTOMERS)
        yield settings


@contextmanager
def two_worker_server(state: Settings, log_name: str, **settings: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """`bentoml serve` with two workers in its own process group; yields the process (for the test to stop) and URL."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = state.state_dir / log_name
    environment = serving_environment(state.state_dir, **settings) | {"BENTOML_CONFIG_OVERRIDES": TWO_WORKERS}
    command = [str(BENTOML), "serve", SERVICE, "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_ready(process, base_url, log_path)
        yield process, base_url
    finally:
        if process.poll() is None:
            kill_server(process)


def kill_server(process: subprocess.Popen) -> None:
    """SIGKILL the server and its workers. BentoML starts each worker in a process group of its own, so killing
    the server's group alone would leave them serving (and writing profiles)."""
    workers = psutil.Process(process.pid).children(recursive=True)
    os.killpg(process.pid, signal.SIGKILL)
    for worker in workers:
        with suppress(psutil.NoSuchProcess):
            worker.kill()
    psutil.wait_procs(workers, timeout=10)
    process.wait(timeout=10)


def predict_on_a_fresh_connection(base_url: str, *entity_ids: int) -> list[dict]:
    """One /predict on its own connection: new connections are what the kernel spreads across the workers."""
    response = httpx.post(f"{base_url}/predict", json={"entity_ids": list(entity_ids)}, timeout=WAIT_SECONDS)
    assert response.status_code == 200, response.text
    return response.json()


def profile_files(profiles_dir: Path) -> list[Path]:
    return [path for folder in window_folders(profiles_dir) for path in window_profile_paths(folder)]


def window_folders(profiles_dir: Path) -> list[Path]:
    """<profiles>/<model name>/<model version>/<window>/"""
    return sorted(path for path in profiles_dir.glob("*/*/*") if path.is_dir())


def column_count(view: DatasetProfileView, column: str) -> int:
    return view.get_column(column).to_summary_dict()["counts/n"]


@pytest.fixture
def profiles_dir(state: Settings) -> Path:
    """The state's profiles folder, emptied (the prediction log too): each test counts only its own server's."""
    shutil.rmtree(state.profiles_dir, ignore_errors=True)
    shutil.rmtree(state.prediction_log_dir, ignore_errors=True)
    return state.profiles_dir


def test_every_scored_row_is_counted_once_across_workers_after_a_graceful_stop(
    state: Settings, profiles_dir: Path
) -> None:
    with two_worker_server(state, "serve-profiling.log") as (process, url):
        # Every demo customer once: some are not scored (the demo has customers with missing activity), and those
        # rows are answered but not profiled.
        first = [row for row in predict_on_a_fresh_connection(url, *DEMO_IDS) if row["status"] == "ok"]
        ok_ids = [row["entity_id"] for row in first]
        assert 0 < len(ok_ids) < CUSTOMERS
        scored = list(ok_ids)
        for request in range(REQUESTS):
            predictions = predict_on_a_fresh_connection(url, ok_ids[request % len(ok_ids)])
            assert [row["status"] for row in predictions] == ["ok"]
            scored += [row["entity_id"] for row in predictions]
        ok_rows = len(scored)
        assert [row["status"] for row in predict_on_a_fresh_connection(url, 5)] == ["unknown_entity"]

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=STOP_SECONDS) == 0, _tail(state.state_dir / "serve-profiling.log")

    files = profile_files(profiles_dir)
    assert files, "no traffic profile was written at shutdown"
    workers = {read_profile(path).metadata["worker"] for path in files}
    assert 1 <= len(workers) <= 2  # both workers when connections were spread over them (usual, not guaranteed)
    views = [read_window_profiles(folder) for folder in window_folders(profiles_dir)]
    for view in views:
        assert {FEATURE, "score", "plan"} <= set(view.get_columns())
    assert sum(column_count(view, FEATURE) for view in views) == ok_rows
    assert sum(column_count(view, "score") for view in views) == ok_rows
    assert sum(int(view.metadata["rows"]) for view in views) == ok_rows
    # The prediction log (for delayed labels) holds every scored entity once per time it was scored, and only those.
    logged = read_prediction_log(state.prediction_log_dir, first[0]["model_tag"])
    assert sorted(logged["customer_id"]) == sorted(scored)
    assert logged["score"].between(0, 1).all()

    # The drift flow's comparison: every feature, and the score, against the reference the model was trained with.
    registry = ModelRegistry(state, load_spec(state.spec_path).name)
    model = registry.load(str(registry.champion()))
    schema = model.lineage.features
    for view in views:
        report = compare_profiles(
            model.reference_profile(), view, features=schema.features, spec=DriftSpec(), model_tag=model.tag
        )
        assert {feature.column for feature in report.features if feature.kind == "numeric"} == set(schema.numeric)
        assert {feature.column for feature in report.features if feature.kind == "categorical"} == set(
            schema.categorical
        )
        assert all(feature.current_rows > 0 for feature in report.features)
        assert report.prediction is not None and report.prediction.current_rows > 0


def test_a_killed_server_leaves_only_whole_profiles(state: Settings, profiles_dir: Path) -> None:
    stop = threading.Event()
    sent = 0

    def send_until_stopped(url: str) -> None:
        nonlocal sent
        while not stop.is_set():
            try:
                predict_on_a_fresh_connection(url, DEMO_IDS[sent % CUSTOMERS])
            except httpx.TransportError:
                return  # the server is gone
            sent += 1

    with two_worker_server(state, "serve-killed.log", profile_window_seconds="2") as (process, url):
        sender = threading.Thread(target=send_until_stopped, args=(url,))
        sender.start()
        try:
            # Kill mid-traffic once a window has ended and been written (its file exists), rows of the next buffered.
            deadline = time.monotonic() + WAIT_SECONDS
            while not profile_files(profiles_dir) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert profile_files(profiles_dir), _tail(state.state_dir / "serve-killed.log")
            kill_server(process)
        finally:
            stop.set()
            sender.join(timeout=WAIT_SECONDS)

    assert sent > 0
    for folder in window_folders(profiles_dir):
        # A write interrupted by the kill leaves a .tmp- file at most; plant one to prove no reader takes it.
        (folder / ".tmp-1-crashed.bin").write_bytes(b"half a profile")
        paths = window_profile_paths(folder)
        assert all(not path.name.startswith(".") for path in paths)
        each = [read_profile(path) for path in paths]  # every whole file deserializes
        merged = read_window_profiles(folder)
        assert column_count(merged, "score") == sum(column_count(view, "score") for view in each)
    assert sum(int(read_profile(path).metadata["rows"]) for path in profile_files(profiles_dir)) <= sent


def test_a_worker_killed_mid_window_loses_at_most_its_last_segment(state: Settings, tmp_path: Path) -> None:
    """Hour-long windows written in one-second segments: a kill -9 mid-window leaves every row scored more than a
    few segments before it on disk, in the profiles and the prediction log alike, and the counts are compared."""
    # A copy of the state with no traffic records yet: the other tests' rows would share this hour's window.
    shutil.copytree(state.state_dir, tmp_path / "state", ignore=shutil.ignore_patterns("profiles", "prediction_log"))
    answered: list[float] = []  # when each scored row's answer came back
    stop = threading.Event()

    def send_until_stopped(url: str) -> None:
        while not stop.is_set():
            try:
                rows = predict_on_a_fresh_connection(url, *DEMO_IDS[:5])
            except httpx.TransportError:
                return  # the server is gone
            answered.extend(time.monotonic() for row in rows if row["status"] == "ok")

    settings = {"profile_window_seconds": "3600", "profile_segment_seconds": "1"}
    with (
        ciclo_environment(tmp_path / "state") as copy,
        two_worker_server(copy, "serve-segments.log", **settings) as (process, url),
    ):
        sender = threading.Thread(target=send_until_stopped, args=(url,))
        sender.start()
        try:
            time.sleep(6)  # several segments of traffic
            killed = time.monotonic()
            kill_server(process)
        finally:
            stop.set()
            sender.join(timeout=WAIT_SECONDS)

    model_tag = str(ModelRegistry(copy, "churn").champion())
    window = datetime.fromtimestamp(time.time() // 3600 * 3600, timezone.utc)
    if window_logged_rows(copy.prediction_log_dir, model_tag, window) == 0:  # the kill fell just after the hour
        window = datetime.fromtimestamp(window.timestamp() - 3600, timezone.utc)
    # A segment is written within segment_seconds of its first row, plus the writer's one-second tick.
    settled = sum(1 for moment in answered if moment < killed - 3)
    profiled = window_profiled_rows(window_folder(copy.profiles_dir, model_tag, window))
    logged = window_logged_rows(copy.prediction_log_dir, model_tag, window)
    assert settled > 50, "too little traffic to judge"
    assert profiled >= settled and logged >= settled
    assert max(profiled, logged) <= len(answered)
    assert (rows_disagreement(profiled, logged) is None) == (profiled == logged)
