"""detect-drift: one window of live traffic against the champion's training reference → report → Slack → retrain.

The service writes whylogs profiles of its traffic per worker and window (`cicloml.traffic`); this merges a
window's profiles, scores every feature against the reference profile saved with the model, and on drift alerts
Slack once per model and window and asks for retraining: a `cicloml.drift.detected` event for the `retrain/on-drift`
deployment's trigger, or, with no Prefect server to react to it (the embedded demo), the retrain flow directly.
"""

from datetime import datetime, timedelta, timezone

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from pydantic import BaseModel

from cicloml.alerts import alert_key, drift_message, send_once
from cicloml.drift import compare_profiles, write_html_report
from cicloml.errors import ConfigError
from cicloml.profiling import newest_finished_window, read_window_profiles, window_folder, window_starts
from cicloml.registry import ModelRegistry
from cicloml.settings import get_settings
from cicloml.spec import load_spec
from flows.local import run_locally
from flows.retraining import request_retraining
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
    drifted: bool
    drifted_features: list[str]
    prediction_score: float | None
    """The model's score distribution against its validation scores, same method (None without scores)."""
    quality_issues: int
    report_path: str
    alert: str
    """"sent", "already_sent", "no_webhook" (logged and kept as an artifact instead), or "none" (no drift)."""
    retrain: str
    """"requested" (event emitted), "ran" (embedded: retrain ran here), "already_requested", "off" (also for
    skew) or "none"."""


@flow(name="detect-drift")
def detect_drift(params: DetectDriftParams = DetectDriftParams()) -> DetectDriftResult:
    """Compare one window of the served model's traffic with its training reference; alert and retrain on drift."""
    settings = get_settings()
    spec = load_spec(settings.spec_path)
    logger = get_run_logger()
    registry = ModelRegistry(settings, spec.name)
    model_tag = params.model_tag or registry.champion()
    if model_tag is None:
        raise ConfigError(f"no champion for {spec.name!r} yet: nothing is served, so there is no traffic to check")
    model = registry.load(model_tag)
    windows = window_starts(settings.profiles_dir, model_tag)
    if not windows:
        raise FileNotFoundError(f"no traffic profiles for {model_tag} under {settings.profiles_dir}: served yet?")
    now = datetime.now(timezone.utc)
    window_start = params.window_start or newest_finished_window(windows, settings.profile_window_seconds, now)
    window_end = window_start + timedelta(seconds=settings.profile_window_seconds)
    # The first window a model serves is where training/serving skew shows; drift is change after it.
    check = "skew" if window_start == windows[0] else "drift"

    current = read_window_profiles(window_folder(settings.profiles_dir, model_tag, window_start))
    report = compare_profiles(
        model.reference_profile(),
        current,
        features=model.lineage.features.features,
        spec=spec.drift,
        model_tag=model_tag,
        window_start=window_start,
        window_end=window_end,
        check=check,
    )
    report_path = write_html_report(report, settings.reports_dir)
    create_markdown_artifact(key="drift", markdown=report.markdown(), description=f"{model_tag} {window_start}")
    create_link_artifact(key="drift-report", link=report_path.as_uri(), link_text="drift report (HTML)")
    rows = int(current.metadata.get("rows", 0))
    logger.info(
        "%s, window %s (%d rows): %s; features over the threshold: %s",
        model_tag,
        window_start,
        rows,
        report.title,
        ", ".join(report.drifted_features) or "none",
    )

    alert, retraining = "none", "none"
    if report.drifted:
        message = drift_message(report, flow_run_url=flow_run_url(), report_url=report_path.as_uri())
        key = alert_key(model_tag, window_start)
        alert = send_once(settings.slack_webhook_url, message, key=key, ledger_dir=settings.alerts_dir).status
        if alert == "no_webhook":
            logger.warning("drift alert (no Slack webhook configured, CICLO_SLACK_WEBHOOK_URL): %s", message["text"])
            create_markdown_artifact(key="drift-alert", markdown=report.markdown(), description="not sent to Slack")
        # Skew comes from computing features differently when serving: retraining on the same pipeline won't fix it.
        retraining = "off"
        if spec.drift.retrain_on_drift and check == "drift":
            reason = f"drift in {model_tag} ({window_start.isoformat()}): {', '.join(report.drifted_features)}"
            details = {"drifted_features": report.drifted_features}
            retraining = request_retraining(
                model_tag, window_start, reason, details, check=check, in_process=params.retrain_in_process
            )
    return DetectDriftResult(
        model_tag=model_tag,
        window_start=window_start,
        check=check,
        verdict=report.title,
        rows=rows,
        drifted=report.drifted,
        drifted_features=report.drifted_features,
        prediction_score=report.prediction.score if report.prediction else None,
        quality_issues=len(report.quality_issues),
        report_path=str(report_path),
        alert=alert,
        retrain=retraining,
    )


if __name__ == "__main__":
    print(run_locally(detect_drift).model_dump_json())
