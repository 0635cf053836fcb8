"""Live quality: labels join the nearest prediction of the same entity among those known in time, and each
window is judged against the model's baseline only with enough labels."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from cicloml.estimation import Calibration
from cicloml.prediction_log import PredictionLog, rows_disagreement, window_logged_rows
from cicloml.profiling import window_folder, window_profiled_rows
from cicloml.quality import assess_quality, join_labels
from cicloml.spec import LabelsSpec, QualitySpec
from cicloml.traffic import TrafficProfiler

T0 = datetime(2026, 11, 1, 10, tzinfo=timezone.utc)
LABELS = LabelsSpec(path="labels.parquet", column="churned", available_time="label_timestamp")


def predictions(ids, scored_at, scores, window_start=T0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ids,
            "scored_at": pd.to_datetime(scored_at, utc=True).astype("datetime64[us, UTC]"),
            "score": scores,
            "window_start": pd.Timestamp(window_start),
        }
    )


def labels(ids, observed, churned, known_after=timedelta(days=30)) -> pd.DataFrame:
    observed = pd.to_datetime(observed, utc=True)
    return pd.DataFrame(
        {"customer_id": ids, "event_timestamp": observed, "churned": churned, "label_timestamp": observed + known_after}
    )


def join(preds, table, known_by, within=timedelta(hours=24)):
    return join_labels(preds, table, spec=LABELS, entity_keys=["customer_id"], known_by=known_by, within=within)


def test_each_prediction_takes_the_nearest_label_of_its_entity_within_the_tolerance():
    preds = predictions([1, 1, 2, 3], [T0, T0 + timedelta(days=3), T0, T0], [0.9, 0.8, 0.2, 0.5])
    table = labels(
        [1, 1, 2, 3],
        [T0 - timedelta(hours=2), T0 + timedelta(days=3, hours=1), T0 + timedelta(hours=30), T0],
        [1, 0, 1, 0],
    )
    joined = join(preds, table, known_by=T0 + timedelta(days=60))
    label = dict(zip(zip(joined["customer_id"], joined["score"], strict=True), joined["label"], strict=True))
    assert (label[(1, 0.9)], label[(1, 0.8)], label[(3, 0.5)]) == (1.0, 0.0, 0.0)
    # Entity 2's only label is 30 hours from its prediction: beyond the 24 hours allowed, so no label.
    assert np.isnan(label[(2, 0.2)])


def test_labels_not_yet_known_are_left_out_and_key_types_are_reconciled():
    preds = predictions(["1", "2"], [T0, T0], [0.9, 0.1])
    table = labels([1, 2], [T0, T0], [1, 0], known_after=timedelta(days=30))
    assert join(preds, table, known_by=T0 + timedelta(days=29))["label"].isna().all()
    assert join(preds, table, known_by=T0 + timedelta(days=30))["label"].tolist() == [1.0, 0.0]


def test_a_table_without_the_spec_columns_names_them():
    with pytest.raises(ValueError, match="lacks column\\(s\\) churned"):
        join(predictions([1], [T0], [0.5]), labels([1], [T0], [1]).drop(columns="churned"), known_by=T0)


def test_a_window_is_judged_only_with_enough_labels_and_degrades_past_the_allowed_drop():
    rng = np.random.default_rng(0)
    n = 400
    outcome = rng.random(n) < 0.3
    good = np.where(outcome, rng.normal(0.7, 0.15, n), rng.normal(0.3, 0.15, n)).clip(0, 1)  # ROC AUC ~0.97
    poor = np.where(outcome, rng.normal(0.52, 0.2, n), rng.normal(0.48, 0.2, n)).clip(0, 1)  # ROC AUC ~0.55
    second, third = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    joined = pd.concat(
        [
            pd.DataFrame({"window_start": pd.Timestamp(T0), "score": good, "label": outcome.astype(float)}),
            pd.DataFrame({"window_start": pd.Timestamp(second), "score": poor, "label": outcome.astype(float)}),
            # A third window whose predictions have mostly no label yet: reported, not judged.
            pd.DataFrame(
                {"window_start": pd.Timestamp(third), "score": poor, "label": np.r_[outcome[:50], [np.nan] * 350]}
            ),
        ]
    )
    report = assess_quality(
        joined, model_tag="churn:v1", baseline_roc_auc=0.9, threshold=0.5, spec=QualitySpec(), known_by=T0
    )
    assert [(w.predictions, w.labelled, w.judged, w.degraded) for w in report.windows] == [
        (400, 400, True, False),
        (400, 400, True, True),
        (400, 50, False, False),
    ]
    assert report.windows[0].metrics.roc_auc > 0.9 > report.windows[1].metrics.roc_auc + 0.05
    assert report.degraded and report.title == "quality dropped"
    assert [w.window_start for w in report.degraded_windows] == [second]
    table = report.markdown()
    assert "| degraded |" in table and "| too few labels |" in table and "0.900" in table


def test_no_labels_yet_is_not_a_verdict():
    joined = pd.DataFrame({"window_start": [pd.Timestamp(T0)] * 3, "score": [0.1, 0.5, 0.9], "label": [np.nan] * 3})
    report = assess_quality(
        joined, model_tag="churn:v1", baseline_roc_auc=0.8, threshold=0.5, spec=QualitySpec(), known_by=T0
    )
    assert report.windows[0].metrics is None and not report.degraded
    assert report.title == "not enough labels yet"


def test_a_compound_key_takes_the_label_of_the_same_pair_only():
    preds = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2"],
            "item_id": [1, 2, 1],
            "scored_at": pd.to_datetime([T0] * 3, utc=True).astype("datetime64[us, UTC]"),
            "score": [0.9, 0.4, 0.2],
            "window_start": pd.Timestamp(T0),
        }
    )
    observed = pd.to_datetime([T0, T0], utc=True)
    table = pd.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "item_id": [2, 1],
            "event_timestamp": observed,
            "churned": [1, 0],
            "label_timestamp": observed,
        }
    )
    joined = join_labels(
        preds, table, spec=LABELS, entity_keys=["user_id", "item_id"], known_by=T0, within=timedelta(hours=1)
    )
    label = {(user, item): value for user, item, value in joined[["user_id", "item_id", "label"]].values}
    assert np.isnan(label[("u1", 1)]) and (label[("u1", 2)], label[("u2", 1)]) == (1.0, 0.0)


def test_a_window_whose_profiles_and_prediction_log_count_different_rows_is_reported(tmp_path):
    clock = lambda: T0.timestamp() + 5  # noqa: E731
    traffic = TrafficProfiler(tmp_path / "profiles", "churn:v1", "host-1", clock=clock)
    log = PredictionLog(tmp_path / "log", "churn:v1", "host-1", clock=clock)
    traffic.record({"tenure_days": [1, 2, 3]}, [0.1, 0.2, 0.3])
    log.record({"customer_id": [1, 2, 3]}, [0.1, 0.2, 0.3])
    traffic.record({"tenure_days": [4]}, [0.4])  # a /predict_features row: profiled, no entity to log
    traffic.close()
    log.close()

    profiled = window_profiled_rows(window_folder(tmp_path / "profiles", "churn:v1", T0))
    logged = window_logged_rows(tmp_path / "log", "churn:v1", T0)
    assert (profiled, logged) == (4, 3)
    assert "4 rows" in rows_disagreement(profiled, logged) and "log 3" in rows_disagreement(profiled, logged)
    assert rows_disagreement(3, 3) is None
    assert rows_disagreement(7_723, None) is None, "predictions not logged: nothing to hold the profiles against"
    assert "7,723 rows and the prediction log 0" in rows_disagreement(7_723, 0)

    joined = pd.DataFrame({"window_start": [pd.Timestamp(T0)] * 3, "score": [0.1, 0.2, 0.3], "label": [np.nan] * 3})
    report = assess_quality(
        joined, model_tag="churn:v1", baseline_roc_auc=0.8, threshold=0.5, spec=QualitySpec(), known_by=T0
    )
    assert report.windows[0].rows_disagreement is None, "profiled rows not counted: no claim"
    report.windows[0].profiled_rows = profiled
    assert report.windows[0].rows_disagreement == rows_disagreement(4, 3)
    assert f"- Window 2026-11-01 10:00:00: {rows_disagreement(4, 3)}" in report.markdown()


def test_a_drop_the_scores_did_not_foresee_is_concept_drift_and_one_they_foresaw_is_not():
    """Two windows of 2,000 rows from a calibrated model: in one the outcomes stopped following the scores (concept
    drift: the scores look as good as ever), in the other the scores themselves became uninformative (the estimate
    sees it)."""
    rng = np.random.default_rng(3)
    sharp = rng.beta(0.5, 3.0, 2000)  # confident scores: a high estimated ROC AUC
    flat = rng.uniform(0.18, 0.22, 2000)  # scores that barely rank: a low estimated ROC AUC
    concept = predictions(range(2000), [T0] * 2000, sharp, window_start=T0)
    foreseen = predictions(range(2000, 4000), [T0] * 2000, flat, window_start=T0 + timedelta(hours=1))
    outcomes = np.r_[rng.random(2000) < 0.2, rng.random(2000) < flat]  # neither window's labels follow `sharp`
    table = labels(range(4000), [T0] * 4000, outcomes.astype(int))
    joined = join(pd.concat([concept, foreseen], ignore_index=True), table, known_by=T0 + timedelta(days=31))
    none = Calibration(method="none", errors={"none": 0.3}, rows=1000, folds=5)
    report = assess_quality(
        joined,
        model_tag="churn:a",
        baseline_roc_auc=0.8,
        threshold=0.3,
        spec=QualitySpec(),
        known_by=T0,
        calibration=none,
    )
    drifted, expected = report.windows
    assert drifted.degraded and expected.degraded
    assert drifted.concept_drift and drifted.estimate.roc_auc_interval[1] >= 0.75
    assert not expected.concept_drift and expected.estimate.roc_auc_interval[1] < 0.75
    assert drifted.estimate_gap < -0.2
    assert report.title == "quality dropped: probable concept drift"
    assert "probable concept drift" in report.markdown()
