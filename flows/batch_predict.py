"""batch-predict: score every known entity as of a date with the champion ("precomputed predictions").

backfill-predictions does it for a run of past dates, one task per date on the configured task runner (threads, or
Dask with CICLO_TASK_RUNNER=dask: `flows/runners.py`).
"""

from datetime import datetime, timedelta, timezone

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from cicloml.batch import PredictionReport, model_contract
from cicloml.errors import ConfigError
from cicloml.feature_store import open_store
from cicloml.registry import ModelRegistry
from cicloml.settings import get_settings
from cicloml.spec import load_spec
from flows import tasks
from flows.local import run_locally
from flows.runners import ConfiguredTaskRunner


class BatchPredictParams(BaseModel):
    as_of: datetime | None = None
    """Score with the features known at this time (default: now). One set of predictions per date."""
    model_tag: str | None = None
    """Score with this version instead of the champion."""


@flow(name="batch-predict")
def batch_predict(params: BatchPredictParams = BatchPredictParams()) -> PredictionReport:
    """Look up every entity live in the feature store as of `as_of`, fetch its point-in-time features, score it
    with the champion and replace that date's predictions (Parquet dataset and SQLite table)."""
    settings = get_settings()
    spec = load_spec(settings.spec_path)
    registry = ModelRegistry(settings, spec.name)
    tag = _model_to_score(registry, params.model_tag)
    as_of = params.as_of or datetime.now(timezone.utc)

    model = tasks.load_model(registry, tag)
    store = open_store(spec.features.repo, settings)
    frame = tasks.fetch_latest_features(store, model_contract(store, model), as_of)  # what this model was trained on
    predictions = tasks.score_entities(model, frame, as_of)
    report = tasks.write_predictions(predictions, settings.predictions_dir, as_of)

    create_markdown_artifact(
        key="batch-predictions",
        markdown=f"**{report.rows} predictions** for {as_of:%Y-%m-%d} with `{tag}`: "
        f"{int(predictions['predicted'].sum())} above the threshold.\n\n"
        f"- Parquet: `{report.parquet_path}`\n- SQLite table `predictions` in `{report.table_path}`",
    )
    get_run_logger().info("Scored %d entities with %s into %s", report.rows, tag, report.parquet_path)
    return report


class BackfillParams(BaseModel):
    start: datetime
    """The first date to score, as of this time of day; every date after it to `end` is scored as of the same time."""
    end: datetime
    """The last date to score (inclusive)."""
    model_tag: str | None = None
    """Score with this version instead of the champion."""


class BackfillResult(BaseModel):
    model_tag: str
    reports: list[PredictionReport]
    """One per date, oldest first."""


@flow(name="backfill-predictions", task_runner=ConfiguredTaskRunner())
def backfill_predictions(params: BackfillParams) -> BackfillResult:
    """Score every date from `start` to `end` as batch-predict would have on that date, one task per date in
    parallel on the configured task runner; each date's predictions are replaced, never added to."""
    settings = get_settings()
    spec = load_spec(settings.spec_path)
    registry = ModelRegistry(settings, spec.name)
    tag = _model_to_score(registry, params.model_tag)
    days = (params.end.date() - params.start.date()).days
    if days < 0:
        raise ConfigError(f"backfill end {params.end:%Y-%m-%d} is before its start {params.start:%Y-%m-%d}")

    model = tasks.load_model(registry, tag)
    dates = [params.start + timedelta(days=day) for day in range(days + 1)]
    reports = tasks.predict_date.map(unmapped(model), unmapped(spec.features.repo), unmapped(settings), dates).result()
    create_markdown_artifact(
        key="backfill-predictions",
        markdown=f"**{sum(report.rows for report in reports)} predictions** for {len(reports)} dates "
        f"({dates[0]:%Y-%m-%d} to {dates[-1]:%Y-%m-%d}) with `{tag}`",
    )
    get_run_logger().info("Scored %d dates with %s", len(reports), tag)
    return BackfillResult(model_tag=tag, reports=reports)


def _model_to_score(registry: ModelRegistry, model_tag: str | None) -> str:
    tag = model_tag or registry.champion()
    if tag is None:
        raise ConfigError(f"{registry.name} has no champion yet: run the train flow, or pass model_tag")
    return tag


if __name__ == "__main__":
    print(run_locally(batch_predict).model_dump_json())
