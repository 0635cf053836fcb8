"""Slack alerts through an incoming webhook: a Block Kit message, sent once per key, retried, never leaking the URL.

A webhook URL is a credential (anyone holding it can post to the channel), so it is passed as a `SecretStr`, and
neither log lines nor errors from this module contain it: every text they take from httpx or from the receiver (a
status line, a response body that repeats the request path, a transport error) goes through
`cicloml.redaction.redact` first, as do httpx's own log lines.

"Once per key" (one alert per model and window) holds across reruns and concurrent runs: senders take an
exclusive lock on the key's file in the ledger folder, and the first to deliver writes a receipt there; later
senders find the receipt and skip. A delivery that fails leaves no receipt, so a rerun tries again.
"""

import fcntl
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from cicloml.atomic import atomic_path
from cicloml.drift import DriftReport
from cicloml.gate import GateDecision
from cicloml.incidents import Incident
from cicloml.quality import QualityReport, WindowQuality
from cicloml.redaction import redact

logger = logging.getLogger(__name__)

RETRY_STATUSES = {429, 500, 502, 503, 504}
ATTEMPTS = 4
BACKOFF_S = 1.0
"""First wait between attempts; doubled each time, or Slack's Retry-After when it sends one."""
MAX_FEATURES_LISTED = 10
HTTP_LOGGERS = ("httpx", *(f"httpcore.{name}" for name in ("connection", "http11", "http2", "proxy", "socks")))
"""httpx logs each request's URL (INFO); httpcore logs the status line and headers (DEBUG), which may repeat it."""


class AlertDeliveryError(RuntimeError):
    """Slack did not take the message after every attempt (the message names no URL, nor its path)."""


@dataclass(frozen=True)
class Delivery:
    """What happened to one alert: sent now, already sent earlier (skipped), or not configured."""

    key: str
    status: str
    """"sent", "already_sent" or "no_webhook"."""
    attempts: int = 0


def drift_message(
    report: DriftReport,
    *,
    retraining: str | None = None,
    clears_after: int | None = None,
    flow_run_url: str | None,
    report_url: str | None,
    health_url: str | None = None,
) -> dict[str, Any]:
    """The Block Kit message for a drifted window that opens an incident: model, window, drifted features with
    scores, the estimated impact on the model and whether (and why) retraining was asked for, when Slack hears
    again (`clears_after` clean windows), links (the run, the window's report, the model's health page)."""
    drifted = sorted((f for f in report.features if f.drifted), key=lambda feature: -feature.score)
    window = (
        f"{report.window_start:%Y-%m-%d %H:%M}–{report.window_end:%H:%M} UTC"
        if report.window_start and report.window_end
        else "the latest window"
    )
    found = "Training/serving skew" if report.check == "skew" else "Drift"
    headline = f"{found} in {report.model_tag}: {len(drifted)} feature(s) differ from training in {window}"
    listed = "\n".join(
        f"• `{feature.column}` {feature.method} {feature.score:.3f} (threshold {feature.threshold})"
        for feature in drifted[:MAX_FEATURES_LISTED]
    )
    if len(drifted) > MAX_FEATURES_LISTED:
        listed += f"\n…and {len(drifted) - MAX_FEATURES_LISTED} more"
    facts = {"Model": f"`{report.model_tag}`", "Window": window}
    if report.performance_line:
        facts["Estimated impact"] = report.performance_line
    if retraining:
        facts["Retraining"] = retraining
    if clears_after is not None:
        facts["Incident"] = (
            f"opened; no message for its next drifted windows, one when {clears_after} clean in a row clear it"
        )
    blocks = _opening(headline, facts)
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Drifted features*\n{listed or '–'}"}})
    if report.prediction is not None:
        scores = report.prediction
        prediction = (
            f"*Prediction drift*\n`{scores.column}` {scores.method} {scores.score:.3f} (threshold {scores.threshold})"
        )
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": prediction}})
    if report.quality_issues:
        issues = "\n".join(f"• `{issue.column}` {issue.rule}: {issue.detail}" for issue in report.quality_issues)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Data quality*\n{issues}"[:3000]}})
    return _message(
        headline, blocks, {"Flow run": flow_run_url, "Drift report": report_url, "Model health": health_url}
    )


def cleared_message(
    incident: Incident, *, flow_run_url: str | None, report_url: str | None, health_url: str | None = None
) -> dict[str, Any]:
    """The Block Kit message for an incident that cleared: how long it lasted, what drifted, its peak scores."""
    headline = f"Drift in {incident.model} cleared: {incident.clean_windows} clean windows in a row"
    facts = {
        "Model": f"`{incident.model}` (opened by `{incident.opened_by}`)",
        "Incident": incident.describe(),
    }
    links = {"Flow run": flow_run_url, "Drift report": report_url, "Model health": health_url}
    return _message(headline, _opening(headline, facts), links)


def quality_message(
    report: QualityReport,
    window: WindowQuality,
    *,
    flow_run_url: str | None,
    window_seconds: int,
    health_url: str | None = None,
) -> dict[str, Any]:
    """The Block Kit message for a window whose live ROC AUC fell below the model's by more than allowed."""
    auc = window.metrics.roc_auc if window.metrics else None
    end = window.window_start + timedelta(seconds=window_seconds)
    span = f"{window.window_start:%Y-%m-%d %H:%M}–{end:%H:%M} UTC"
    headline = (
        f"Quality drop in {report.model_tag}: ROC AUC {auc:.3f} on labelled traffic of {span}, "
        f"{report.baseline_roc_auc:.3f} at training"
    )
    if window.concept_drift:
        headline = f"Probable concept drift in {report.model_tag}: " + headline.split(": ", 1)[1]
    facts = {
        "Model": f"`{report.model_tag}`",
        "Window": span,
        "Live ROC AUC": f"{auc:.3f} ({auc - report.baseline_roc_auc:+.3f})",
        "Labelled predictions": f"{window.labelled} of {window.predictions}",
    }
    if window.estimate is not None:
        facts["Estimated before labels"] = window.estimate.describe(report.baseline_roc_auc)
    if window.concept_drift:
        facts["Why"] = (
            "the estimate from the scores did not foresee the drop: the features look as they did, the outcomes "
            "changed (concept drift); retraining on the new labels is what helps"
        )
    return _message(headline, _opening(headline, facts), {"Flow run": flow_run_url, "Model health": health_url})


def deferred_message(reason: str, skipped: str, pending: str | None, *, flow_run_url: str | None) -> dict[str, Any]:
    """A requested retraining that found nothing new to learn from: what it waits for."""
    headline = "Retraining deferred: no new labelled data yet"
    facts = {"Why it was asked": reason, "Outcome": skipped}
    if pending:
        facts["Waiting"] = pending
    return _message(headline, _opening(headline, facts), {"Flow run": flow_run_url})


def retrain_message(
    challenger_tag: str, decision: GateDecision, *, reason: str, serving: str, flow_run_url: str | None
) -> dict[str, Any]:
    """The outcome of a retraining run: the challenger, the gate's verdict and reasons, what is served now."""
    verdict = "promoted to champion" if decision.promote else "rejected by the gate"
    headline = f"Retrained {challenger_tag.split(':')[0]}: {challenger_tag} {verdict}"
    reasons = "\n".join(f"• {line}" for line in decision.reasons)
    facts = {"Why": reason, "Serving": serving}
    if decision.comparison is not None:
        facts["On fresh labels"] = decision.comparison.describe()
    blocks = _opening(headline, facts)
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Gate*\n{reasons}"[:3000]}})
    return _message(headline, blocks, {"Flow run": flow_run_url})


def _opening(headline: str, facts: dict[str, str]) -> list[dict[str, Any]]:
    """A message's first blocks: the headline as its header, then the facts as labelled fields."""
    fields = [{"type": "mrkdwn", "text": f"*{label}*\n{value}"} for label, value in facts.items()]
    return [
        {"type": "header", "text": {"type": "plain_text", "text": headline[:150]}},
        {"type": "section", "fields": fields},
    ]


def _message(headline: str, blocks: list[dict[str, Any]], links: dict[str, str | None]) -> dict[str, Any]:
    """The message: `text` (notifications show it) and the blocks, ending with the links that exist."""
    present = [f"<{url}|{label}>" for label, url in links.items() if url]
    if present:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(present)}]})
    return {"text": headline, "blocks": blocks}


def alert_key(model_tag: str, window_start: datetime | None) -> str:
    """One alert per model version and window."""
    return f"{model_tag}@{window_start.isoformat() if window_start else 'latest'}"


def mark_once(ledger_dir: Path, key: str) -> bool:
    """True the first time `key` is marked in `ledger_dir`, False ever after (atomic across processes)."""
    ledger_dir.mkdir(parents=True, exist_ok=True)
    marker = ledger_dir / f"{_ledger_name(key)}.once"
    try:
        with open(marker, "x") as file:
            file.write(key)
    except FileExistsError:
        return False
    return True


def send_once(
    webhook_url: SecretStr | None,
    message: dict[str, Any],
    *,
    key: str,
    ledger_dir: Path,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """Post `message` to the webhook unless an alert with `key` was already delivered; retry 429 and 5xx.

    Raises `AlertDeliveryError` when every attempt failed. With no webhook, nothing is sent (`no_webhook`): the
    caller reports the alert another way.
    """
    if webhook_url is None:
        return Delivery(key, "no_webhook")
    ledger_dir.mkdir(parents=True, exist_ok=True)
    name = _ledger_name(key)
    receipt = ledger_dir / f"{name}.sent.json"
    with open(ledger_dir / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent sender waits here, then finds the receipt
        if receipt.exists():
            logger.info("alert %s was already sent; not sending it again", key)
            return Delivery(key, "already_sent")
        attempts = _post(webhook_url, message, sleep)
        with atomic_path(receipt) as temporary:
            temporary.write_text(json.dumps({"key": key, "sent_at": time.time(), "attempts": attempts}))
    logger.info("alert %s sent to Slack (%d attempt(s))", key, attempts)
    return Delivery(key, "sent", attempts)


def _ledger_name(key: str) -> str:
    """A file name for any key (model tags and times hold characters a file name should not)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _post(webhook_url: SecretStr, message: dict[str, Any], sleep: Callable[[float], None]) -> int:
    redaction = _Redact(webhook_url)
    # On each logger itself: a filter applies to the records of the logger it is added to, not of its children.
    loggers = [logging.getLogger(name) for name in HTTP_LOGGERS]
    for http_logger in loggers:
        http_logger.addFilter(redaction)
    try:
        return _post_with_retries(webhook_url, message, sleep)
    finally:
        for http_logger in loggers:
            http_logger.removeFilter(redaction)


def _post_with_retries(webhook_url: SecretStr, message: dict[str, Any], sleep: Callable[[float], None]) -> int:
    wait = BACKOFF_S
    problem = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            response = httpx.post(webhook_url.get_secret_value(), json=message, timeout=10.0)
        except httpx.HTTPError as error:
            problem = redact(f"{type(error).__name__} reaching the Slack webhook: {error}", [webhook_url])
        else:
            if response.is_success:
                return attempt
            status = redact(f"{response.status_code} {response.reason_phrase}", [webhook_url])
            # Redacted before it is cut short: a cut through the URL would leave a prefix that no longer matches it.
            body = redact(response.text, [webhook_url])[:100]
            problem = f"the Slack webhook answered {status}: {body!r}"
            if response.status_code not in RETRY_STATUSES:
                break
            retry_after = _retry_after(response)
            if retry_after is not None:
                wait = retry_after
        if attempt < ATTEMPTS:
            logger.warning("Slack alert attempt %d/%d failed: %s; retrying in %.1f s", attempt, ATTEMPTS, problem, wait)
            sleep(wait)
            wait *= 2
    raise AlertDeliveryError(f"the drift alert was not delivered: {problem}")


class _Redact(logging.Filter):
    """Redacts the webhook URL (and its path) in a log record's message."""

    def __init__(self, secret: SecretStr) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message, [self.secret])
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None
