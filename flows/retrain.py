"""retrain: fresh features → train → gate → build the bento → serve the new champion → tell Slack.

Started by the `retrain/on-drift` deployment's trigger on a `cicloml.drift.detected` event (one run per model and
window, see flows/retraining.py), by the check that asked directly when no Prefect server runs (the embedded demo),
or by hand.
"""

from datetime import datetime

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from cicloml.alerts import retrain_message, send_once
from cicloml.serving import notify_server
from cicloml.settings import get_settings
from flows.build_bento import BuildBentoParams, build_bento
from flows.local import run_locally
from flows.materialize_features import MaterializeParams, materialize_features
from flows.runs import flow_run_url
from flows.train import TrainParams, train


class RetrainParams(BaseModel):
    as_of: datetime | None = None
    """Materialize and train with what is known by this time (default: now)."""
    reason: str = "started by hand"
    """Why this run happens (the check that asked passes the model and window); shown in Slack."""


class RetrainResult(BaseModel):
    rows_materialized: int
    challenger: str
    promoted: bool
    bento_tag: str | None
    serving: str
    alert: str


@flow(name="retrain")
def retrain(params: RetrainParams = RetrainParams()) -> RetrainResult:
    """Retrain on fresh features; a challenger that passes the gate is built and served, and Slack hears the
    outcome either way."""
    settings = get_settings()
    logger = get_run_logger()
    materialized = materialize_features(MaterializeParams(end=params.as_of))
    trained = train(TrainParams(as_of=params.as_of))

    bento_tag, serving = None, f"unchanged: {trained.tag} was not promoted"
    if trained.promoted:
        bento_tag = build_bento(BuildBentoParams(model_tag=trained.tag)).bento_tag
        server = notify_server(settings)
        serving = (
            f"`cicloml serve` (pid {server}) is switching to {bento_tag}"
            if server
            else f"{bento_tag} is built; no local server runs (start one with `make serve`)"
        )
    logger.info("retrain: %s %s; %s", trained.tag, trained.decision.label, serving)

    message = retrain_message(
        trained.tag, trained.decision, reason=params.reason, serving=serving, flow_run_url=flow_run_url()
    )
    delivery = send_once(
        settings.slack_webhook_url, message, key=f"retrain:{trained.tag}", ledger_dir=settings.alerts_dir
    )
    if delivery.status == "no_webhook":
        logger.warning("no Slack webhook configured (CICLO_SLACK_WEBHOOK_URL): the outcome is in the artifact")
        create_markdown_artifact(key="retrain-outcome", markdown=message["text"], description="not sent to Slack")
    return RetrainResult(
        rows_materialized=materialized.rows,
        challenger=trained.tag,
        promoted=trained.promoted,
        bento_tag=bento_tag,
        serving=serving,
        alert=delivery.status,
    )


if __name__ == "__main__":
    print(run_locally(retrain).model_dump_json())
