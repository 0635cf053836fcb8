"""Whether a retraining has anything new to learn from, the requests that wait for labels, and drift's estimated
impact as the reason to retrain or not."""

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from cicloml.estimation import PerformanceEstimate
from cicloml.lineage import Lineage
from cicloml.models.preprocessing import FeatureSchema
from cicloml.quality import WindowQuality
from cicloml.retraining import (
    PendingRetraining,
    Regime,
    assess_freshness,
    clear_pending,
    degradation_onset,
    degradation_onsets,
    estimated_impact,
    label_delay,
    matured_labels_after,
    pending_requests,
    save_pending,
    spec_fingerprint,
)
from cicloml.spec import LabelsSpec, ProjectSpec

T0 = datetime(2026, 10, 1, tzinfo=timezone.utc)
LABELS = LabelsSpec(path="labels.parquet", column="churned", available_time="label_timestamp")


def lineage(cutoff: datetime, fingerprint: str = "data-a", settings: str | None = "spec-a") -> Lineage:
    return Lineage(
        family="sklearn",
        feature_service="churn_v1",
        features=FeatureSchema(entity_keys=["customer_id"], numeric=["x"], categorical=[]),
        label="churned",
        training_window=(T0, cutoff - timedelta(days=7)),
        test_window=(cutoff - timedelta(days=1), cutoff),
        rows={"train": 10, "validation": 5, "test": 5},
        data_fingerprint=fingerprint,
        params={},
        threshold=0.5,
        metrics={"roc_auc": 0.8},
        library_versions={},
        code_revision="test",
        spec_fingerprint=settings,
    )


def frame(days: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"event_timestamp": [T0 + timedelta(days=day) for day in days], "churned": 0})


def test_the_champions_own_data_and_settings_are_nothing_new():
    same = assess_freshness(
        frame([1, 2, 3]),
        "event_timestamp",
        ("churn:a", lineage(T0 + timedelta(days=3))),
        data_fingerprint="data-a",
        spec_fingerprint="spec-a",
    )
    assert (same.new_rows, same.same_data, same.same_spec) == (0, True, True)
    assert not same.enough_for(1)
    assert same.describe().startswith("0 labelled rows newer than churn:a's cutoff (2026-10-04 00:00 UTC)")


def test_new_labels_count_from_the_champions_cutoff_and_must_reach_the_minimum():
    fresh = assess_freshness(
        frame([1, 2, 3, 4, 5, 5]),
        "event_timestamp",
        ("churn:a", lineage(T0 + timedelta(days=3))),
        data_fingerprint="data-b",
        spec_fingerprint="spec-a",
    )
    assert (fresh.new_rows, fresh.same_data) == (3, False)
    assert fresh.enough_for(3) and not fresh.enough_for(4)


def test_other_settings_or_no_champion_may_always_train():
    other = assess_freshness(
        frame([1]),
        "event_timestamp",
        ("churn:a", lineage(T0 + timedelta(days=3))),
        data_fingerprint="data-a",
        spec_fingerprint="spec-b",
    )
    assert other.same_data and not other.same_spec and other.enough_for(1000)
    old = assess_freshness(  # a champion from before settings were recorded
        frame([1]),
        "event_timestamp",
        ("churn:a", lineage(T0 + timedelta(days=3), settings=None)),
        data_fingerprint="data-a",
        spec_fingerprint="spec-a",
    )
    assert old.enough_for(1000)
    first = assess_freshness(frame([1, 2]), "event_timestamp", None, data_fingerprint="x", spec_fingerprint="y")
    assert first.enough_for(1000) and first.new_rows == 2


def test_the_spec_fingerprint_follows_what_decides_the_model():
    spec = ProjectSpec.model_validate(
        {"name": "churn", "features": {"entity": "customer", "feature_service": "churn_v1"}, "labels": LABELS}
    )
    base = spec_fingerprint(spec, spec.model, 0)
    assert base == spec_fingerprint(spec, spec.model, 0)
    assert base != spec_fingerprint(spec, spec.model, 1)
    assert base != spec_fingerprint(
        spec.model_copy(update={"training": spec.training.model_copy(update={"window_days": 30})}), spec.model, 0
    )
    # Slices and alert settings change reports, not the model.
    assert base == spec_fingerprint(
        spec.model_copy(update={"training": spec.training.model_copy(update={"slices": ["region"]})}), spec.model, 0
    )


def test_label_delay_and_matured_labels_come_from_the_label_table():
    events = [T0 + timedelta(days=day) for day in range(6)]
    labels = pd.DataFrame(
        {"event_timestamp": events, "label_timestamp": [event + timedelta(days=30) for event in events]}
    )
    assert label_delay(labels, LABELS) == timedelta(days=30)
    assert label_delay(labels, LABELS.model_copy(update={"available_time": None})) is None
    after = T0 + timedelta(days=2)
    assert matured_labels_after(labels, LABELS, after=after, known_by=T0 + timedelta(days=33)) == 1
    assert matured_labels_after(labels, LABELS, after=after, known_by=T0 + timedelta(days=40)) == 3


def test_pending_requests_are_one_per_model_and_window(tmp_path):
    def request(window_day: int, at: int) -> PendingRetraining:
        return PendingRetraining(
            model_tag="churn:a",
            window_start=T0 + timedelta(days=window_day),
            check="drift",
            reason="drift",
            requested_at=T0 + timedelta(days=at),
            champion_cutoff=T0,
            labels_expected_from=None,
            skipped="skipped",
        )

    save_pending(tmp_path, request(1, at=2))
    save_pending(tmp_path, request(1, at=3))  # the same window asked again: replaced, not added
    save_pending(tmp_path, request(0, at=4))
    waiting = pending_requests(tmp_path, "churn")
    assert [(item.window_start.day, item.requested_at.day) for item in waiting] == [(2, 4), (1, 5)]
    assert pending_requests(tmp_path, "other") == []
    clear_pending(tmp_path, waiting[0])
    assert [item.key for item in pending_requests(tmp_path, "churn")] == [waiting[1].key]


def estimate(roc_auc: float, half_width: float) -> PerformanceEstimate:
    nothing = {
        f"{name}{suffix}": None for name in ("pr_auc", "precision", "recall") for suffix in ("", "_se", "_interval")
    }
    return PerformanceEstimate(
        rows=1000,
        simulations=500,
        confidence=0.9,
        roc_auc=roc_auc,
        roc_auc_se=half_width / 1.645,
        roc_auc_interval=(roc_auc - half_width, roc_auc + half_width),
        threshold=0.5,
        positive_rate=0.1,
        **nothing,
    )


@pytest.mark.parametrize(
    ("estimated", "half_width", "retrain"),
    [
        (0.79, 0.01, False),  # as at training
        (0.74, 0.02, False),  # below the bar (0.75), but within its uncertainty
        (0.70, 0.02, True),  # the whole interval below the bar
    ],
)
def test_drift_asks_for_retraining_only_when_the_estimated_drop_is_beyond_doubt(estimated, half_width, retrain):
    impact = estimated_impact(estimate(estimated, half_width), baseline_roc_auc=0.80, max_drop=0.05)
    assert impact.retrain is retrain
    assert f"estimated ROC AUC {estimated:.2f} ± {half_width:.2f} (training 0.80)" in impact.reason
    assert impact.reason.startswith("holds: ") is not retrain


def test_without_an_estimate_drift_alone_asks():
    impact = estimated_impact(None, baseline_roc_auc=0.8, max_drop=0.05)
    assert impact.retrain and "no performance estimate" in impact.reason


def window(day: int, *, judged: bool = True, degraded: bool = False) -> WindowQuality:
    return WindowQuality(
        window_start=T0 + timedelta(days=day),
        predictions=500,
        labelled=500 if judged else 10,
        metrics=None,
        judged=judged,
        degraded=degraded,
    )


def test_the_onset_is_the_first_window_of_the_newest_degraded_run():
    windows = [window(1, degraded=True), window(2), window(3, degraded=True), window(4, judged=False)]
    windows += [window(5, degraded=True)]
    assert degradation_onset(windows[::-1]) == T0 + timedelta(days=3)  # unjudged windows neither break nor extend
    assert degradation_onset([*windows, window(6)]) is None  # the newest judged window held
    assert degradation_onset([]) is None


def test_follow_ups_come_as_the_labels_since_the_onset_grow_and_stop_once_they_fill_the_window():
    spec = ProjectSpec.model_validate(
        {
            "name": "churn",
            "features": {"entity": "customer", "feature_service": "churn_v1"},
            "labels": LABELS,
            "training": {"window_days": 35},
            "retraining": {"follow_up_growth": 4.0},
        }
    )
    regime = Regime(onset=T0, trained_rows=1000, model_tag="churn:a")
    assert regime.follow_up(3999, T0 + timedelta(days=4), spec) is None
    reason = regime.follow_up(4000, T0 + timedelta(days=4), spec)
    assert reason is not None and "4000 labelled rows since the onset" in reason and "4.0x the 1000" in reason
    assert regime.follow_up(40_000, T0 + timedelta(days=35), spec) is None  # the window holds only the new world
    off = spec.model_copy(update={"retraining": spec.retraining.model_copy(update={"follow_up_growth": None})})
    assert regime.follow_up(40_000, T0 + timedelta(days=4), off) is None


def test_one_alert_per_run_of_degraded_windows():
    windows = [window(1, degraded=True), window(2, degraded=True), window(3), window(4, degraded=True)]
    windows += [window(5, judged=False), window(6, degraded=True)]
    onsets = [found.window_start - T0 for found in degradation_onsets(windows[::-1])]
    assert onsets == [timedelta(days=1), timedelta(days=4)]  # an unjudged window does not break the run 4–6
