"""The seeded demo world materialized, with a trained champion: where the monitoring flows' tests start."""

from datetime import datetime

from cicloml.demo.churn import DemoTables, generate_churn_data
from flows.materialize_features import MaterializeParams, materialize_features
from flows.train import TrainParams, train


def world_with_champion(end: datetime, customers: int, days: int) -> tuple[str, DemoTables]:
    """Generate and materialize the demo world up to `end`, train a champion on it; its tag and the world's tables
    (regenerated from the same seed: what the flow wrote)."""
    materialize_features(MaterializeParams(end=end, generate_demo_data=True, demo_customers=customers, demo_days=days))
    champion = train(TrainParams(as_of=end)).tag
    return champion, generate_churn_data(end, customers=customers, days=days, seed=7)
