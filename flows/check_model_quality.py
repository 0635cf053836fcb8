"""check-model-quality: delayed labels joined to the service's logged predictions → live quality per window.

Drift says the inputs moved; labels say whether the model got worse. A window whose ROC AUC fell more than the spec
allows below the model's own (on its test window, at training) requests retraining once; Slack hears of the first
window of each run of degraded windows, not of every window after it. Each window's realized quality is held against
the estimate its scores gave before labels: a drop the estimate did not foresee is named probable concept drift. The
retraining learns from the labels since the degradation's onset (the first window of its run of degraded windows)
when they suffice. Retraining requests that found no labels to learn from wait; this check starts them again once
enough labels have matured, and asks for follow-ups while a champion that learned a changed world from its first
labels sees them grow. Every window's realized quality, the alerts and these decisions are kept in the model's
history (`cicloml.health`), and the model-health page is rewritten and linked from the run.
"""

from datetime import datetime, timedelta, timezone

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from cicloml.alerts import alert_key, quality_message, send_once
from cicloml.errors import ConfigError
from cicloml.estimation import PerformanceEstimate
from cicloml.health import Decision, WindowDecision, record_quality
from cicloml.health_report import health_page_path
from cicloml.prediction_log import read_prediction_log
from cicloml.profiling import window_folder, window_profiled_rows
from cicloml.quality import QualityReport, assess_quality, join_labels
from cicloml.registry import ModelRegistry
from cicloml.retraining import PendingRetraining, degradation_onset, degradation_onsets
from cicloml.settings import get_settings
from cicloml.spec import load_spec
from cicloml.training import read_labels
from flows.health import publish_health_page
from flows.local import run_locally
from flows.retraining import follow_up, reconsider_pending, request_retraining
from flows.runs import flow_run_url


class CheckQualityParams(BaseModel):
    model_tag: str | None = None
    """The model version whose logged predictions to check; default the champion."""
    known_by: datetime | None = None
    """Use the labels known by this time (their available time); default now."""
    retrain_in_process: bool | None = None
    """On a drop, run the retrain flow here instead of emitting the event; default: when no Prefect server is
    configured (as in detect-drift)."""


class CheckQualityResult(BaseModel):
    model_tag: str
    baseline_roc_auc: float
    windows: int
    labelled: int
    live_roc_auc: float | None
    """ROC AUC of the newest window with enough labels to judge; None if none has."""
    window_roc_auc: dict[datetime, float | None]
    """Every window's ROC AUC on its labelled predictions (None without both classes)."""
    degraded_windows: list[datetime]
    profiled_rows: dict[datetime, int | None]
    """Every window's rows in the traffic profiles (None: traffic not profiled), to hold against `logged_rows`."""
    logged_rows: dict[datetime, int]
    """Every window's logged predictions (only those for entities)."""
    rows_differ: list[datetime]
    """The windows whose profiled and logged rows differ (`cicloml.prediction_log.rows_disagreement` says why)."""
    alerts: list[str]
    """Per degraded window that starts a run of them (the windows after it in the run send nothing): "sent",
    "already_sent" or "no_webhook"."""
    retrain: str
    """For the newest degraded window: "requested", "ran", "already_requested", "off" or "none"."""
    estimates: dict[datetime, PerformanceEstimate | None] = {}
    """Every window's performance as estimated from its scores before labels (None without a calibration)."""
    concept_drift_windows: list[datetime] = []
    """Degraded windows whose drop the estimate did not foresee: probable concept drift."""
    restarted_requests: list[str] = []
    """Waiting retraining requests (model@window) started again because their labels have matured."""
    follow_up: str | None = None
    """Why a follow-up retraining was asked for (the champion learned a changed world from its first labels, and
    they have grown: `retraining.follow_up_growth`); None when none was."""
    health_page: str | None = None
    """The model's health page over its last windows, with this check's realized quality."""


@task
def measure_quality(model_tag: str, labels: pd.DataFrame, known_by: datetime) -> QualityReport:
    """Join the labels known by `known_by` to the model's logged predictions and measure every window."""
    settings = get_settings()
    spec = load_spec(settings.spec_path)
    lineage = ModelRegistry(settings, spec.name).lineage(model_tag)
    baseline = lineage.metrics.get("roc_auc")
    if baseline is None:
        raise ConfigError(f"{model_tag} has no ROC AUC from training to compare live quality with")
    predictions = read_prediction_log(settings.prediction_log_dir, model_tag)
    joined = join_labels(
        predictions,
        labels,
        spec=spec.labels,
        entity_keys=lineage.features.entity_keys,
        known_by=known_by,
        within=timedelta(hours=spec.quality.match_within_hours),
    )
    report = assess_quality(
        joined,
        model_tag=model_tag,
        baseline_roc_auc=baseline,
        threshold=lineage.threshold,
        spec=spec.quality,
        known_by=known_by,
        calibration=lineage.calibration,
    )
    if not settings.profile_traffic:
        return report
    # Held against each window's logged predictions in the report (the drift check does the same per window).
    windows = []
    for window in report.windows:
        folder = window_folder(settings.profiles_dir, model_tag, window.window_start)
        windows.append(window.model_copy(update={"profiled_rows": window_profiled_rows(folder)}))
    return report.model_copy(update={"windows": windows})


@flow(name="check-model-quality")
def check_model_quality(params: CheckQualityParams = CheckQualityParams()) -> CheckQualityResult:
    """Measure the served model's live quality per window from delayed labels; alert and retrain on a drop."""
    settings = get_settings()
    spec = load_spec(settings.spec_path)
    logger = get_run_logger()
    model_tag = params.model_tag or ModelRegistry(settings, spec.name).champion()
    if model_tag is None:
        raise ConfigError(f"no champion for {spec.name!r} yet: nothing is served, so no predictions were logged")
    known_by = params.known_by or datetime.now(timezone.utc)

    labels = read_labels(settings, spec.labels)  # once: the measure, the waiting requests and the follow-up read it
    report = measure_quality(model_tag, labels, known_by)
    create_markdown_artifact(key="model-quality", markdown=report.markdown(), description=report.title)
    judged = [window for window in report.windows if window.judged]
    logger.info(
        "%s: %s (%d windows, %d judged; ROC AUC at training %.3f)",
        model_tag,
        report.title,
        len(report.windows),
        len(judged),
        report.baseline_roc_auc,
    )

    alerts: dict[datetime, str] = {}
    for window in degradation_onsets(report.windows):
        message = quality_message(
            report,
            window,
            flow_run_url=flow_run_url(),
            window_seconds=settings.profile_window_seconds,
            health_url=health_page_path(settings, spec.name).as_uri(),  # rewritten at the end of this run
        )
        key = f"quality:{alert_key(model_tag, window.window_start)}"
        alert = send_once(settings.slack_webhook_url, message, key=key, ledger_dir=settings.alerts_dir).status
        alerts[window.window_start] = alert
        if alert == "no_webhook":
            logger.warning("quality alert (no Slack webhook configured, CICLO_SLACK_WEBHOOK_URL): %s", message["text"])

    retrain, reason = "none", None
    if report.degraded:
        newest = report.degraded_windows[-1]
        if not spec.quality.retrain_on_drop:
            retrain, reason = "off", "quality.retrain_on_drop is off"
        else:
            assert newest.metrics is not None and newest.metrics.roc_auc is not None, "a degraded window was judged"
            reason = (
                f"{'probable concept drift: ' if newest.concept_drift else ''}live ROC AUC of {model_tag} fell to "
                f"{newest.metrics.roc_auc:.3f} ({report.baseline_roc_auc:.3f} at training)"
            )
            onset = degradation_onset(report.windows)
            if onset is not None and onset < newest.window_start:
                reason += f", degraded since {onset:%Y-%m-%d %H:%M} UTC"
            retrain = request_retraining(
                model_tag,
                newest.window_start,
                reason,
                check="quality",
                in_process=params.retrain_in_process,
                as_of=known_by,
                since=onset,
            )
    # Requests that found no labels to learn from wait for them: start those whose labels have matured.
    restarted = reconsider_pending(spec, labels, known_by, in_process=params.retrain_in_process)
    # A champion that learned a changed world from its first labels: retrain again as they grow.
    followed_up = follow_up(spec, labels, known_by, in_process=params.retrain_in_process) if retrain == "none" else None
    decisions = _decisions(report, retrain, reason, restarted, followed_up)
    record_quality(settings.state_dir, report, alerts=alerts, decisions=decisions)
    page = publish_health_page(settings, spec.name)
    return CheckQualityResult(
        model_tag=model_tag,
        baseline_roc_auc=report.baseline_roc_auc,
        windows=len(report.windows),
        labelled=sum(window.labelled for window in report.windows),
        live_roc_auc=judged[-1].metrics.roc_auc if judged else None,
        window_roc_auc={
            window.window_start: window.metrics.roc_auc if window.metrics else None for window in report.windows
        },
        degraded_windows=[window.window_start for window in report.degraded_windows],
        profiled_rows={window.window_start: window.profiled_rows for window in report.windows},
        logged_rows={window.window_start: window.predictions for window in report.windows},
        rows_differ=[window.window_start for window in report.windows if window.rows_disagreement],
        alerts=list(alerts.values()),
        retrain=retrain,
        estimates={window.window_start: window.estimate for window in report.windows},
        concept_drift_windows=[window.window_start for window in report.windows if window.concept_drift],
        restarted_requests=[request.key for request in restarted],
        follow_up=followed_up,
        health_page=str(page),
    )


def _decisions(
    report: QualityReport,
    retrain: str,
    reason: str | None,
    restarted: list[PendingRetraining],
    followed_up: str | None,
) -> list[WindowDecision]:
    """The check's retraining decisions for the model's history, each on the window it is about: a drop's on its
    newest degraded window, a restarted request's on the window that asked, a follow-up on the newest window."""
    decisions = [
        WindowDecision(
            model_tag=request.model_tag,
            window_start=request.window_start,
            decision=Decision(
                source="labels matured",
                action="restarted",
                reason=f"{request.reason} (waiting since {request.requested_at:%Y-%m-%d %H:%M} UTC)",
            ),
        )
        for request in restarted
    ]
    if retrain != "none":
        newest = report.degraded_windows[-1].window_start
        decision = Decision(source="quality", action=retrain, reason=reason)
        decisions.append(WindowDecision(model_tag=report.model_tag, window_start=newest, decision=decision))
    if followed_up is not None and report.windows:
        decision = Decision(source="follow-up", action="requested", reason=followed_up)
        decisions.append(
            WindowDecision(model_tag=report.model_tag, window_start=report.windows[-1].window_start, decision=decision)
        )
    return decisions


if __name__ == "__main__":
    print(run_locally(check_model_quality).model_dump_json())
