"""The seeded demo world materialized, with a trained champion: where the monitoring flows' tests start."""

from datetime import datetime

from cicloml.demo.churn import DemoTables, Scenario, generate_churn_data, generate_traffic, served_features
from cicloml.models.row_scorer import row_scoring
from cicloml.prediction_log import PredictionLog
from cicloml.registry import ModelRegistry
from cicloml.settings import Settings
from cicloml.traffic import TrafficProfiler
from flows.materialize_features import MaterializeParams, materialize_features
from flows.train import TrainParams, train


def world_with_champion(end: datetime, customers: int, days: int) -> tuple[str, DemoTables]:
    """Generate and materialize the demo world up to `end`, train a champion on it; its tag and the world's tables
    (regenerated from the same seed: what the flow wrote)."""
    materialize_features(MaterializeParams(end=end, generate_demo_data=True, demo_customers=customers, demo_days=days))
    champion = train(TrainParams(as_of=end)).tag
    return champion, generate_churn_data(end, customers=customers, days=days, seed=7)


def serve_window(
    settings: Settings, model_tag: str, history: DemoTables, scenario: Scenario, window_start: datetime
) -> int:
    """Profile and log one window of served traffic as the service's workers would (two workers' files)."""
    registry = ModelRegistry(settings, "churn")
    model = registry.load(model_tag)
    features = served_features(history, generate_traffic(history, window_start, scenario=scenario))
    schema = model.lineage.features
    for worker, part in (("worker-a", features.iloc[::2]), ("worker-b", features.iloc[1::2])):
        columns = {name: part[name].tolist() for name in schema.features}
        scores = row_scoring(model.pipeline, schema)(columns).tolist()
        profiler = TrafficProfiler(
            settings.profiles_dir, model_tag, worker, clock=lambda: window_start.timestamp() + 60
        )
        profiler.record(columns, scores)
        profiler.close()
        log = PredictionLog(settings.prediction_log_dir, model_tag, worker, clock=lambda: window_start.timestamp() + 60)
        log.record({"customer_id": part["customer_id"].tolist()}, scores)
        log.close()
    return len(features)
