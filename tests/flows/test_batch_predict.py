"""batch-predict under Prefect: one set of predictions per date, equal to the champion scoring the same features."""

import sqlite3
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from cicloml.contract import FeatureContract
from cicloml.errors import ConfigError
from cicloml.feature_store import fetch_feature_frame, open_store
from cicloml.registry import ModelRegistry
from flows.batch_predict import BatchPredictParams, batch_predict
from flows.materialize_features import MaterializeParams, materialize_features
from flows.train import TrainParams, train
from tests.conftest import FEATURE_REPO, ciclo_environment

END = datetime(2026, 11, 1, 6, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    with ciclo_environment(tmp_path_factory.mktemp("batch")) as settings:
        materialize_features(MaterializeParams(end=END, generate_demo_data=True, demo_customers=300, demo_days=60))
        with pytest.raises(ConfigError, match="no champion yet"):
            batch_predict(BatchPredictParams(as_of=END))
        assert train(TrainParams(as_of=END)).promoted
        yield settings


def test_every_known_entity_is_scored_once_per_date_even_when_run_twice(settings):
    first = batch_predict(BatchPredictParams(as_of=END))
    again = batch_predict(BatchPredictParams(as_of=END + timedelta(hours=3)))  # same date, later run
    assert first.rows == again.rows == 300
    assert first.parquet_path == again.parquet_path
    parquet = pd.read_parquet(settings.predictions_dir / "parquet")
    assert len(parquet) == 300 and parquet["customer_id"].is_unique
    with sqlite3.connect(again.table_path) as connection:
        (count,) = connection.execute("SELECT COUNT(*) FROM predictions WHERE as_of_date = '2026-11-01'").fetchone()
    assert count == 300

    next_day = batch_predict(BatchPredictParams(as_of=END + timedelta(days=1)))
    assert sorted(
        path.parent.name for path in (settings.predictions_dir / "parquet").glob("*/predictions.parquet")
    ) == [
        "as_of_date=2026-11-01",
        "as_of_date=2026-11-02",
    ]
    assert next_day.rows == 300


def test_scores_equal_the_champion_on_the_same_point_in_time_features(settings):
    report = batch_predict(BatchPredictParams(as_of=END))
    predictions = pd.read_parquet(report.parquet_path).sort_values("customer_id")
    registry = ModelRegistry(settings, "churn")
    champion = registry.load(registry.champion())
    assert set(predictions["model_tag"]) == {champion.tag}
    entities = predictions[["customer_id"]].assign(event_timestamp=END)
    store = open_store(FEATURE_REPO, settings)
    frame = fetch_feature_frame(store, FeatureContract.resolve(store, "churn_v1"), entities)
    expected = champion.pipeline.predict_proba(frame[champion.lineage.features.features])[:, 1]
    np.testing.assert_allclose(predictions["score"].to_numpy(), expected, rtol=0, atol=1e-12)
    assert (predictions["predicted"] == (predictions["score"] >= champion.lineage.threshold)).all()
