"""The parallel parts on a real local Dask cluster (CICLO_TASK_RUNNER=dask): the same answers as on threads.

One module-wide cluster of two worker processes on 127.0.0.1, stopped at the end; `distributed.get_task_stream`
shows the work ran on it, not in the test's process.
"""

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from distributed import Client, LocalCluster, get_task_stream
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from cicloml.registry import ModelRegistry
from cicloml.settings import Settings
from cicloml.spec import SearchSpec, SklearnModelSpec
from flows.batch_predict import BackfillParams, BatchPredictParams, backfill_predictions, batch_predict
from flows.detect_drift import DetectDriftAllParams, DetectDriftResult, detect_drift_all
from flows.runners import task_runner
from flows.train import TrainParams, train
from tests.conftest import ROOT, ciclo_environment
from tests.flows.world import serve_window, world_with_champion

END = datetime(2026, 11, 1, 6, tzinfo=timezone.utc)
CUSTOMERS, DAYS = 300, 60
FIRST, CHECKED = END + timedelta(hours=1), END + timedelta(hours=2)  # a version's first window is the skew check
SCENARIOS = ("none", "price_rise", "none", "price_rise")
"""Traffic in the checked window, per model version (the champion and three copies of it)."""
SEARCH = SklearnModelSpec(
    params={"max_iter": 60},
    search=SearchSpec(
        n_iter=4,
        splits=2,
        params={"learning_rate": [0.03, 0.1, 0.3], "max_depth": [2, 3, None], "max_leaf_nodes": [7, 31]},
    ),
)


def test_settings_choose_the_task_runner():
    assert isinstance(task_runner(Settings(task_runner="threads")), ThreadPoolTaskRunner)
    temporary = task_runner(Settings(task_runner="dask"))
    assert isinstance(temporary, DaskTaskRunner) and temporary.address is None
    assert (
        task_runner(Settings(task_runner="dask", dask_address="tcp://127.0.0.1:8786")).address == "tcp://127.0.0.1:8786"
    )
    with pytest.raises(ValueError, match="task_runner"):
        Settings(task_runner="ray")


@pytest.mark.slow
def test_the_threads_runner_never_imports_dask():
    code = (
        "import sys, flows.train, flows.detect_drift, flows.batch_predict, flows.runners as r, cicloml.settings as s\n"
        "r.task_runner(s.Settings(task_runner='threads'))\n"
        "print(sorted({'prefect_dask', 'distributed'} & set(sys.modules)))"
    )
    imported = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Client]:
    local = LocalCluster(host="127.0.0.1", n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with local, Client(local, set_as_default=False) as client:  # as default it would run Feast's dask work too
        yield client


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple[Path, list[str]]]:
    """A trained champion and three copies of it, each with traffic in two windows; the state folder and the tags."""
    state_dir = tmp_path_factory.mktemp("dask") / "state"
    with ciclo_environment(state_dir) as settings:
        champion, history = world_with_champion(END, CUSTOMERS, DAYS)
        registry = ModelRegistry(settings, "churn")
        model = registry.load(champion)
        copies = [registry.register(model.pipeline, model.lineage, model.reference_profile(), {}) for _ in range(3)]
        tags = [champion, *copies]
        for tag, scenario in zip(tags, SCENARIOS, strict=True):
            serve_window(settings, tag, history, "none", FIRST)
            serve_window(settings, tag, history, scenario, CHECKED)
        yield state_dir, tags


def on_dask(state_dir: Path, client: Client):
    return ciclo_environment(state_dir, task_runner="dask", dask_address=client.scheduler.address)


def ran(stream: Any, task: str) -> int:
    """How many tasks named `task` the cluster ran in `stream` (a `get_task_stream`); fails on any that erred."""
    assert {record["status"] for record in stream.data} == {"OK"}
    return sum(str(record["key"]).startswith(task) for record in stream.data)


def checked(result: DetectDriftResult) -> dict:
    """A version's result without the alert, incident and retraining outcomes, which a second run finds already
    done."""
    return result.model_dump(exclude={"alert", "incident", "retrain"})


@pytest.mark.slow
def test_drift_checks_of_many_versions_on_dask_equal_those_on_threads(world, cluster):
    state_dir, tags = world
    params = DetectDriftAllParams(window_start=CHECKED, retrain_in_process=False)
    with ciclo_environment(state_dir):
        on_threads = detect_drift_all(params)
    with on_dask(state_dir, cluster), get_task_stream(cluster) as stream:
        on_cluster = detect_drift_all(params)

    assert [result.model_tag for result in on_threads.results] == sorted(tags)
    assert [checked(result) for result in on_cluster.results] == [checked(result) for result in on_threads.results]
    drifted = {tag for tag, scenario in zip(tags, SCENARIOS, strict=True) if scenario == "price_rise"}
    assert {result.model_tag for result in on_cluster.results if result.drifted} == drifted
    assert {result.check for result in on_cluster.results} == {"drift"}
    # The drifted copies' estimated ROC AUC holds (the model ranks a price rise as well as ever): not retrained.
    assert [result.retrain for result in on_threads.results if result.drifted] == ["held"] * 2
    assert [result.retrain for result in on_cluster.results if result.drifted] == ["held"] * 2
    assert ran(stream, "check_window") == len(tags)


@pytest.mark.slow
def test_a_search_on_dask_picks_the_same_best_params_as_on_threads(world, cluster):
    state_dir, _ = world
    with ciclo_environment(state_dir) as settings:
        registry = ModelRegistry(settings, "churn")
        champion = registry.champion()
        on_threads = train(TrainParams(as_of=END, model=SEARCH)).tag
        if registry.champion() != champion:  # a champion's own data and settings would train nothing: put it back
            registry.rollback()
    with on_dask(state_dir, cluster), get_task_stream(cluster) as stream:
        on_cluster = train(TrainParams(as_of=END, model=SEARCH)).tag

    best = [
        {name: registry.lineage(tag).params["classifier"][name] for name in SEARCH.search.params}
        for tag in (on_threads, on_cluster)
    ]
    assert best[1] == best[0]
    assert registry.lineage(on_cluster).metrics == registry.lineage(on_threads).metrics
    # Every candidate and split of the search ran on the cluster, as a task of its own.
    assert ran(stream, "batch_of__fit_and_score") == SEARCH.search.n_iter * SEARCH.search.splits


@pytest.mark.slow
def test_a_backfill_on_dask_writes_one_set_of_predictions_per_date(world, cluster):
    state_dir, tags = world
    champion = tags[0]
    params = BackfillParams(start=END - timedelta(days=2), end=END, model_tag=champion)
    with on_dask(state_dir, cluster) as settings, get_task_stream(cluster) as stream:
        first = backfill_predictions(params)
        again = backfill_predictions(params)  # a rerun replaces each date's predictions, never adds to them
    assert ran(stream, "predict_date") == 6

    days = ["2026-10-30", "2026-10-31", "2026-11-01"]
    assert [report.as_of.date().isoformat() for report in again.reports] == days
    assert [report.rows for report in first.reports] == [report.rows for report in again.reports] == [CUSTOMERS] * 3
    parquet = pd.read_parquet(settings.predictions_dir / "parquet")
    assert parquet.groupby("as_of_date", observed=True)["customer_id"].agg(["size", "nunique"]).to_dict("list") == {
        "size": [CUSTOMERS] * 3,
        "nunique": [CUSTOMERS] * 3,
    }
    with sqlite3.connect(again.reports[0].table_path) as connection:
        counts = connection.execute("SELECT as_of_date, COUNT(*) FROM predictions GROUP BY as_of_date").fetchall()
    assert counts == [(day, CUSTOMERS) for day in days]

    # The backfill scores a date as batch-predict does.
    backfilled = pd.read_parquet(first.reports[-1].parquet_path)
    with ciclo_environment(state_dir):
        single = pd.read_parquet(batch_predict(BatchPredictParams(as_of=END, model_tag=champion)).parquet_path)
    columns = ["customer_id", "score", "predicted", "model_tag"]
    pd.testing.assert_frame_equal(backfilled[columns], single[columns])
