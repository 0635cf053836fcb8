"""A model's health over its windows: one compact record per model version and window, kept for the model-health
page (`cicloml.health_report`).

A `DriftReport` and a `QualityReport` are values of one run; a person paged at night wants the last windows of both
side by side, with what was decided. The drift check keeps its part of a window's record (per-feature scores, the
score distribution's drift, the estimated ROC AUC, the alert, the retraining decision) and the quality check its
part (the realized ROC AUC once labels arrive, its alert and decisions). A record is keyed by model version and
window, and each check replaces only its own part, so a rerun replaces what it wrote before instead of adding to it.

A model's records live in one file, `<state>/history/<model>.json`, read and rewritten under a lock (concurrent
checks see each other, as in `cicloml.incidents`) and atomically.
"""

import fcntl
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from cicloml.atomic import atomic_path
from cicloml.drift import DriftReport, FeatureDrift
from cicloml.estimation import PerformanceEstimate
from cicloml.quality import QualityReport

KEPT_RECORDS = 500
"""Records a model's history keeps (one per version and window, newest by window start): a record of 20 features is
~1.8 KB, so the file stays under 1 MB however long the model serves, and a check rewrites it in ~0.2 s (measured:
benchmarks/bench_health.py's history, 500 records). 500 hourly windows are three weeks; the page shows 30."""

Source = Literal["drift", "skew", "quality", "labels matured", "follow-up"]
"""Which check made a retraining decision: the drift (or first-window skew) check, the quality check on a degraded
window, the quality check restarting a request whose labels have matured, or asking for a follow-up."""


class Score(BaseModel):
    """One column's drift score against its threshold."""

    score: float
    threshold: float
    drifted: bool


class RocAuc(BaseModel):
    """A ROC AUC with its interval (estimated from scores, or realized on labels)."""

    value: float
    interval: tuple[float, float] | None = None


class DriftPart(BaseModel):
    """What the drift check found in a window and did about it."""

    check: Literal["drift", "skew"]
    verdict: str
    """`DriftReport.title`: "drift", "no drift", "training/serving skew" or "no training/serving skew"."""
    rows: int
    features: dict[str, Score]
    score_drift: Score | None = None
    """The model's score distribution against its validation scores."""
    estimated: RocAuc | None = None
    """Estimated from the window's logged scores, before labels."""
    baseline_roc_auc: float | None = None
    """The version's ROC AUC on its test window, at training."""
    incident: str
    """What the window did to the drift incident: "opened", "continues", "cleared" or "quiet"."""
    alert: str
    """The window's message: "sent", "already_sent", "no_webhook", "incident_open" or "none"."""
    report_path: str | None = None
    """The window's HTML drift report."""


class QualityPart(BaseModel):
    """The window's quality once labels arrived, as the newest quality check measured it."""

    known_by: datetime
    labelled: int
    realized: RocAuc | None = None
    """None without labels of both classes."""
    judged: bool
    degraded: bool
    concept_drift: bool
    estimated: RocAuc | None = None
    baseline_roc_auc: float
    alert: str | None = None
    """The quality alert's delivery, for a degraded window that starts a run of them; None otherwise."""


class Decision(BaseModel):
    """A retraining decision about a window, with its reason."""

    source: Source
    action: str
    """"requested", "ran", "held", "off", "restarted", "already_requested"..."""
    reason: str | None = None


class WindowRecord(BaseModel):
    model_tag: str
    window_start: datetime
    window_end: datetime | None = None
    drift: DriftPart | None = None
    quality: QualityPart | None = None
    decisions: list[Decision] = Field(default_factory=list)
    """At most one per source."""


class WindowDecision(BaseModel):
    """A decision and the window (model version and start) it is about."""

    model_tag: str
    window_start: datetime
    decision: Decision


def history_path(state_dir: Path, model: str) -> Path:
    if not model or "/" in model or model.startswith("."):
        raise ValueError(f"model name {model!r} cannot name a history file")
    return state_dir / "history" / f"{model}.json"


def read_history(state_dir: Path, model: str) -> list[WindowRecord]:
    """The model's records, oldest window first (versions of one window by tag)."""
    return _load(history_path(state_dir, model))


def record_drift(
    state_dir: Path,
    report: DriftReport,
    *,
    rows: int,
    incident: str,
    alert: str,
    retrain: str,
    retrain_reason: str | None,
    report_path: Path | None = None,
) -> None:
    """Keep what the drift check found in `report`'s window and decided (its alert, its retraining decision)."""
    if report.window_start is None:
        raise ValueError("a history follows windows: the report needs its window_start")
    part = DriftPart(
        check=report.check,
        verdict=report.title,
        rows=rows,
        features={feature.column: _score(feature) for feature in report.features},
        score_drift=_score(report.prediction) if report.prediction else None,
        estimated=_estimated(report.performance),
        baseline_roc_auc=report.baseline_roc_auc,
        incident=incident,
        alert=alert,
        report_path=str(report_path) if report_path else None,
    )
    decisions = []
    if retrain != "none":
        decisions.append(
            WindowDecision(
                model_tag=report.model_tag,
                window_start=report.window_start,
                decision=Decision(source=report.check, action=retrain, reason=retrain_reason),
            )
        )
    with _updating(history_path(state_dir, _model(report.model_tag))) as records:
        record = _record(records, report.model_tag, report.window_start)
        record.window_end = report.window_end
        if record.drift is not None:
            part.alert = _first(part.alert, record.drift.alert)
        record.drift = part
        _decide(records, decisions)


def record_quality(
    state_dir: Path,
    report: QualityReport,
    *,
    alerts: dict[datetime, str],
    decisions: Sequence[WindowDecision] = (),
) -> None:
    """Keep every window's quality as `report` measured it, the quality alert of each window in `alerts` (by start)
    and the check's retraining `decisions`."""
    with _updating(history_path(state_dir, _model(report.model_tag))) as records:
        for window in report.windows:
            record = _record(records, report.model_tag, window.window_start)
            alert, earlier = alerts.get(window.window_start), record.quality.alert if record.quality else None
            # An alert sent is part of the window's story, even once a later check finds an earlier onset.
            alert = _first(alert, earlier) if alert and earlier else alert or earlier
            realized = window.metrics.roc_auc if window.metrics else None
            record.quality = QualityPart(
                known_by=report.known_by,
                labelled=window.labelled,
                realized=None if realized is None else RocAuc(value=realized, interval=window.roc_auc_interval),
                judged=window.judged,
                degraded=window.degraded,
                concept_drift=window.concept_drift,
                estimated=_estimated(window.estimate),
                baseline_roc_auc=report.baseline_roc_auc,
                alert=alert,
            )
        _decide(records, decisions)


def _score(feature: FeatureDrift) -> Score:
    return Score(score=feature.score, threshold=feature.threshold, drifted=feature.drifted)


def _estimated(estimate: PerformanceEstimate | None) -> RocAuc | None:
    if estimate is None or estimate.roc_auc is None:
        return None
    return RocAuc(value=estimate.roc_auc, interval=estimate.roc_auc_interval)


def _model(model_tag: str) -> str:
    return model_tag.split(":")[0]


def _first(new: str, old: str) -> str:
    """A rerun's "already_…" repeats an earlier outcome, which says what happened: keep that one."""
    return old if new.startswith("already_") else new


def _record(records: dict[tuple[str, datetime], WindowRecord], model_tag: str, start: datetime) -> WindowRecord:
    return records.setdefault((model_tag, start), WindowRecord(model_tag=model_tag, window_start=start))


def _decide(records: dict[tuple[str, datetime], WindowRecord], decisions: Sequence[WindowDecision]) -> None:
    """Each decision replaces its source's earlier one on the window (unless it only repeats it)."""
    for item in decisions:
        record = _record(records, item.model_tag, item.window_start)
        decision = item.decision
        earlier = next((d for d in record.decisions if d.source == decision.source), None)
        if earlier is not None:
            decision = decision.model_copy(update={"action": _first(decision.action, earlier.action)})
        record.decisions = [*(d for d in record.decisions if d.source != decision.source), decision]


def _load(path: Path) -> list[WindowRecord]:
    if not path.exists():
        return []
    return [WindowRecord.model_validate(record) for record in json.loads(path.read_text())["records"]]


@contextmanager
def _updating(path: Path) -> Iterator[dict[tuple[str, datetime], WindowRecord]]:
    """Read the records by (tag, window), let the caller change them, write back the newest `KEPT_RECORDS`, all
    under one lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        records = {(record.model_tag, record.window_start): record for record in _load(path)}
        yield records
        kept = sorted(records.values(), key=lambda record: (record.window_start, record.model_tag))[-KEPT_RECORDS:]
        payload = {"records": [record.model_dump(mode="json", exclude_none=True) for record in kept]}
        with atomic_path(path) as temporary:
            temporary.write_text(json.dumps(payload, separators=(",", ":")))
