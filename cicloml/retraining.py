"""Whether a retraining has anything new to learn from, and the requests that wait until it has.

A retraining requested by a check (drift, a quality drop) needs labelled rows the champion never saw: labels arrive
late (30 days in the demo), so a retraining asked for the moment a window drifts would fit the champion's own data
again and produce the same model. `assess_freshness` compares the training frame with the champion's lineage before
anything is fitted; a request that finds too little waits as a `PendingRetraining` in the state folder (one per model
and window) until the quality check counts enough matured labels (`matured_labels_after`) and starts it again.

A world that changed (a run of degraded windows from its onset, `degradation_onset`) is learned from the labels
since the onset; the first model sees only a few of them, so while a `Regime` is kept for the champion the quality
check asks for follow-ups as those labels grow (`Regime.follow_up`), until the gate finds no improvement.
"""

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import BaseModel

from cicloml.atomic import atomic_path
from cicloml.drift import DriftReport
from cicloml.estimation import PerformanceEstimate
from cicloml.lineage import Lineage
from cicloml.quality import WindowQuality
from cicloml.spec import LabelsSpec, ProjectSpec


class Freshness(BaseModel):
    """The training frame held against the champion's."""

    champion_tag: str | None
    champion_cutoff: datetime | None
    """The newest label event time the champion trained (or was tested) on."""
    new_rows: int
    """Labelled rows of the frame newer than `champion_cutoff` (all rows without a champion)."""
    same_data: bool
    """The frame's data fingerprint equals the champion's: fitting it would reproduce the champion."""
    same_spec: bool
    """The model, training and feature settings equal the champion's."""

    def nothing_to_learn(self, min_new_labels: int, *, requested: bool) -> bool:
        """Whether fitting would waste the run: the champion's own data and settings, or, for a requested
        retraining, fewer than `min_new_labels` new labelled rows (`enough_for`)."""
        return (self.same_data and self.same_spec) or (requested and not self.enough_for(min_new_labels))

    def enough_for(self, min_new_labels: int) -> bool:
        """Whether a requested retraining may fit: new settings, or at least `min_new_labels` new labelled rows."""
        if self.champion_tag is None or not self.same_spec:
            return True
        return not self.same_data and self.new_rows >= min_new_labels

    def describe(self) -> str:
        if self.champion_tag is None:
            return f"no champion yet; {self.new_rows} labelled rows"
        cutoff = f"{self.champion_cutoff:%Y-%m-%d %H:%M} UTC" if self.champion_cutoff else "its cutoff"
        same = "; the same data as the champion" if self.same_data else ""
        return f"{self.new_rows} labelled rows newer than {self.champion_tag}'s cutoff ({cutoff}){same}"


def spec_fingerprint(spec: ProjectSpec, model_spec: BaseModel, seed: int) -> str:
    """A hash of what decides the model besides the data: the model section (or a run's override), the training
    settings and seed, and the features it reads."""
    settings = {
        "model": model_spec.model_dump(mode="json"),
        "training": spec.training.model_dump(mode="json", exclude={"seed", "slices"}),
        "seed": seed,
        "features": spec.features.model_dump(mode="json", include={"feature_service", "exclude"}),
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def assess_freshness(
    frame: pd.DataFrame,
    time_column: str,
    champion: tuple[str, Lineage] | None,
    *,
    data_fingerprint: str,
    spec_fingerprint: str,
) -> Freshness:
    """Hold a training frame (its fingerprint computed as the lineage computes it) against the champion's lineage.
    A champion from before lineages recorded their settings counts as trained on other settings."""
    if champion is None:
        return Freshness(champion_tag=None, champion_cutoff=None, new_rows=len(frame), same_data=False, same_spec=False)
    tag, lineage = champion
    cutoff = lineage.test_window[1]
    times = _utc(frame[time_column])
    return Freshness(
        champion_tag=tag,
        champion_cutoff=cutoff,
        new_rows=int((times > pd.Timestamp(cutoff)).sum()),
        same_data=lineage.data_fingerprint == data_fingerprint,
        same_spec=lineage.spec_fingerprint == spec_fingerprint,
    )


def label_delay(labels: pd.DataFrame, spec: LabelsSpec) -> timedelta | None:
    """The typical wait for a label: the median of `available_time − event_time` in the label table; None when the
    table records no available time."""
    if spec.available_time is None or labels.empty:
        return None
    waits = _utc(labels[spec.available_time]) - _utc(labels[spec.event_time])
    median = waits.median()
    return None if pd.isna(median) else median.to_pytimedelta()


def matured_labels_after(labels: pd.DataFrame, spec: LabelsSpec, *, after: datetime, known_by: datetime) -> int:
    """Labels whose event is newer than `after` and which are known by `known_by`."""
    newer = _utc(labels[spec.event_time]) > pd.Timestamp(after)
    return int((newer & _known(labels, spec, known_by)).sum())


def _known(labels: pd.DataFrame, spec: LabelsSpec, known_by: datetime) -> pd.Series:
    """Which labels are known by `known_by` (all of them when the table records no available time)."""
    if spec.available_time is None:
        return pd.Series(True, index=labels.index)
    return _utc(labels[spec.available_time]) <= pd.Timestamp(known_by)


class PendingRetraining(BaseModel):
    """A retraining that was asked for and found too few new labels: it waits for them."""

    model_tag: str
    """The model version the check found wanting."""
    window_start: datetime
    check: str
    reason: str
    requested_at: datetime
    """The check's time (its `known_by` or now): when the request was made."""
    champion_cutoff: datetime | None
    """The champion's newest training label: only labels after it are new."""
    labels_expected_from: datetime | None
    """When the window's labels should have matured (window start + the label table's typical delay)."""
    skipped: str
    """The outcome line the skipped retraining reported."""
    since: datetime | None = None
    """The degradation's onset the request named, passed on when it starts again."""

    @property
    def key(self) -> str:
        return f"{self.model_tag}@{self.window_start.isoformat()}"


def pending_dir(state_dir: Path, model_name: str) -> Path:
    return state_dir / "retraining" / model_name / "pending"


def save_pending(state_dir: Path, request: PendingRetraining) -> Path:
    """Keep `request` (replacing the same model and window's), atomically."""
    path = pending_dir(state_dir, request.model_tag.split(":")[0]) / f"{_file_name(request.key)}.json"
    with atomic_path(path) as temporary:
        temporary.write_text(request.model_dump_json(indent=2))
    return path


def pending_requests(state_dir: Path, model_name: str) -> list[PendingRetraining]:
    """The waiting requests for `model_name`, oldest first."""
    folder = pending_dir(state_dir, model_name)
    requests = [PendingRetraining.model_validate_json(path.read_text()) for path in folder.glob("*.json")]
    return sorted(requests, key=lambda request: request.requested_at)


def clear_pending(state_dir: Path, request: PendingRetraining) -> None:
    path = pending_dir(state_dir, request.model_tag.split(":")[0]) / f"{_file_name(request.key)}.json"
    path.unlink(missing_ok=True)


def _file_name(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def degradation_onset(windows: Sequence[WindowQuality]) -> datetime | None:
    """The start of the first window in the newest run of degraded windows, where the world the model knew ended;
    None when the newest judged window did not degrade."""
    judged = _judged(windows)
    return degradation_onsets(judged)[-1].window_start if judged and judged[-1].degraded else None


def degradation_onsets(windows: Sequence[WindowQuality]) -> list[WindowQuality]:
    """The degraded windows that start a run of degraded windows: one alert each."""
    judged = _judged(windows)
    return [window for i, window in enumerate(judged) if window.degraded and not (i and judged[i - 1].degraded)]


def _judged(windows: Sequence[WindowQuality]) -> list[WindowQuality]:
    """The judged windows in time order: only they count (an unjudged one neither breaks nor extends a run)."""
    return sorted((window for window in windows if window.judged), key=lambda window: window.window_start)


class Regime(BaseModel):
    """The world since a degradation's onset, being learned: the champion was trained on `trained_rows` labelled
    rows from `onset` on (`retraining.since_onset`)."""

    onset: datetime
    trained_rows: int
    model_tag: str

    def follow_up(self, labels_since_onset: int, newest_label: datetime | None, spec: ProjectSpec) -> str | None:
        """Why a follow-up retraining is due now (`retraining.follow_up_growth`), or None: the labels since the
        onset have not grown enough yet, or already span the training window."""
        growth = spec.retraining.follow_up_growth
        if growth is None or newest_label is None or labels_since_onset < growth * self.trained_rows:
            return None
        window_days = spec.training.window_days
        if window_days is not None and newest_label - self.onset >= timedelta(days=window_days):
            return None
        return (
            f"follow-up: {labels_since_onset} labelled rows since the onset {self.onset:%Y-%m-%d %H:%M} UTC, "
            f"{labels_since_onset / max(self.trained_rows, 1):.1f}x the {self.trained_rows} {self.model_tag} learned "
            f"the new world from (retraining.follow_up_growth: {growth})"
        )


def labels_since(
    labels: pd.DataFrame, spec: LabelsSpec, *, onset: datetime, known_by: datetime
) -> tuple[int, datetime | None]:
    """The labels whose event is at or after `onset` and which are known by `known_by`, and the newest event time
    among them (None when there are none)."""
    events = _utc(labels[spec.event_time])
    since = (events >= pd.Timestamp(onset)) & _known(labels, spec, known_by)
    count = int(since.sum())
    return count, (events[since].max().to_pydatetime() if count else None)


def regime_path(state_dir: Path, model_name: str) -> Path:
    return state_dir / "retraining" / model_name / "regime.json"


def save_regime(state_dir: Path, model_name: str, regime: Regime) -> Path:
    """Remember that the champion learned the world since an onset, for the quality check's follow-ups."""
    path = regime_path(state_dir, model_name)
    with atomic_path(path) as temporary:
        temporary.write_text(regime.model_dump_json(indent=2))
    return path


def read_regime(state_dir: Path, model_name: str) -> Regime | None:
    path = regime_path(state_dir, model_name)
    return Regime.model_validate_json(path.read_text()) if path.exists() else None


def clear_regime(state_dir: Path, model_name: str) -> None:
    regime_path(state_dir, model_name).unlink(missing_ok=True)


class Impact(BaseModel):
    """Whether a drifted window's estimated performance asks for retraining, and why, in words."""

    retrain: bool
    reason: str


def drift_retraining(report: DriftReport, spec: ProjectSpec) -> Impact:
    """Whether a drifted window asks for retraining, and why, as the spec says: `drift.retrain_on_drift`, then
    `drift.retrain_when` (`drift_impact`)."""
    if report.check == "drift" and not spec.drift.retrain_on_drift:
        return Impact(retrain=False, reason="drift.retrain_on_drift is off")
    return drift_impact(report, spec, spec.drift.retrain_when)


def drift_impact(report: DriftReport, spec: ProjectSpec, when: Literal["any_drift", "estimated_drop"]) -> Impact:
    """Whether a drifted window asks for retraining under rule `when`: on any drift, or only on an estimated drop
    beyond its uncertainty (`estimated_impact`). Skew never asks: it comes from computing features differently when
    serving, which retraining on the same pipeline would not fix."""
    if report.check == "skew":
        return Impact(retrain=False, reason="training/serving skew: retraining on the same pipeline would not fix it")
    if when == "any_drift":
        return Impact(retrain=True, reason="drift.retrain_when: any_drift")
    return estimated_impact(report.performance, report.baseline_roc_auc, spec.quality.max_drop)


def estimated_impact(estimate: PerformanceEstimate | None, baseline_roc_auc: float | None, max_drop: float) -> Impact:
    """A drifted window asks for retraining when its estimated ROC AUC is more than `max_drop` below the model's
    test-window value by more than the estimate's uncertainty: the whole interval lies below the bar. Without an
    estimate (no logged scores, a model trained before calibration was recorded) there is no evidence either way,
    and drift alone asks."""
    if estimate is None or estimate.roc_auc is None or estimate.roc_auc_interval is None or baseline_roc_auc is None:
        return Impact(retrain=True, reason="no performance estimate for the window: drift alone asks for retraining")
    bar = baseline_roc_auc - max_drop
    line = estimate.describe(baseline_roc_auc)
    if estimate.roc_auc_interval[1] < bar:
        return Impact(retrain=True, reason=f"{line}: below {bar:.3f} (training − quality.max_drop {max_drop})")
    return Impact(
        retrain=False,
        reason=f"holds: {line}, not below {bar:.3f} (training − quality.max_drop {max_drop}) beyond its "
        "uncertainty; no retraining",
    )


def _utc(values: pd.Series) -> pd.Series:
    # to_datetime's cache pays off only on repeated strings; on a datetime column it costs ~40x the conversion.
    return pd.to_datetime(values, utc=True, cache=False)
