"""Incidents: one message when drift starts, none while it lasts, one when clean windows clear it; hysteresis keeps
a score hovering at its threshold from flapping; the log on disk survives processes and keeps its size."""

from datetime import datetime, timedelta, timezone

import pytest

from cicloml.drift import DriftReport, FeatureDrift
from cicloml.incidents import KEPT_CLOSED, IncidentLog, track
from cicloml.spec import AlertsSpec

START = datetime(2026, 3, 2, tzinfo=timezone.utc)
SPEC = AlertsSpec(clear_after=2, clear_margin=0.2)


def report(hour: int, score: float, *, tag: str = "churn:v1", threshold: float = 0.3) -> DriftReport:
    """A window whose one feature scores `score` against `threshold`."""
    feature = FeatureDrift(
        column="monthly_charges",
        kind="numeric",
        method="wasserstein",
        score=score,
        threshold=threshold,
        drifted=score > threshold,
        reference_rows=1000,
        current_rows=1000,
        reference_null_rate=0.0,
        current_null_rate=0.0,
    )
    return DriftReport(
        model_tag=tag,
        window_start=START + timedelta(hours=hour),
        min_drifted_features=1,
        features=[feature],
        prediction=None,
        quality_issues=[],
    )


def actions(scores: list[float], spec: AlertsSpec = SPEC) -> list[str]:
    incident, seen = None, []
    for hour, score in enumerate(scores):
        step = track(incident, report(hour, score), spec)
        seen.append(step.action)
        incident = None if step.action == "cleared" else step.incident
    return seen


def test_an_incident_opens_once_and_clears_after_clean_windows_in_a_row():
    assert actions([0.1, 0.5, 0.6, 0.4, 0.1, 0.5, 0.1, 0.1, 0.1]) == [
        "quiet", "opened", "continues", "continues", "continues", "continues", "continues", "cleared", "quiet",
    ]  # fmt: skip


def test_a_score_hovering_at_the_threshold_holds_the_incident_instead_of_flapping():
    hovering = [0.31, 0.29, 0.31, 0.28, 0.29, 0.31, 0.27]
    assert actions(hovering) == ["opened", *["continues"] * 6]  # 0.27–0.29 are not clean: above 0.8 × 0.3
    without_margin = AlertsSpec(clear_after=1, clear_margin=0.0)
    assert actions(hovering, without_margin) == ["opened", "cleared", "opened", "cleared", "quiet", "opened", "cleared"]


def test_an_incident_remembers_its_span_and_peak_scores():
    incident = None
    for hour, score in enumerate([0.4, 0.7, 0.5]):
        incident = track(incident, report(hour, score), SPEC).incident
    assert incident is not None
    assert (incident.opened, incident.alerting_windows, incident.features) == (START, 3, {"monthly_charges": 0.7})
    assert incident.describe() == "open since 2026-03-02 00:00 UTC: 3 alerting window(s); peak monthly_charges 0.70"


def test_reruns_repeat_the_opening_only_for_the_version_that_opened_it_and_old_windows_change_nothing():
    opened = track(None, report(5, 0.5), SPEC).incident
    assert track(opened, report(5, 0.5), SPEC).action == "opened"  # the caller's ledger skips the resend
    assert track(opened, report(5, 0.5, tag="churn:v2"), SPEC).action == "continues"  # another version, same window
    older = track(opened, report(3, 0.1), SPEC)
    assert (older.action, older.incident) == ("continues", opened)


def test_the_log_keeps_the_open_incident_across_processes_and_a_bounded_history(tmp_path):
    log = IncidentLog(tmp_path, "churn")
    with log.updating() as update:
        assert update.apply(report(0, 0.5), SPEC).action == "opened"
    assert IncidentLog(tmp_path, "churn").read()[0].opened == START  # a new process reads it back
    hour = 1
    for _ in range(KEPT_CLOSED + 5):
        with log.updating() as update:
            for score in (0.1, 0.1, 0.5):
                update.apply(report(hour, score), SPEC)
                hour += 1
    open_incident, closed = log.read()
    assert open_incident is not None and len(closed) == KEPT_CLOSED
    assert all(incident.closed is not None for incident in closed)


@pytest.mark.parametrize("name", ["", "../x", ".hidden"])
def test_a_model_name_that_cannot_name_a_file_is_refused(tmp_path, name):
    with pytest.raises(ValueError, match="cannot name an incident log"):
        IncidentLog(tmp_path, name)
