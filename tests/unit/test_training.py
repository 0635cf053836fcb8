import numpy as np
import pandas as pd
import pytest

from cicloml.errors import DataError
from cicloml.models.preprocessing import FeatureSchema
from cicloml.spec import SearchSpec, SklearnModelSpec
from cicloml.training import fit_model, recency_weights, score, select_training_window, split_by_time


def frame_over(days: int, rows_per_day: int = 10) -> pd.DataFrame:
    times = pd.date_range("2026-01-01", periods=days, freq="D", tz="UTC").repeat(rows_per_day)
    return pd.DataFrame({"event_timestamp": times, "x": range(len(times))})


def test_the_newest_rows_are_the_test_window_and_no_timestamp_straddles_splits():
    split = split_by_time(frame_over(20), "event_timestamp", validation_fraction=0.15, test_fraction=0.2)
    train, validation, test = (set(part["event_timestamp"]) for part in (split.train, split.validation, split.test))
    assert max(train) < min(validation) and max(validation) < min(test)
    assert (len(split.train), len(split.validation), len(split.test)) == (130, 30, 40)


def test_too_few_distinct_times_to_split_is_a_clear_error():
    with pytest.raises(DataError, match="the train split is empty: 2 distinct event_timestamp values"):
        split_by_time(frame_over(2, 50), "event_timestamp", validation_fraction=0.15, test_fraction=0.2)


def test_validation_takes_its_share_beyond_a_test_moment_that_holds_more_than_the_test_share():
    # Three days of labels, one timestamp each: the newest day (a third of the rows) is the test split, and the
    # validation split still gets a day rather than nothing.
    split = split_by_time(frame_over(3, 50), "event_timestamp", validation_fraction=0.15, test_fraction=0.15)
    assert (len(split.train), len(split.validation), len(split.test)) == (50, 50, 50)


def test_the_training_window_keeps_the_rows_within_n_days_of_the_newest_boundary_included():
    newest = pd.Timestamp("2026-03-31 12:00", tz="UTC")
    ages = pd.to_timedelta(["3 days", "0 days", "5 days", "5 days 1 second", "30 days", "4 days 23 hours"])
    frame = pd.DataFrame({"event_timestamp": newest - ages, "x": range(len(ages))})
    window = select_training_window(frame, "event_timestamp", 5)
    assert window["x"].tolist() == [0, 1, 2, 5]  # in the frame's order; exactly 5 days old is in, 1 s more is out
    assert select_training_window(frame, "event_timestamp", 30)["x"].tolist() == list(range(len(ages)))


def test_the_training_window_follows_the_newest_row_not_the_clock_and_none_keeps_all_rows():
    frame = frame_over(20)  # 2026-01-01 .. 2026-01-20, 10 rows a day
    window = select_training_window(frame, "event_timestamp", 7)
    assert window["event_timestamp"].min() == pd.Timestamp("2026-01-13", tz="UTC") and len(window) == 80
    assert select_training_window(frame, "event_timestamp", None) is frame


def test_recency_weights_halve_per_half_life_back_from_the_newest_row_and_have_mean_one():
    newest = pd.Timestamp("2026-03-31", tz="UTC")
    ages_days = np.array([2.0, 0.0, 6.0, 3.0, 1.5])  # the rows need not be in time order
    times = pd.Series(newest - pd.to_timedelta(ages_days, unit="D"), name="event_timestamp")
    weights = recency_weights(times, half_life_days=3.0)
    np.testing.assert_allclose(weights / weights[1], 0.5 ** (ages_days / 3.0), rtol=1e-12)
    np.testing.assert_allclose(weights[[1, 3, 2]] / weights[1], [1.0, 0.5, 0.25], rtol=1e-12)
    assert weights.mean() == pytest.approx(1.0, rel=1e-12)
    assert recency_weights(times, None) is None


SCHEMA = FeatureSchema(entity_keys=("customer_id",), numeric=("signal", "noise"), categorical=("plan",))
# Each estimator small, with a search over two candidates of one parameter.
ESTIMATORS = {
    "hist_gradient_boosting": ({"max_iter": 30}, {"learning_rate": [0.05, 0.2]}),
    "gradient_boosting": ({"n_estimators": 30}, {"max_depth": [2, 3]}),
    "random_forest": ({"n_estimators": 30}, {"max_depth": [3, 6]}),
    "logistic_regression": ({}, {"C": [0.1, 1.0]}),
}
# Rows on the positive side of the rule, where the contradicting rows lie.
PROBE = pd.DataFrame({"signal": np.linspace(0.4, 0.9, 6), "noise": 0.0, "plan": "a"})


def contradicted_frame(n_rule: int = 300, n_contradicting: int = 100, seed: int = 0) -> pd.DataFrame:
    """Rows labelled by the rule `signal > 0`, shuffled with rows (`contradicts`) that have `signal` in 0.3..1 and
    label 0: unweighted, a model sees about even odds there."""
    rng = np.random.default_rng(seed)
    n = n_rule + n_contradicting
    signal = np.concatenate([rng.uniform(-1, 1, n_rule), rng.uniform(0.3, 1, n_contradicting)])
    frame = pd.DataFrame(
        {
            "signal": signal,
            "noise": rng.normal(size=n),
            "plan": rng.choice(["a", "b"], n),
            "churned": np.where(np.arange(n) < n_rule, signal > 0, False).astype(int),
            "contradicts": np.arange(n) >= n_rule,
        }
    )
    return frame.iloc[rng.permutation(n)].reset_index(drop=True)


def sklearn_spec(estimator: str, search: bool) -> SklearnModelSpec:
    params, candidates = ESTIMATORS[estimator]
    return SklearnModelSpec(
        estimator=estimator,
        params=params,
        search=SearchSpec(n_iter=2, splits=2, params=candidates) if search else None,
    )


@pytest.mark.parametrize("search", [False, True], ids=["fit", "search"])
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_weights_near_zero_on_contradicting_rows_move_the_model_to_the_other_rows(estimator, search):
    frame, spec = contradicted_frame(), sklearn_spec(estimator, search)
    weights = np.where(frame["contradicts"], 1e-9, 1.0)
    unweighted = score(fit_model(frame, "churned", SCHEMA, spec, seed=0), PROBE, SCHEMA)
    weighted = score(fit_model(frame, "churned", SCHEMA, spec, seed=0, sample_weight=weights), PROBE, SCHEMA)
    assert (weighted > unweighted).all()
    assert weighted.mean() > 0.9 and weighted.mean() > unweighted.mean() + 0.2


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_equal_weights_give_exactly_the_unweighted_model(estimator):
    # A random forest given weights, even equal ones, would draw other bootstrap samples.
    frame, spec = contradicted_frame(), sklearn_spec(estimator, search=False)
    expected = score(fit_model(frame, "churned", SCHEMA, spec, seed=0), PROBE, SCHEMA)
    for weight in (1.0, 2.5):
        model = fit_model(frame, "churned", SCHEMA, spec, seed=0, sample_weight=np.full(len(frame), weight))
        np.testing.assert_array_equal(score(model, PROBE, SCHEMA), expected)


def test_weights_are_scaled_to_mean_one_so_only_their_ratios_matter():
    # With L2 regularization, a gradient-boosted leaf's value depends on the weights' scale, not only their ratios.
    frame, spec = contradicted_frame(), SklearnModelSpec(params={"max_iter": 30, "l2_regularization": 1.0})
    weights = np.where(frame["contradicts"], 0.2, 1.0)
    expected = score(fit_model(frame, "churned", SCHEMA, spec, seed=0, sample_weight=weights), PROBE, SCHEMA)
    scaled = fit_model(frame, "churned", SCHEMA, spec, seed=0, sample_weight=weights * 4)
    np.testing.assert_allclose(score(scaled, PROBE, SCHEMA), expected, rtol=1e-9)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (np.ones(399), r"shape \(399,\); pass one weight per training row \(400,\)"),
        (np.r_[np.ones(399), -1.0], "1 negative weight"),
        (np.r_[np.nan, np.ones(399)], "1 NaN or infinite weight"),
        (np.zeros(400), "zero for all 400 rows"),
    ],
    ids=["length", "negative", "nan", "all-zero"],
)
def test_an_unusable_weight_vector_is_a_clear_data_error(weights, message):
    with pytest.raises(DataError, match=message):
        fit_model(contradicted_frame(), "churned", SCHEMA, sklearn_spec("logistic_regression", False), 0, weights)
