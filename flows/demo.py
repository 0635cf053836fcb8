"""demo: the loop on the embedded default, narrated step by step, ending with a one-line JSON summary of what each
window showed and what was decided, with the evidence.

generate data → materialize → train → build → serve → a normal day (no skew) → a price rise (covariate shift: drift
alerted with its estimated impact, which holds: no retraining) → days of a competitor's offer (concept drift: the
features hold, who churns changes) → 30 days later their labels arrive: the quality check finds the drop the estimate
did not foresee → retraining on the new labels → the challenger beats the champion on fresh post-drift rows, with
its interval → promoted, built, switched to with traffic flowing → a later day's labels show the recovery → batch
predictions.

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
from cicloml.demo.live import (
    LocalSlack,
    ServeProcess,
    SteadyTraffic,
    TrafficSent,
    fresh_window,
    send_traffic,
    wait_for_window,
)
from cicloml.estimation import PerformanceEstimate
from cicloml.gate import PairedComparison
from cicloml.registry import ModelRegistry
from cicloml.settings import Settings, get_settings
from cicloml.spec import load_spec
from flows.batch_predict import BatchPredictParams, batch_predict
from flows.build_bento import PROJECT_DIR, BuildBentoParams, build_bento
from flows.check_model_quality import CheckQualityParams, CheckQualityResult, check_model_quality
from flows.detect_drift import DetectDriftParams, DetectDriftResult, detect_drift
from flows.local import run_locally
from flows.materialize_features import MaterializeParams, materialize_features
from flows.train import TrainParams, train

STEPS = 11
SERVE_TIMEOUT_S = 600  # build and start a bento on two busy cores
SEED = 7
CONCEPT = "competitor_offer"


class DemoParams(BaseModel):
    customers: int = Field(2000, ge=100)
    days: int = Field(90, ge=35, description="Labels arrive 30 days late, so at least 35 days of history.")
    scenario: DriftScenario = "price_rise"
    """How the second day's features drift (see `cicloml.demo.churn.generate_traffic`): covariate shift."""
    concept_days: int = Field(3, ge=3)
    """Days of the competitor's offer before their labels arrive: the retraining learns from the oldest, validates
    on the next and is judged against the champion on the newest (the spec's time split)."""


class WindowStory(BaseModel):
    """One day of traffic: what was estimated before labels, what the labels showed, what was decided and why."""

    day: str
    model_tag: str
    window_start: datetime
    estimated: PerformanceEstimate | None
    """From the window's logged scores, before labels."""
    realized_roc_auc: float | None
    """Once the labels arrived."""
    decision: str
    reason: str


class DemoSummary(BaseModel):
    champion_before: str
    champion_after: str
    roc_auc_before: float | None
    roc_auc_after: float | None
    """Each model's ROC AUC on its own test window, at training."""
    requests_served: int
    failed_requests: int
    requests_during_switch: int
    failed_during_switch: int
    skew: str
    """The first served window against training: "no training/serving skew" expected."""
    drift: str
    drifted_features: list[str]
    alert: str
    drift_retraining: str
    """What the drifted day asked for: "held" when its estimated impact holds."""
    concept_drift_check: str
    """The drift check of the first concept-drift day: "no drift" expected (the features did not move)."""
    concept_drift_days: list[str]
    """The days the quality check named probable concept drift."""
    training_runs: int
    """Models registered: the first and, with new labels, the retrained one."""
    promoted: bool
    gate: PairedComparison | None
    """The new champion against the old on the post-drift rows it did not train on, with the paired interval."""
    gate_reasons: list[str]
    served_after: list[str]
    """The model versions that answered once the loop closed."""
    windows: list[WindowStory]
    live_roc_auc_before: float | None
    """The old champion's realized ROC AUC on the concept-drift days, mean over days."""
    live_roc_auc_after: float | None
    """The new champion's realized ROC AUC on the day after the switch."""
    batch_predictions: int
    drift_report: str


@flow(name="demo")
def demo(params: DemoParams = DemoParams()) -> DemoSummary:
    """The closed loop on seeded data: covariate shift that holds, concept drift that hurts, a retraining on new
    labels that measurably fixes it, and the fixed model served."""
    settings = get_settings()
    say = _narrator()
    now = datetime.now(timezone.utc)

    say(f"Generating {params.days} days of a {params.customers}-customer churn world and loading it into Feast")
    materialize_features(
        MaterializeParams(end=now, generate_demo_data=True, demo_customers=params.customers, demo_days=params.days)
    )
    say("Training a model on point-in-time features")
    trained = train(TrainParams(as_of=now))
    registry = ModelRegistry(settings, load_spec(settings.spec_path).name)
    before = registry.champion() or str(trained.tag)
    say(f"Building the bento for the champion {before}")
    build_bento(BuildBentoParams(model_tag=before, deploy=False))

    history = generate_churn_data(now, customers=params.customers, days=params.days, seed=SEED)
    customers = history.customers["customer_id"].unique().tolist()
    sent: list[TrafficSent] = []
    with ServeProcess(settings, PROJECT_DIR, settings.state_dir / "demo" / "serve.log") as server:
        server.wait_serving(before, SERVE_TIMEOUT_S)
        say(f"Serving {before} at {server.url} (cicloml serve: it follows the champion)")

        def day(scenario: Scenario, model_tag: str) -> datetime:
            window, traffic = _traffic_day(settings, server, history, scenario, model_tag)
            sent.append(traffic)
            return window

        say("A normal day of traffic: every customer scored once, through Feast's online store")
        normal = day("none", before)
        skew = detect_drift(DetectDriftParams(window_start=normal, model_tag=before))

        say(f"A day of {params.scenario}: the features move; is the model hurt?")
        shifted = day(params.scenario, before)
        drift = detect_drift(DetectDriftParams(window_start=shifted, model_tag=before, retrain_in_process=True))

        say(f"{params.concept_days} days of a competitor's offer: who churns changes, the features do not")
        concept = [day(CONCEPT, before) for _ in range(params.concept_days)]
        concept_check = detect_drift(DetectDriftParams(window_start=concept[0], model_tag=before))

        say(f"{LABEL_DELAY.days} days later the labels arrive: live quality of {before}, retraining on them")
        known_by = now + LABEL_DELAY + timedelta(days=1)
        quality = check_model_quality(CheckQualityParams(model_tag=before, known_by=known_by, retrain_in_process=True))
        after = registry.champion() or before
        # Traffic keeps flowing while `cicloml serve` starts the new bento and switches to it.
        with SteadyTraffic(server.url, customers[:50]) as switching:
            server.wait_serving(after, SERVE_TIMEOUT_S)

        say(f"Serving {after}: another day of the competitor's offer")
        recovery = day(CONCEPT, after)
        confirm = sent[-1]

    say(f"Its labels arrive: live quality of {after}")
    recovered = check_model_quality(CheckQualityParams(model_tag=after, known_by=known_by, retrain_in_process=False))
    predictions = batch_predict(BatchPredictParams())

    names = {normal: "normal", shifted: params.scenario}
    names |= {start: f"{CONCEPT} {index + 1}" for index, start in enumerate(concept)}
    names[recovery] = f"{CONCEPT} {params.concept_days + 1} (retrained model)"
    checks = {normal: skew, shifted: drift, concept[0]: concept_check}
    windows = [
        _story(names[start], before, start, quality, checks.get(start)) for start in [normal, shifted, *concept]
    ] + [_story(names[recovery], after, recovery, recovered, None)]
    decision = registry.lineage(after).gate if after != before else None
    say(f"Done: {before} → {after}; the drift report is {drift.report_path}")
    return DemoSummary(
        champion_before=before,
        champion_after=after,
        roc_auc_before=registry.lineage(before).metrics.get("roc_auc"),
        roc_auc_after=registry.lineage(after).metrics.get("roc_auc"),
        requests_served=sum(traffic.requests for traffic in sent) + switching.sent.requests,
        failed_requests=sum(traffic.failed_requests for traffic in sent) + switching.sent.failed_requests,
        requests_during_switch=switching.sent.requests,
        failed_during_switch=switching.sent.failed_requests,
        skew=skew.verdict,
        drift=drift.verdict,
        drifted_features=drift.drifted_features,
        alert=drift.alert,
        drift_retraining=drift.retrain,
        concept_drift_check=concept_check.verdict,
        concept_drift_days=[names.get(start, start.isoformat()) for start in quality.concept_drift_windows],
        training_runs=len(registry.versions()),
        promoted=after != before,
        gate=decision.comparison if decision else None,
        gate_reasons=decision.reasons if decision else [],
        served_after=sorted(confirm.model_tags),
        windows=windows,
        live_roc_auc_before=_mean([quality.window_roc_auc.get(start) for start in concept]),
        live_roc_auc_after=recovered.window_roc_auc.get(recovery),
        batch_predictions=predictions.rows,
        drift_report=drift.report_path,
    )


def _story(
    day: str, model_tag: str, start: datetime, quality: CheckQualityResult, check: DetectDriftResult | None
) -> WindowStory:
    """A day's line in the summary: its estimate and realized ROC AUC, and the decision taken on it."""
    if start in quality.concept_drift_windows:
        decision = (
            "probable concept drift: retraining requested"
            if start == max(quality.degraded_windows)
            else ("probable concept drift")
        )
        reason = "the labels show a drop the estimate from the scores did not foresee"
    elif start in quality.degraded_windows:
        decision, reason = "quality dropped", "the labels show a drop the estimate foresaw"
    elif check is not None and check.drifted:
        decision, reason = f"{check.verdict}: alerted; retraining {check.retrain}", check.retrain_reason or ""
    else:
        decision = check.verdict if check is not None else "quality held"
        reason = "the features look like training's" if check is not None else "the labels show no drop"
    return WindowStory(
        day=day,
        model_tag=model_tag,
        window_start=start,
        estimated=quality.estimates.get(start),
        realized_roc_auc=quality.window_roc_auc.get(start),
        decision=decision,
        reason=reason,
    )


def _mean(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return sum(known) / len(known) if known else None


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
    wait_for_window(settings, model_tag, window, timeout_s=60, rows=sent.scored)
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
