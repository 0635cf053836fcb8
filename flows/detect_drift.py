"""detect-drift: one window of live traffic against the champion's training reference → report → Slack → retrain.

The service writes whylogs profiles of its traffic per worker and window (`cicloml.traffic`); this merges a
window's profiles, scores every feature against the reference profile saved with the model, estimates the model's
performance from the window's logged scores, and on drift alerts Slack once per incident (`cicloml.incidents`: the
first drifted window opens one, clean windows clear it, each announced once). Drift asks for
retraining only when its estimated impact says the model got worse (`drift.retrain_when`): a
`cicloml.drift.detected` event for the `retrain/on-drift` deployment's trigger, or, with no Prefect server to react
to it (the embedded demo), the retrain flow directly.

detect-drift-all does the same for every model version that served a window (a switch, a canary, a shadow model):
the per-version checks run in parallel on the configured task runner (`flows/runners.py`), the alerts and
retraining requests after them in the flow, one version at a time.

Both keep each checked window, with its alert and retraining decision, in the model's history (`cicloml.health`) and
rewrite the model-health page over its last windows, linked from the run (artifact `model-health`).
"""

from datetime import datetime, timezone
from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from pydantic import BaseModel

from cicloml.alerts import alert_key, cleared_message, drift_message, send_once
from cicloml.errors import ConfigError
from cicloml.estimation import PerformanceEstimate
from cicloml.health import record_drift
from cicloml.health_report import health_page_path
from cicloml.incidents import IncidentLog
from cicloml.monitoring import WindowCheck, versions_with_traffic
from cicloml.profiling import newest_finished_window
from cicloml.registry import ModelRegistry
from cicloml.retraining import drift_retraining
from cicloml.settings import Settings, get_settings
from cicloml.spec import ProjectSpec, load_spec
from flows import tasks
from flows.health import publish_health_page
from flows.local import run_locally
from flows.retraining import request_retraining
from flows.runners import ConfiguredTaskRunner
from flows.runs import flow_run_url


class DetectDriftParams(BaseModel):
    window_start: datetime | None = None
    """The window to check (its UTC start); default the newest finished window with traffic."""
    model_tag: str | None = None
    """The model version whose traffic to check; default the champion."""
    retrain_in_process: bool | None = None
    """On drift, run the retrain flow here instead of emitting the event; default: when no Prefect server is
    configured (PREFECT_API_URL unset: a temporary server has no deployment to trigger)."""


class DetectDriftResult(BaseModel):
    model_tag: str
    window_start: datetime
    check: str
    """"skew" for the model's first served window (training/serving skew), "drift" after it."""
    verdict: str
    """What was found, in words: "drift", "no drift", "training/serving skew" or "no training/serving skew"."""
    rows: int
    """Rows profiled in the window."""
    logged_rows: int | None
    """Predictions logged in the window (only those for entities); None when predictions are not logged."""
    rows_differ: bool
    """The profiled and logged rows differ (the artifact says why that may be)."""
    drifted: bool
    drifted_features: list[str]
    prediction_score: float | None
    """The model's score distribution against its validation scores, same method (None without scores)."""
    quality_issues: int
    report_path: str
    alert: str
    """The message of this window: "sent", "already_sent", "no_webhook" (logged and kept as an artifact instead),
    "incident_open" (drift within an incident already announced: no message) or "none"."""
    incident: str = "quiet"
    """What the window did to the model's drift incident (`cicloml.incidents`): "opened", "continues", "cleared"
    (a message says so; `alert` is its delivery) or "quiet"."""
    retrain: str
    """"requested" (event emitted), "ran" (embedded: retrain ran here), "already_requested", "held" (drift whose
    estimated impact holds: see `retrain_reason`), "off" (also for skew) or "none"."""
    retrain_reason: str | None = None
    """Why retraining was or was not asked for a drifted window, with the estimated impact."""
    performance: PerformanceEstimate | None = None
    """The model's performance estimated from the window's logged scores, before labels."""
    health_page: str | None = None
    """The model's health page over its last windows, this one included."""


@flow(name="detect-drift")
def detect_drift(params: DetectDriftParams = DetectDriftParams()) -> DetectDriftResult:
    """Compare one window of the served model's traffic with its training reference; alert and retrain on drift."""
    settings = get_settings()
    spec = load_spec(settings.spec_path)
    model_tag = params.model_tag or ModelRegistry(settings, spec.name).champion()
    if model_tag is None:
        raise ConfigError(f"no champion for {spec.name!r} yet: nothing is served, so there is no traffic to check")
    check = tasks.check_window(settings, spec, model_tag, params.window_start, now=datetime.now(timezone.utc))
    report = check.report
    markdown = "\n\n".join(filter(None, [report.markdown(), check.rows_disagreement]))
    create_markdown_artifact(key="drift", markdown=markdown, description=f"{model_tag} {report.window_start}")
    create_link_artifact(key="drift-report", link=check.report_path.as_uri(), link_text="drift report (HTML)")
    result = act_on_check(check, settings, spec, retrain_in_process=params.retrain_in_process)
    return result.model_copy(update={"health_page": str(publish_health_page(settings, spec.name))})


class DetectDriftAllParams(BaseModel):
    window_start: datetime | None = None
    """The window to check (its UTC start); default the newest finished window with traffic from any version."""
    model_tags: list[str] | None = None
    """The model versions to check; default every version of the spec's model with traffic in the window."""
    retrain_in_process: bool | None = None
    """As in detect-drift."""


class DetectDriftAllResult(BaseModel):
    window_start: datetime
    results: list[DetectDriftResult]
    """One per model version checked, in the order of `model_tags` (by default, of their tags)."""
    health_page: str | None = None
    """The model's health page over its last windows, every version's check of this one included."""


@flow(name="detect-drift-all", task_runner=ConfiguredTaskRunner())
def detect_drift_all(params: DetectDriftAllParams = DetectDriftAllParams()) -> DetectDriftAllResult:
    """Check one window of every model version that served it, in parallel on the configured task runner (threads,
    or Dask with CICLO_TASK_RUNNER=dask); then alert and retrain per drifted version, as detect-drift does."""
    settings = get_settings()
    spec = load_spec(settings.spec_path)
    now = datetime.now(timezone.utc)
    served = versions_with_traffic(settings.profiles_dir, spec.name)
    if not served:
        raise FileNotFoundError(f"no traffic profiles for {spec.name} under {settings.profiles_dir}: served yet?")
    every_window = sorted({start for starts in served.values() for start in starts})
    window_start = params.window_start or newest_finished_window(every_window, settings.profile_window_seconds, now)
    model_tags = params.model_tags or [tag for tag, starts in served.items() if window_start in starts]

    checks = tasks.check_window.map(
        unmapped(settings), unmapped(spec), model_tags, unmapped(window_start), now=unmapped(now)
    ).result()
    create_markdown_artifact(key="drift-all", markdown=_summary(checks), description=window_start.isoformat())
    results = [act_on_check(check, settings, spec, retrain_in_process=params.retrain_in_process) for check in checks]
    page = publish_health_page(settings, spec.name)
    return DetectDriftAllResult(window_start=window_start, results=results, health_page=str(page))


def act_on_check(
    check: WindowCheck, settings: Settings, spec: ProjectSpec, *, retrain_in_process: bool | None
) -> DetectDriftResult:
    """What the flows do with a checked window, in the flow's process: log it and, on drift, alert Slack once and
    ask once for retraining (not for skew); keep the window and what was decided in the model's history."""
    logger = get_run_logger()
    report = check.report
    model_tag, window_start = report.model_tag, report.window_start
    assert window_start is not None, "check_window always sets the window"
    logger.info(
        "%s, window %s (%d rows): %s; features over the threshold: %s",
        model_tag,
        window_start,
        check.rows,
        report.title,
        ", ".join(report.drifted_features) or "none",
    )

    with IncidentLog(settings.incidents_dir, spec.name).updating() as incidents:
        step = incidents.apply(report, spec.alerts)
    alert, retraining, why = "none", "none", None
    health_url = health_page_path(settings, spec.name).as_uri()  # the flow rewrites it once its checks are acted on
    if step.action == "cleared":
        assert step.incident is not None
        message = cleared_message(
            step.incident, flow_run_url=flow_run_url(), report_url=check.report_path.as_uri(), health_url=health_url
        )
        alert = _send(message, f"{step.incident.model}@{step.incident.opened.isoformat()}:cleared", settings)
        logger.info("drift incident cleared: %s", step.incident.describe())
    if report.drifted:
        retraining, why = "off", drift_retraining(report, spec)
        if why.retrain:
            reason = f"drift in {model_tag} ({window_start.isoformat()}): {', '.join(report.drifted_features)}"
            details = {"drifted_features": report.drifted_features, "impact": why.reason}
            retraining = request_retraining(
                model_tag, window_start, reason, details, check=report.check, in_process=retrain_in_process
            )
        elif report.check == "drift" and spec.drift.retrain_on_drift:
            retraining = "held"
        if step.action == "opened":
            message = drift_message(
                report,
                retraining=why.reason,
                clears_after=spec.alerts.clear_after,
                flow_run_url=flow_run_url(),
                report_url=check.report_path.as_uri(),
                health_url=health_url,
            )
            alert = _send(message, alert_key(model_tag, window_start), settings)
            if alert == "no_webhook":
                create_markdown_artifact(key="drift-alert", markdown=report.markdown(), description="not sent to Slack")
        else:
            alert = "incident_open"
            assert step.incident is not None
            logger.info("no message: part of the open drift incident (%s)", step.incident.describe())
        logger.info("retraining: %s (%s)", retraining, why.reason)
    record_drift(
        settings.state_dir,
        report,
        rows=check.rows,
        incident=step.action,
        alert=alert,
        retrain=retraining,
        retrain_reason=why.reason if why else None,
        report_path=check.report_path,
    )
    return DetectDriftResult(
        model_tag=model_tag,
        window_start=window_start,
        check=report.check,
        verdict=report.title,
        rows=check.rows,
        logged_rows=check.logged_rows,
        rows_differ=check.rows_disagreement is not None,
        drifted=report.drifted,
        drifted_features=report.drifted_features,
        prediction_score=report.prediction.score if report.prediction else None,
        quality_issues=len(report.quality_issues),
        report_path=str(check.report_path),
        alert=alert,
        incident=step.action,
        retrain=retraining,
        retrain_reason=why.reason if why else None,
        performance=report.performance,
    )


def _send(message: dict[str, Any], key: str, settings: Settings) -> str:
    """Send once per key; without a webhook, log the message instead."""
    status = send_once(settings.slack_webhook_url, message, key=key, ledger_dir=settings.alerts_dir).status
    if status == "no_webhook":
        get_run_logger().warning("alert (no Slack webhook configured, CICLO_SLACK_WEBHOOK_URL): %s", message["text"])
    return status


def _summary(checks: list[WindowCheck]) -> str:
    """One row per model version: the detect-drift-all run's artifact."""
    lines = ["| model | check | verdict | rows | features over the threshold | report |", "|---|---|---|---:|---|---|"]
    for check in checks:
        report = check.report
        lines.append(
            f"| {report.model_tag} | {report.check} | {report.title} | {check.rows:,} "
            f"| {', '.join(report.drifted_features) or '—'} | [HTML]({check.report_path.as_uri()}) |"
        )
    notes = [f"- {check.report.model_tag}: {note}" for check in checks if (note := check.rows_disagreement)]
    return "\n".join([*lines, *([""] if notes else []), *notes])


if __name__ == "__main__":
    print(run_locally(detect_drift).model_dump_json())
