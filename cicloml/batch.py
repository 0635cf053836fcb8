"""Batch scoring ("precomputed predictions"): score every known entity as of a date with the champion.

Predictions land in two places a dashboard can read: a Parquet dataset partitioned by date, and a SQLite table.
Both writes are idempotent per date (the date's predictions are replaced, never appended) and atomic (a temp
file renamed into place; one transaction). Dates can be scored at once (a backfill): each writes its own Parquet
partition, and the SQLite transactions take turns.
"""

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from feast import FeatureStore
from pydantic import BaseModel

from cicloml.atomic import atomic_path
from cicloml.contract import FeatureContract
from cicloml.feature_store import fetch_latest_features, open_store
from cicloml.models.inputs import encode_frame
from cicloml.models.row_scorer import row_scoring
from cicloml.registry import LoadedModel
from cicloml.settings import Settings

TABLE = "predictions"


class PredictionReport(BaseModel):
    model_tag: str
    as_of: datetime
    rows: int
    parquet_path: Path
    table_path: Path


def model_contract(store: FeatureStore, model: LoadedModel) -> FeatureContract:
    """What `model` reads from the feature store: the features it was trained on, of the service it was trained on."""
    features = model.lineage.features
    return FeatureContract.resolve(store, model.lineage.feature_service, features=features.input_names)


def score_entities(model: LoadedModel, feature_frame: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """One prediction per row of `feature_frame` (the model's features as Feast gives them): entity keys, the as-of
    time, score, decision, the number of missing features, model, time."""
    features = model.lineage.features
    encoded = encode_frame(features.feature_inputs, feature_frame, as_of)
    # Compiled trees score only small batches (a few hundred rows at most): beyond, scikit-learn's own is faster.
    scores = row_scoring(model.pipeline, features, model.compiled)({name: encoded[name] for name in features.features})
    predictions = feature_frame[list(features.entity_keys)].reset_index(drop=True)
    predictions["as_of"] = pd.Timestamp(as_of)
    predictions["score"] = scores
    predictions["predicted"] = (scores >= model.lineage.threshold).astype("int8")
    predictions["missing_features"] = feature_frame[features.input_names].isna().sum(axis=1).to_numpy()
    predictions["model_tag"] = model.tag
    predictions["scored_at"] = pd.Timestamp(datetime.now(timezone.utc))
    return predictions


def write_predictions(predictions: pd.DataFrame, predictions_dir: Path, as_of: datetime) -> PredictionReport:
    """Replace the date's predictions in the Parquet dataset and in the SQLite table."""
    day = as_of.date().isoformat()
    parquet_path = predictions_dir / "parquet" / f"as_of_date={day}" / "predictions.parquet"
    with atomic_path(parquet_path) as temporary:
        predictions.to_parquet(temporary, index=False)

    table_path = predictions_dir / "predictions.db"
    rows = predictions.assign(as_of_date=day, as_of=_as_text(predictions["as_of"]))
    rows["scored_at"] = _as_text(rows["scored_at"])
    columns = ", ".join(f'"{column}"' for column in rows.columns)
    # One transaction: the old day goes only if the new day lands. Taken for writing at once (IMMEDIATE), so a date
    # written at the same time waits for it (up to the timeout) instead of failing with "database is locked".
    with sqlite3.connect(table_path, timeout=60, isolation_level=None) as connection:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} ({columns})")
        connection.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_by_date ON {TABLE} (as_of_date)")
        connection.execute(f"DELETE FROM {TABLE} WHERE as_of_date = ?", (day,))
        connection.executemany(
            f"INSERT INTO {TABLE} ({columns}) VALUES ({', '.join('?' * len(rows.columns))})",
            zip(*(rows[column].tolist() for column in rows.columns), strict=True),  # plain Python values
        )
    connection.close()
    return PredictionReport(
        model_tag=str(predictions["model_tag"].iloc[0]) if len(predictions) else "",
        as_of=as_of,
        rows=len(predictions),
        parquet_path=parquet_path,
        table_path=table_path,
    )


def predict_date(model: LoadedModel, repo_dir: Path, settings: Settings, as_of: datetime) -> PredictionReport:
    """Score every entity live as of `as_of` with `model` and replace that date's predictions: one date whole, so
    that a backfill can run its dates apart. It opens its own Feast store: a store handle does not travel between
    processes."""
    store = open_store(repo_dir, settings)
    frame = fetch_latest_features(store, model_contract(store, model), as_of)
    return write_predictions(score_entities(model, frame, as_of), settings.predictions_dir, as_of)


def _as_text(times: pd.Series) -> pd.Series:
    """ISO text for SQLite. A batch has a handful of distinct times, and formatting each row costs seconds."""
    return times.map({moment: moment.isoformat() for moment in times.unique()})
