"""Alert hygiene: drifted windows grouped into incidents, so Slack hears once when one opens and once when it clears.

A feature that stays drifted for a week would otherwise page every window of that week, and one hovering at its
threshold would page every other window. An incident opens on the first alerting window of a model; while it is
open, further alerting windows add to it without a message; it clears after `alerts.clear_after` clean windows in a
row, where clean means every score below its threshold by `alerts.clear_margin` (hysteresis: a score hovering just
under the threshold keeps the incident open instead of closing and reopening it).

`track` is a pure step (the backtest replays it); `IncidentLog` keeps a model's open incident and the ones it closed
in `<state>/incidents/<model>.json`, read and written under a lock so that concurrent drift runs see each other.
"""

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from cicloml.atomic import atomic_path
from cicloml.drift import DriftReport
from cicloml.spec import AlertsSpec

Action = Literal["opened", "continues", "cleared", "quiet"]
"""What a window did: opened an incident (Slack hears), added to or held an open one (no message), cleared it
(Slack hears), or found nothing with none open."""
KEPT_CLOSED = 100
"""Closed incidents a log keeps, newest last: the file stays small however long the model serves."""


class Incident(BaseModel):
    """One stretch of drift of one model, from its first alerting window to the clean windows that cleared it."""

    model: str
    opened: datetime
    """The start of the first alerting window."""
    opened_by: str
    """The model version whose traffic opened it."""
    features: dict[str, float] = Field(default_factory=dict)
    """Each feature (and the score column) that went over its threshold, with its highest score."""
    alerting_windows: int = 1
    last_window: datetime
    """The newest window seen."""
    clean_windows: int = 0
    """Clean windows in a row since the last window that was not."""
    closed: datetime | None = None
    """The start of the window that cleared it."""

    def describe(self) -> str:
        """ "open since 2026-01-05 00:00 UTC: 3 alerting windows; monthly_charges 0.62" for messages and reports."""
        span = f"{self.opened:%Y-%m-%d %H:%M} UTC"
        span = f"from {span} to {self.closed:%Y-%m-%d %H:%M} UTC" if self.closed else f"open since {span}"
        peaks = ", ".join(f"{name} {score:.2f}" for name, score in sorted(self.features.items(), key=lambda i: -i[1]))
        return f"{span}: {self.alerting_windows} alerting window(s); peak {peaks or '–'}"


class IncidentStep(BaseModel):
    """One window's effect: the action and the incident it concerns (None when quiet)."""

    action: Action
    incident: Incident | None


def over_threshold(report: DriftReport, margin: float = 0.0) -> dict[str, float]:
    """The features (and the score column) scoring at or above (1 − `margin`) × their threshold, with their scores;
    margin 0: those that drifted."""
    checked = [*report.features, *([report.prediction] if report.prediction else [])]
    return {
        feature.column: feature.score
        for feature in checked
        if (feature.drifted if margin == 0.0 else feature.score >= (1.0 - margin) * feature.threshold)
    }


def track(open_incident: Incident | None, report: DriftReport, spec: AlertsSpec) -> IncidentStep:
    """The incident after one checked window of the model (`report`), given the one open before it.

    A window older than the newest one seen changes nothing (a rerun of an old window). A rerun of the window that
    opened the incident opens it again, so its caller re-sends the same message, which the alert ledger skips."""
    if report.window_start is None:
        raise ValueError("an incident follows windows: the report needs its window_start")
    window, model = report.window_start, report.model_tag.split(":")[0]
    alerting = report.drifted
    if open_incident is None:
        if not alerting:
            return IncidentStep(action="quiet", incident=None)
        incident = Incident(
            model=model,
            opened=window,
            opened_by=report.model_tag,
            features=over_threshold(report),
            last_window=window,
        )
        return IncidentStep(action="opened", incident=incident)
    if window < open_incident.last_window:
        return IncidentStep(action="continues", incident=open_incident)
    if alerting:
        peaks = dict(open_incident.features)
        for name, score in over_threshold(report).items():
            peaks[name] = max(score, peaks.get(name, score))
        repeated = window == open_incident.last_window
        incident = open_incident.model_copy(
            update={
                "features": peaks,
                "alerting_windows": open_incident.alerting_windows + (0 if repeated else 1),
                "last_window": window,
                "clean_windows": 0,
            }
        )
        rerun = window == open_incident.opened and report.model_tag == open_incident.opened_by
        return IncidentStep(action="opened" if rerun else "continues", incident=incident)
    if window == open_incident.last_window:  # a second look at a window already counted
        return IncidentStep(action="continues", incident=open_incident)
    clean = not over_threshold(report, spec.clear_margin)
    clean_windows = open_incident.clean_windows + 1 if clean else 0
    incident = open_incident.model_copy(update={"last_window": window, "clean_windows": clean_windows})
    if clean_windows >= spec.clear_after:
        return IncidentStep(action="cleared", incident=incident.model_copy(update={"closed": window}))
    return IncidentStep(action="continues", incident=incident)


class _LogFile(BaseModel):
    open: Incident | None = None
    closed: list[Incident] = Field(default_factory=list)


class IncidentLog:
    """A model's incidents on disk: the open one and the last `KEPT_CLOSED` closed ones."""

    def __init__(self, incidents_dir: Path, model: str) -> None:
        if not model or "/" in model or model.startswith("."):
            raise ValueError(f"model name {model!r} cannot name an incident log")
        self.path = incidents_dir / f"{model}.json"

    def read(self) -> tuple[Incident | None, list[Incident]]:
        """The open incident (None when none is) and the closed ones, oldest first."""
        state = self._load()
        return state.open, state.closed

    @contextmanager
    def updating(self) -> Iterator["_Update"]:
        """Read, decide and write under one lock: `with log.updating() as update: update.apply(report, spec)`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            update = _Update(self._load())
            yield update
            if update.changed:
                with atomic_path(self.path) as temporary:
                    temporary.write_text(update.state.model_dump_json(indent=2))

    def _load(self) -> _LogFile:
        if not self.path.exists():
            return _LogFile()
        return _LogFile.model_validate(json.loads(self.path.read_text()))


class _Update:
    def __init__(self, state: _LogFile) -> None:
        self.state = state
        self.changed = False

    def apply(self, report: DriftReport, spec: AlertsSpec) -> IncidentStep:
        step = track(self.state.open, report, spec)
        if step.action == "cleared":
            assert step.incident is not None
            self.state = _LogFile(open=None, closed=[*self.state.closed, step.incident][-KEPT_CLOSED:])
        elif step.incident is not None:
            self.state = _LogFile(open=step.incident, closed=self.state.closed)
        self.changed = self.changed or step.incident is not None
        return step
