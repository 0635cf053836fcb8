"""demo: the whole loop on the embedded default, narrated step by step, ending with a one-line JSON summary.

generate data → materialize → train → build → serve → normal traffic (no drift, no alert) → drifted traffic →
drift detected → Slack alert → retrain → promote → the new champion served → labels arrive → live quality →
batch predictions.

`make demo` runs it with 20-second traffic windows (CICLO_PROFILE_WINDOW_SECONDS) so the loop closes in minutes;
with no Slack webhook configured, alerts go to a local stand-in whose messages land in `<state>/demo/slack.jsonl`.
"""

import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from cicloml.demo.churn import LABEL_DELAY, DemoTables, DriftScenario, Scenario, generate_churn_data, generate_traffic
from cicloml.demo.live import LocalSlack, ServeProcess, TrafficSent, fresh_window, send_traffic, wait_for_window
from cicloml.registry import ModelRegistry
from cicloml.settings import Settings, get_settings
from cicloml.spec import load_spec
from flows.batch_predict import BatchPredictParams, batch_predict
from flows.build_bento import PROJECT_DIR, BuildBentoParams, build_bento
from flows.check_model_quality import CheckQualityParams, check_model_quality
from flows.detect_drift import DetectDriftParams, detect_drift
from flows.local import run_locally
from flows.materialize_features import MaterializeParams, materialize_features
from flows.train import TrainParams, train

STEPS = 9
SERVE_TIMEOUT_S = 600  # build and start a bento on two busy cores
SEED = 7


class DemoParams(BaseModel):
    customers: int = Field(2000, ge=100)
    days: int = Field(90, ge=35, description="Labels arrive 30 days late, so at least 35 days of history.")
    scenario: DriftScenario = "price_rise"
    """How the second day of traffic drifts (see `cicloml.demo.churn.generate_traffic`)."""


class DemoSummary(BaseModel):
    champion_before: str
    champion_after: str
    roc_auc_before: float | None
    roc_auc_after: float | None
    requests_served: int
    failed_requests: int
    skew: str
    """The first served window against training: "no training/serving skew" expected."""
    drift: str
    drifted_features: list[str]
    alert: str
    retrained: bool
    promoted: bool
    served_after: list[str]
    """The model versions that answered once the loop closed."""
    live_roc_auc: dict[str, float | None]
    """Per traffic window, once its labels arrived."""
    quality_drops: list[str]
    """The windows whose live ROC AUC fell below training's by more than `quality.max_drop` (alerted): with a few
    hundred labels a window, chance alone does it now and then."""
    batch_predictions: int
    drift_report: str


@flow(name="demo")
def demo(params: DemoParams = DemoParams()) -> DemoSummary:
    """The closed loop on seeded data: a model is served, traffic drifts, Slack hears, a new champion takes over."""
    settings = get_settings()
    say = _narrator()
    now = datetime.now(timezone.utc)

    say(f"Generating {params.days} days of a {params.customers}-customer churn world and loading it into Feast")
    materialize_features(
        MaterializeParams(end=now, generate_demo_data=True, demo_customers=params.customers, demo_days=params.days)
    )
    say("Training a model on point-in-time features and gating it against the champion")
    trained = train(TrainParams(as_of=now))
    registry = ModelRegistry(settings, load_spec(settings.spec_path).name)
    before = registry.champion() or trained.tag
    say(f"Building the bento for the champion {before}")
    build_bento(BuildBentoParams(model_tag=before, deploy=False))

    history = generate_churn_data(now, customers=params.customers, days=params.days, seed=SEED)
    with ServeProcess(settings, PROJECT_DIR, settings.state_dir / "demo" / "serve.log") as server:
        server.wait_serving(before, SERVE_TIMEOUT_S)
        say(f"Serving {before} at {server.url} (cicloml serve: it follows the champion)")

        say("A normal day of traffic: every customer scored once, through Feast's online store")
        quiet_window, quiet = _traffic_day(settings, server, history, "none", before)
        skew = detect_drift(DetectDriftParams(window_start=quiet_window, model_tag=before))

        say(f"A day of drifted traffic ({params.scenario})")
        drift_window, drifted = _traffic_day(settings, server, history, params.scenario, before)
        drift = detect_drift(DetectDriftParams(window_start=drift_window, model_tag=before, retrain_in_process=True))

        after = registry.champion() or before
        say(f"Serving {after}: " + ("the loop closed" if after != before else "no new champion was promoted"))
        server.wait_serving(after, SERVE_TIMEOUT_S)
        confirm = send_traffic(server.url, history.customers["customer_id"].unique()[:100].tolist())

    say(f"{LABEL_DELAY.days} days later the labels arrive: live quality of {before} per window")
    quality = check_model_quality(
        CheckQualityParams(model_tag=before, known_by=now + LABEL_DELAY + timedelta(days=1), retrain_in_process=False)
    )
    predictions = batch_predict(BatchPredictParams())
    windows = {quiet_window: "normal", drift_window: params.scenario}
    summary = DemoSummary(
        champion_before=before,
        champion_after=after,
        roc_auc_before=registry.lineage(before).metrics.get("roc_auc"),
        roc_auc_after=registry.lineage(after).metrics.get("roc_auc"),
        requests_served=quiet.requests + drifted.requests + confirm.requests,
        failed_requests=quiet.failed_requests + drifted.failed_requests + confirm.failed_requests,
        skew=skew.verdict,
        drift=drift.verdict,
        drifted_features=drift.drifted_features,
        alert=drift.alert,
        retrained=drift.retrain == "ran",
        promoted=after != before,
        served_after=sorted(confirm.model_tags),
        live_roc_auc={windows.get(start, start.isoformat()): auc for start, auc in quality.window_roc_auc.items()},
        quality_drops=[windows.get(start, start.isoformat()) for start in quality.degraded_windows],
        batch_predictions=predictions.rows,
        drift_report=drift.report_path,
    )
    say(f"Done: {before} → {after}; the drift report is {drift.report_path}")
    return summary


def _traffic_day(
    settings: Settings, server: ServeProcess, history: DemoTables, scenario: Scenario, model_tag: str
) -> tuple[datetime, TrafficSent]:
    """A new day of data arrives (features and, 30 days later, labels), the online store is loaded, and every
    customer is scored once within one traffic window; returns the window once its profile is written."""
    traffic = generate_traffic(history, datetime.now(timezone.utc), scenario=scenario, seed=SEED)
    traffic.append_to(settings.data_dir)
    materialize_features(MaterializeParams(end=datetime.now(timezone.utc)))
    window = fresh_window(settings.profile_window_seconds, needed_s=settings.profile_window_seconds * 0.6)
    sent = send_traffic(server.url, traffic.activity["customer_id"].tolist())
    get_run_logger().info(
        "sent %d requests (%d failed); %d customers scored", sent.requests, sent.failed_requests, sent.scored
    )
    wait_for_window(settings, model_tag, window, timeout_s=60)
    return window, sent


def _narrator() -> Callable[[str], None]:
    """Log numbered steps: the demo's progress output."""
    logger, step = get_run_logger(), 0

    def say(message: str) -> None:
        nonlocal step
        step += 1
        logger.info("[%d/%d] %s", step, STEPS, message)

    return say


def main() -> DemoSummary:
    """`make demo`: alerts go to Slack if CICLO_SLACK_WEBHOOK_URL is set, else to a local stand-in."""
    settings = get_settings()
    if settings.slack_webhook_url is not None:
        return run_locally(demo)
    with LocalSlack(settings.state_dir / "demo" / "slack.jsonl") as slack:
        # As if the user had exported it: every flow of the run reads the webhook from the settings.
        os.environ["CICLO_SLACK_WEBHOOK_URL"] = slack.url.get_secret_value()
        get_settings.cache_clear()
        return run_locally(demo)


if __name__ == "__main__":
    summary = main()
    # Prefect says it stops its temporary server as the process exits; the summary stays the last line.
    logging.getLogger("prefect").setLevel(logging.WARNING)
    print(summary.model_dump_json())
