import json
import tracemalloc

import numpy as np
import pytest
from sklearn import metrics as sk
from sklearn.linear_model import LogisticRegression

from cicloml import estimation
from cicloml.errors import DataError
from cicloml.estimation import (
    Calibration,
    PerformanceEstimate,
    anchor_calibration,
    average_precision,
    estimate_performance,
    fit_calibration,
    roc_auc,
)

IDENTITY = Calibration(method="none", errors={}, rows=0, folds=0)
"""Scores taken as calibrated, with no calibration error to carry: labels drawn from the scores themselves."""


def calibrated_sample(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True probabilities of label 1 (a rare-ish positive class) and labels drawn from them."""
    rng = np.random.default_rng(seed)
    probabilities = rng.beta(1.0, 4.0, rows)
    return probabilities, (rng.random(rows) < probabilities).astype(int)


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(sk.log_loss(labels, np.clip(probabilities, 1e-6, 1 - 1e-6)))


# --- calibration -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("distort", [lambda p: p**3, lambda p: np.sqrt(p)], ids=["overconfident", "underconfident"])
def test_calibration_corrects_miscalibrated_scores(distort):
    probabilities, labels = calibrated_sample(4_000, seed=1)
    scores = distort(probabilities)
    calibration = fit_calibration(scores, labels)
    assert calibration.method in ("isotonic", "sigmoid")
    assert calibration.errors[calibration.method] < calibration.errors["none"]
    # The map recovers the true probabilities far better than the raw scores do, on fresh rows of the same world.
    fresh, fresh_labels = calibrated_sample(4_000, seed=2)
    recovered = calibration.apply(distort(fresh))
    assert np.abs(recovered - fresh).mean() < 0.25 * np.abs(distort(fresh) - fresh).mean()
    assert log_loss(recovered, fresh_labels) < log_loss(distort(fresh), fresh_labels)


def test_anchoring_cancels_an_error_the_map_makes_everywhere():
    """Scores taken as calibrated though overconfident (p³, uncorrected): the raw estimate misses every window of
    the same world by the same amount; anchored on a labelled test sample, it lands on the realized ROC AUC."""
    probabilities, labels = calibrated_sample(20_000, seed=3)
    anchored = anchor_calibration(IDENTITY, probabilities**3, labels)
    estimated_on_test = estimate_performance(probabilities**3, IDENTITY, threshold=0.5).roc_auc
    assert anchored.roc_auc_offset == pytest.approx(estimated_on_test - sk.roc_auc_score(labels, probabilities**3))
    assert anchored.method == IDENTITY.method and IDENTITY.roc_auc_offset == 0.0
    assert 0 < anchored.roc_auc_offset_se < 0.01  # the test sample's own sampling error, carried into intervals
    raw_errors, anchored_errors = [], []
    for seed in range(4, 10):
        window, window_labels = calibrated_sample(5_000, seed=seed)
        realized = sk.roc_auc_score(window_labels, window**3)
        raw_errors.append(estimate_performance(window**3, IDENTITY, threshold=0.5).roc_auc - realized)
        estimate = estimate_performance(window**3, anchored, threshold=0.5)
        anchored_errors.append(estimate.roc_auc - realized)
        low, high = estimate.roc_auc_interval
        assert low <= estimate.roc_auc <= high  # the interval moves with the estimate
    assert abs(np.mean(raw_errors)) > 0.03  # the miscalibration is visible unanchored
    assert abs(np.mean(anchored_errors)) < 0.01
    assert np.mean(np.abs(anchored_errors)) < 0.5 * np.mean(np.abs(raw_errors))


def test_anchoring_needs_both_classes():
    scores = np.linspace(0.1, 0.9, 50)
    assert anchor_calibration(IDENTITY, scores, np.zeros(50)) is IDENTITY


@pytest.mark.parametrize("seed", range(6))
def test_calibrated_scores_are_left_alone(seed):
    probabilities, labels = calibrated_sample([1_000, 3_000, 8_000][seed % 3], seed=seed)
    calibration = fit_calibration(probabilities, labels, seed=seed)
    assert calibration.method == "none"
    assert set(calibration.errors) == {"none", "isotonic", "sigmoid"}
    assert calibration.folds == 5 and calibration.rows == len(labels)
    np.testing.assert_array_equal(calibration.apply(probabilities), probabilities)


def step_world(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose meaning jumps at 0.5: no sigmoid of the score's logit fits it, a step function does."""
    rng = np.random.default_rng(seed)
    scores = rng.random(rows)
    labels = (rng.random(rows) < np.where(scores < 0.5, 0.05, 0.6)).astype(int)
    return scores, labels


def test_isotonic_wins_where_no_sigmoid_fits():
    scores, labels = step_world(5_000, seed=3)
    calibration = fit_calibration(scores, labels)
    assert calibration.method == "isotonic"
    assert calibration.errors["isotonic"] < min(calibration.errors["sigmoid"], calibration.errors["none"])
    assert calibration.apply(np.array([0.2, 0.8])) == pytest.approx([0.05, 0.6], abs=0.05)


def three_calibrations() -> list[Calibration]:
    probabilities, labels = calibrated_sample(3_000, seed=4)
    fitted = [
        fit_calibration(probabilities, labels),
        fit_calibration(probabilities**3, labels),
        fit_calibration(*step_world(3_000, seed=5)),
    ]
    assert [calibration.method for calibration in fitted] == ["none", "sigmoid", "isotonic"]
    return fitted


def test_calibration_round_trips_through_json():
    grid = np.linspace(0, 1, 101)
    for calibration in three_calibrations():
        stored = json.loads(json.dumps(calibration.model_dump(mode="json")))
        restored = Calibration.model_validate(stored)
        assert restored == calibration
        np.testing.assert_array_equal(restored.apply(grid), calibration.apply(grid))
        assert calibration.covariance is not None  # fitted maps carry their uncertainty into the lineage


def test_apply_is_monotone_and_within_zero_and_one():
    grid = np.r_[0.0, np.geomspace(1e-9, 1e-2, 20), np.linspace(0.01, 0.99, 200), 1 - np.geomspace(1e-2, 1e-9, 20), 1.0]
    for calibration in three_calibrations():
        calibrated = calibration.apply(grid)
        assert np.all(np.isfinite(calibrated))
        assert np.all((calibrated >= 0) & (calibrated <= 1))
        assert np.all(np.diff(calibrated) >= 0), calibration.method


def test_calibration_rejects_an_incomplete_or_decreasing_map():
    with pytest.raises(ValueError, match="isotonic"):
        Calibration(method="isotonic", errors={}, rows=10, folds=5)
    with pytest.raises(ValueError, match="non-decreasing"):
        Calibration(method="isotonic", errors={}, rows=10, folds=5, x=(0.1, 0.9), y=(0.8, 0.2))
    with pytest.raises(ValueError, match="slope"):
        Calibration(method="sigmoid", errors={}, rows=10, folds=5, slope=1.0)
    with pytest.raises(ValueError, match="covariance"):
        Calibration(method="none", errors={}, rows=10, folds=5, covariance=(1.0, 5.0, 1.0))


def test_too_few_positives_to_judge_leave_the_scores_alone():
    scores = np.linspace(0.01, 0.5, 200)
    labels = np.zeros(200, dtype=int)
    labels[[150, 190, 199]] = 1
    calibration = fit_calibration(scores, labels)
    assert (calibration.method, calibration.folds, calibration.covariance) == ("none", 0, None)
    assert set(calibration.errors) == {"none"}


def test_fit_calibration_refuses_bad_input():
    with pytest.raises(DataError, match="0 or 1"):
        fit_calibration(np.array([0.1, 0.2]), np.array([0, 2]))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        fit_calibration(np.array([0.1, 1.2]), np.array([0, 1]))


# --- vectorized metrics ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tied", [False, True], ids=["distinct scores", "tied scores"])
def test_vectorized_metrics_match_sklearn(tied):
    rng = np.random.default_rng(6)
    scores = rng.random(3_000)
    if tied:
        scores = np.round(scores, 2)  # ~100 distinct values: long runs of ties
    else:
        assert len(np.unique(scores)) == len(scores)
    labels = (rng.random((8, len(scores))) < 0.1 + 0.5 * scores).astype(int)
    ours_ap, ours_auc = average_precision(scores, labels), roc_auc(scores, labels)
    for draw, row in enumerate(labels):
        assert ours_ap[draw] == pytest.approx(sk.average_precision_score(row, scores), rel=1e-12)
        assert ours_auc[draw] == pytest.approx(sk.roc_auc_score(row, scores), rel=1e-12)


def test_vectorized_metrics_are_undefined_for_one_class():
    scores = np.array([0.1, 0.4, 0.7])
    assert np.isnan(average_precision(scores, np.zeros((1, 3)))).all()
    assert np.isnan(roc_auc(scores, np.ones((1, 3)))).all()


# --- estimation ------------------------------------------------------------------------------------------------


def test_estimate_matches_the_realized_metrics_on_calibrated_data():
    """Labels drawn from the scores: the realized ROC AUC falls in the 90% interval about 90% of the time (not far
    more: an interval that is too wide fails too) and the estimates have no bias (over 1,000 seeds: ROC AUC
    +0.0002 +- 0.0005, coverage 0.89)."""
    covered, errors, pr_errors = [], [], []
    for seed in range(100):
        scores, labels = calibrated_sample(1_000, seed=1_000 + seed)
        estimate = estimate_performance(scores, IDENTITY, threshold=0.4, simulations=300, seed=seed)
        realized = sk.roc_auc_score(labels, scores)
        low, high = estimate.roc_auc_interval
        covered.append(low <= realized <= high)
        errors.append(estimate.roc_auc - realized)
        pr_errors.append(estimate.pr_auc - sk.average_precision_score(labels, scores))
    assert 0.82 <= np.mean(covered) <= 0.97
    # Three standard errors of the mean over 100 seeds (one window's error: ~0.017 for ROC AUC, ~0.034 for AP).
    assert abs(np.mean(errors)) < 0.005
    assert abs(np.mean(pr_errors)) < 0.01
    assert np.std(errors) == pytest.approx(estimate.roc_auc_se, rel=0.25)  # the standard error means what it says


def test_estimate_through_a_fitted_calibration_covers_the_realized_auc():
    covered = []
    for seed in range(20):
        probabilities, labels = calibrated_sample(4_000, seed=200 + seed)
        calibration = fit_calibration(probabilities[:2_000] ** 2, labels[:2_000], seed=seed)
        scores = probabilities[2_000:] ** 2  # an overconfident model, calibrated on its validation rows
        estimate = estimate_performance(scores, calibration, threshold=0.2, simulations=300, seed=seed)
        low, high = estimate.roc_auc_interval
        covered.append(low <= sk.roc_auc_score(labels[2_000:], scores) <= high)
        assert estimate.positive_rate == pytest.approx(labels[2_000:].mean(), abs=0.03)
    assert np.mean(covered) >= 0.8


def shifted_world(rng: np.random.Generator, rows: int, mean: float, concept_drift: bool = False):
    """x ~ N(mean, 1) in two dimensions, y ~ Bernoulli(sigmoid(f(x))): P(y | x) stays put as x moves, unless the
    concept drifts (then x2 counts the other way)."""
    x = rng.normal(mean, 1.0, (rows, 2))
    second = 1.0 if concept_drift else -1.0
    logit = -1.0 + 1.5 * x[:, 0] + second * x[:, 1] + (0 if concept_drift else 0.5) * x[:, 0] * x[:, 1]
    return x, (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)


def with_interaction(x: np.ndarray) -> np.ndarray:
    return np.c_[x, x[:, 0] * x[:, 1]]


def test_estimate_holds_under_covariate_shift_and_misses_concept_drift():
    """A model trained and calibrated on x ~ N(0, 1), scoring a window at x ~ N(1, 1). The model is well specified
    (logistic on x1, x2, x1*x2), so P(y | score) is the same wherever x lies: CBPE's assumption. Over 100 seeds the
    90% interval covered 91% of shifted windows (9 of these 10) and 0% under concept drift. A model miscalibrated
    where the window moves to breaks the assumption: HistGradientBoosting, flat beyond its training data, covered
    70% over 40 seeds (its labels drawn from the true probabilities: 88%)."""
    shift_covered, concept_covered, moved = 0, 0, []
    for seed in range(10):
        rng = np.random.default_rng([8, seed])
        train_x, train_y = shifted_world(rng, 4_000, mean=0.0)
        validation_x, validation_y = shifted_world(rng, 3_000, mean=0.0)
        model = LogisticRegression().fit(with_interaction(train_x), train_y)
        validation_scores = model.predict_proba(with_interaction(validation_x))[:, 1]
        calibration = fit_calibration(validation_scores, validation_y, seed=seed)
        for concept_drift in (False, True):
            window_x, window_y = shifted_world(rng, 2_000, mean=1.0, concept_drift=concept_drift)
            scores = model.predict_proba(with_interaction(window_x))[:, 1]
            estimate = estimate_performance(scores, calibration, threshold=0.5, seed=seed)
            low, high = estimate.roc_auc_interval
            inside = low <= sk.roc_auc_score(window_y, scores) <= high
            if concept_drift:
                concept_covered += inside
            else:
                shift_covered += inside
                moved.append(estimate.roc_auc - sk.roc_auc_score(validation_y, validation_scores))
    assert shift_covered >= 9
    assert np.mean(moved) > 0.015  # the shift raises the AUC and the estimate follows it, not the validation AUC
    assert concept_covered <= 1  # P(y | score) changed: the estimate misses, as it should


def test_estimate_is_deterministic_for_a_seed_and_independent_of_the_block_size(monkeypatch):
    scores, _ = calibrated_sample(2_000, seed=8)
    calibration = IDENTITY.model_copy(update={"covariance": (0.002, 0.0005, 0.004)})
    first = estimate_performance(scores, calibration, threshold=0.3, seed=3)
    assert estimate_performance(scores, calibration, threshold=0.3, seed=3) == first
    assert estimate_performance(scores, calibration, threshold=0.3, seed=4) != first
    monkeypatch.setattr(estimation, "BLOCK_ELEMENTS", 2_000 * 7)  # blocks of 7 draws, the last one short
    assert estimate_performance(scores, calibration, threshold=0.3, seed=3) == first


def test_calibration_uncertainty_widens_the_interval():
    scores, _ = calibrated_sample(5_000, seed=9)
    certain = estimate_performance(scores, IDENTITY, threshold=0.3)
    uncertain = estimate_performance(
        scores, IDENTITY.model_copy(update={"covariance": (0.002, 0.0, 0.003)}), threshold=0.3
    )
    width = {name: e.roc_auc_interval[1] - e.roc_auc_interval[0] for name, e in (("c", certain), ("u", uncertain))}
    assert width["u"] > 1.3 * width["c"]
    assert uncertain.roc_auc == pytest.approx(certain.roc_auc, abs=0.01)


def test_precision_and_recall_at_the_threshold_are_the_expected_ones():
    scores, _ = calibrated_sample(5_000, seed=10)
    estimate = estimate_performance(scores, IDENTITY, threshold=0.35, simulations=1_000)
    predicted = scores >= 0.35
    # E[precision] is the mean probability among predicted rows; recall's is close to expected TP / expected P.
    assert estimate.precision == pytest.approx(scores[predicted].mean(), abs=3 * estimate.precision_se / np.sqrt(1000))
    assert estimate.recall == pytest.approx(scores[predicted].sum() / scores.sum(), abs=0.005)
    assert estimate.positive_rate == pytest.approx(scores.mean())
    assert estimate.precision_interval[0] < estimate.precision < estimate.precision_interval[1]


def test_undefined_metrics_are_none():
    single = estimate_performance(np.array([0.4]), IDENTITY, threshold=0.5)
    assert (single.rows, single.roc_auc, single.roc_auc_interval, single.pr_auc, single.precision) == (
        1,
        None,
        None,
        None,
        None,
    )
    assert single.positive_rate == pytest.approx(0.4)
    assert single.describe() == "estimated ROC AUC undefined (1 rows)"
    nothing_predicted = estimate_performance(np.linspace(0.1, 0.6, 50), IDENTITY, threshold=0.9)
    assert nothing_predicted.precision is None and nothing_predicted.recall is not None
    never_positive = estimate_performance(np.zeros(100), IDENTITY, threshold=0.5)
    assert never_positive.roc_auc is None and never_positive.recall is None and never_positive.positive_rate == 0.0


def test_estimate_refuses_bad_input():
    with pytest.raises(DataError, match="non-empty"):
        estimate_performance(np.array([]), IDENTITY, threshold=0.5)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        estimate_performance(np.array([0.2, np.nan]), IDENTITY, threshold=0.5)
    with pytest.raises(ValueError, match="confidence"):
        estimate_performance(np.array([0.2, 0.3]), IDENTITY, threshold=0.5, confidence=1.0)


def test_describe_gives_the_interval_half_width():
    estimate = PerformanceEstimate(
        rows=1_000,
        simulations=500,
        confidence=0.9,
        roc_auc=0.7912,
        roc_auc_se=0.006,
        roc_auc_interval=(0.781, 0.801),
        pr_auc=None,
        pr_auc_se=None,
        pr_auc_interval=None,
        threshold=0.3,
        precision=None,
        precision_se=None,
        precision_interval=None,
        recall=None,
        recall_se=None,
        recall_interval=None,
        positive_rate=0.1,
    )
    assert estimate.describe(baseline_roc_auc=0.794) == "estimated ROC AUC 0.79 ± 0.01 (training 0.79)"
    assert estimate.describe() == "estimated ROC AUC 0.79 ± 0.01"
    assert PerformanceEstimate.model_validate(json.loads(estimate.model_dump_json())) == estimate


def test_memory_stays_bounded_by_the_block_not_the_window(monkeypatch):
    """Cost without a stopwatch: 20k rows x 500 draws is 10M cells (80 MB as one float array); simulated in blocks
    of 200k cells, the estimate never holds more than a few blocks at once."""
    monkeypatch.setattr(estimation, "BLOCK_ELEMENTS", 200_000)
    scores, _ = calibrated_sample(20_000, seed=11)
    tracemalloc.start()
    try:
        estimate_performance(scores, IDENTITY.model_copy(update={"covariance": (0.001, 0.0, 0.002)}), threshold=0.3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6
