"""retrain: fresh features → anything new to learn? → train → gate → build the bento → serve it → tell Slack.

Started by the `retrain/on-drift` deployment's trigger on a `cicloml.drift.detected` event (one run per model and
window, see flows/retraining.py), by the check that asked directly when no Prefect server runs (the embedded demo),
or by hand.
"""

from datetime import datetime, timezone

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, field_validator

from cicloml.alerts import deferred_message, retrain_message, send_once
from cicloml.retraining import (
    PendingRetraining,
    Regime,
    clear_pending,
    clear_regime,
    label_delay,
    pending_requests,
    save_pending,
    save_regime,
)
from cicloml.serving import notify_server
from cicloml.settings import get_settings
from cicloml.spec import load_spec
from cicloml.training import read_labels
from flows.build_bento import BuildBentoParams, build_bento
from flows.local import run_locally
from flows.materialize_features import MaterializeParams, materialize_features
from flows.runs import flow_run_url
from flows.train import TrainParams, TrainResult, train


class RetrainParams(BaseModel):
    as_of: datetime | None = None
    """Materialize and train with what is known by this time (default: now)."""
    reason: str = "started by hand"
    """Why this run happens (the check that asked passes the model and window); shown in Slack."""
    model_tag: str | None = None
    """The model version the check found wanting; with `window_start`, a request that finds no new labels waits."""
    window_start: datetime | None = None
    """The window the check found wanting."""
    check: str | None = None
    """The check that asked: "drift", "quality", "follow_up" (or "skew"); None by hand."""
    since: datetime | None = None
    """The onset of the degradation that asked (the quality check): train on the labels from it on, when they
    suffice, and have the quality check follow up as they grow (`cicloml.retraining.Regime`)."""

    @field_validator("since", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if value == "" else value  # the trigger's template renders a request without an onset as ""


class RetrainResult(BaseModel):
    rows_materialized: int
    challenger: str | None
    """None when nothing was fitted (`skipped` says why)."""
    promoted: bool
    skipped: str | None = None
    """"skipped: no labelled data newer than …; labels for window W are expected from …", or None."""
    pending: bool = False
    """The request waits for labels (the quality check starts it again once they have matured)."""
    bento_tag: str | None
    serving: str
    alert: str
    answered_requests: list[str] = []
    """Waiting requests (model@window) this retraining answered, by training on new labels."""


@flow(name="retrain")
def retrain(params: RetrainParams = RetrainParams()) -> RetrainResult:
    """Retrain on fresh features when there are labels the champion never saw; a challenger that passes the gate is
    built and served, and Slack hears the outcome either way (a request with nothing new to learn from waits)."""
    settings = get_settings()
    logger = get_run_logger()
    materialized = materialize_features(MaterializeParams(end=params.as_of))
    trained = train(TrainParams(as_of=params.as_of, require_new_labels=True, since=params.since))
    if trained.tag is None or trained.decision is None:
        return _defer(params, trained, materialized.rows)
    _keep_regime(params, trained)
    # The requests waiting for new labels asked for this: a retraining on them (whatever the gate said).
    answered = pending_requests(settings.state_dir, trained.tag.split(":")[0])
    for request in answered:
        clear_pending(settings.state_dir, request)

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
        answered_requests=[request.key for request in answered],
    )


def _keep_regime(params: RetrainParams, trained: TrainResult) -> None:
    """A champion trained since an onset is followed up as the labels since it grow; a champion trained otherwise,
    or a follow-up the gate found no better, ends that."""
    settings, name = get_settings(), (trained.tag or "").split(":")[0]
    if trained.promoted and params.since is not None and trained.rows_since is not None:
        regime = Regime(onset=params.since, trained_rows=trained.rows_since, model_tag=trained.tag or "")
        save_regime(settings.state_dir, name, regime)
    elif trained.promoted or params.check == "follow_up":
        clear_regime(settings.state_dir, name)


def _defer(params: RetrainParams, trained: TrainResult, rows_materialized: int) -> RetrainResult:
    """Nothing new to learn from: keep a check's request waiting for its window's labels, and say when they are
    expected (the window's start plus the label table's typical delay)."""
    settings = get_settings()
    spec = load_spec(settings.spec_path)
    skipped = f"skipped: {trained.skipped}"
    waiting = None
    if params.model_tag and params.window_start and params.check:
        delay = label_delay(read_labels(settings, spec.labels), spec.labels)
        expected = params.window_start + delay if delay is not None else None
        if expected is not None:
            skipped += f"; labels for window {params.window_start:%Y-%m-%d %H:%M} UTC are expected from "
            skipped += f"{expected:%Y-%m-%d %H:%M} UTC"
        request = PendingRetraining(
            model_tag=params.model_tag,
            window_start=params.window_start,
            check=params.check,
            reason=params.reason,
            requested_at=params.as_of or datetime.now(timezone.utc),
            champion_cutoff=trained.freshness.champion_cutoff,
            labels_expected_from=expected,
            skipped=skipped,
            since=params.since,
        )
        save_pending(settings.state_dir, request)
        waiting = (
            f"pending: the daily quality check starts it again once {spec.retraining.min_new_labels} labels newer "
            "than the champion's have matured"
        )
    get_run_logger().info("retrain %s%s", skipped, f"; {waiting}" if waiting else "")
    message = deferred_message(params.reason, skipped, waiting, flow_run_url=flow_run_url())
    key = f"retrain-deferred:{params.model_tag}@{params.window_start}"
    delivery = send_once(settings.slack_webhook_url, message, key=key, ledger_dir=settings.alerts_dir)
    if delivery.status == "no_webhook":
        create_markdown_artifact(key="retrain-outcome", markdown=message["text"] + f"\n\n{skipped}")
    return RetrainResult(
        rows_materialized=rows_materialized,
        challenger=None,
        promoted=False,
        skipped=skipped,
        pending=waiting is not None,
        bento_tag=None,
        serving="unchanged: nothing was trained",
        alert=delivery.status,
    )


if __name__ == "__main__":
    print(run_locally(retrain).model_dump_json())
