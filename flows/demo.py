"""demo: the embedded default end to end — seeded data → Feast → a gated model → batch predictions.

`make demo` runs this and prints a one-line JSON summary last.
"""

from prefect import flow
from pydantic import BaseModel

from flows.batch_predict import BatchPredictParams, batch_predict
from flows.local import run_locally
from flows.materialize_features import MaterializeParams, materialize_features
from flows.train import TrainParams, train


class DemoSummary(BaseModel):
    rows_materialized: int
    model_tag: str
    promoted: bool
    roc_auc: float | None
    gate: list[str]
    predictions: int
    predictions_path: str


@flow(name="demo")
def demo(customers: int = 2000, days: int = 90) -> DemoSummary:
    """Generate the demo world, materialize it, train and gate a model, and score every customer."""
    features = materialize_features(
        MaterializeParams(generate_demo_data=True, demo_customers=customers, demo_days=days)
    )
    trained = train(TrainParams())
    predictions = batch_predict(BatchPredictParams())
    return DemoSummary(
        rows_materialized=features.rows,
        model_tag=trained.tag,
        promoted=trained.promoted,
        roc_auc=trained.decision.challenger.roc_auc,
        gate=trained.decision.reasons,
        predictions=predictions.rows,
        predictions_path=str(predictions.parquet_path),
    )


if __name__ == "__main__":
    print(run_locally(demo).model_dump_json())
