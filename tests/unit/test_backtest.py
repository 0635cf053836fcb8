"""The backtest engine: a short seeded world replayed under each retraining policy, in process."""

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cicloml.backtest import (
    SCHEMA,
    BacktestResult,
    BacktestWorld,
    Policy,
    PolicyResult,
    run_backtest,
    simulate_world,
)
from cicloml.spec import ProjectSpec, load_spec

ROOT = Path(__file__).resolve().parents[2]
SHORT = BacktestWorld(weeks=4, customers=400, timeline=[(7, 14, "price_rise"), (14, None, "competitor_offer")])
"""Labels arrive 30 days late, so none of this world's traffic labels mature inside it: only the oracle learns from
them."""
ASKS_ON_ANY_DRIFT = Policy(name="cicloml_any_drift", on_drift="any_drift", on_quality=True)
"""The spec's evidence rules, with every drifted day asking: requests that find no new labels must wait."""


@pytest.fixture(scope="module")
def spec() -> ProjectSpec:
    return load_spec(ROOT / "cicloml.yaml")


@pytest.fixture(scope="module")
def result(spec: ProjectSpec) -> BacktestResult:
    return run_backtest(
        spec, SHORT, policies=["never", "weekly", "every_drift", "cicloml", "oracle", ASKS_ON_ANY_DRIFT]
    )


def days_where(policy: PolicyResult, flag: str) -> list[int]:
    return [row.day for row in policy.days if getattr(row, flag)]


def test_the_timeline_changes_the_world_once_and_breaks_the_feed_for_its_days():
    world = BacktestWorld()
    assert world.scenarios_on(27) == ("none", False)
    assert (world.scenarios_on(28), world.traffic_scenario(28)) == (("price_rise", False), "price_rise")
    assert world.traffic_scenario(29) == "none"  # prices rose once; asking again would raise them again
    assert world.scenarios_on(78) == ("competitor_offer", True)
    assert world.traffic_scenario(78) == "competitor_offer"  # the broken feed lies over the competitor's offer
    assert world.scenarios_on(200) == ("competitor_offer", False)


def test_served_features_are_the_point_in_time_join_and_a_broken_feed_recovers():
    simulated = simulate_world(
        BacktestWorld(weeks=1, customers=150, timeline=[(2, 3, "price_rise"), (3, 5, "broken_payment_feed")])
    )
    for day in simulated.days:
        at = day.window_start + pd.Timedelta(hours=12)
        joined = simulated.frame[simulated.frame["event_timestamp"] == at].sort_values("customer_id")
        pd.testing.assert_frame_equal(
            joined[SCHEMA.features].reset_index(drop=True), day.features[SCHEMA.features].reset_index(drop=True)
        )
    nulls = [day.features["payment_failures_90d"].isna().mean() for day in simulated.days]
    assert nulls == [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    charges = [day.features["monthly_charges"].mean() for day in simulated.days]
    assert charges[2] > 1.3 * charges[1] and abs(charges[6] / charges[2] - 1) < 0.02  # raised once, and it stays


@pytest.mark.slow
def test_the_same_seed_gives_the_same_result(spec: ProjectSpec):
    world = BacktestWorld(weeks=2, customers=300, timeline=[(7, None, "price_rise")])
    first = run_backtest(spec, world, policies=["every_drift", "oracle"])
    assert sum(policy.summary.training_runs for policy in first.policies) > 2  # models trained after day 0
    assert run_backtest(spec, world, policies=["every_drift", "oracle"]).model_dump_json() == first.model_dump_json()


@pytest.mark.slow
def test_never_trains_exactly_once(result: BacktestResult):
    never = result.policy("never")
    assert never.summary.training_runs == 1
    assert days_where(never, "trained") == [0]
    assert {row.model_id for row in never.days} == {result.initial_model}


@pytest.mark.slow
def test_weekly_runs_once_a_week_and_fits_only_new_labels(result: BacktestResult):
    weekly, oracle = result.policy("weekly"), result.policy("oracle")
    assert [row.day for row in weekly.days if "schedule" in row.requests] == [7, 14, 21]
    # No traffic label matures within four weeks: each weekly run finds the champion's own data and fits nothing.
    assert days_where(weekly, "skipped") == [7, 14, 21]
    assert (weekly.summary.training_runs, weekly.summary.skipped_runs) == (1, 3)
    # Labels without delay: a new model every week.
    assert days_where(oracle, "trained") == [0, 7, 14, 21]
    assert len({model.data_fingerprint for model in oracle.models}) == 4


@pytest.mark.slow
def test_every_drift_trains_on_each_drifted_day(result: BacktestResult):
    every_drift = result.policy("every_drift")
    drifted = [row.day for row in every_drift.days if row.drift and row.check == "drift"]
    assert drifted, "the price rise should drift"
    assert days_where(every_drift, "trained") == [0, *drifted]
    # What cicloml did before: a retraining fits the champion's data again, and the tie promotes it.
    assert every_drift.summary.promotions_same_data == len(drifted)


@pytest.mark.slow
def test_alerts_follow_the_incident_rules(result: BacktestResult, spec: ProjectSpec):
    # The prices rise once and stay up: the model that never retrains drifts every day after, yet alerts once.
    never = result.policy("never")
    assert never.summary.drifted_days > 5 and never.summary.alerts == 1
    assert days_where(never, "alert") == [next(row.day for row in never.days if row.drift)]
    for policy in result.policies:
        rows, open_since = policy.days, None
        for row in rows:
            if row.alert:  # opens only on a drifted day, and only when none is open
                assert row.drift and open_since is None, (policy.policy.name, row.day)
                open_since = row.day
            if row.alert_cleared:  # clears after clear_after days in a row without drift
                quiet = rows[row.day - spec.alerts.clear_after + 1 : row.day + 1]
                assert open_since is not None and not any(day.drift for day in quiet), (policy.policy.name, row.day)
                open_since = None
        assert policy.summary.alerts <= policy.summary.drifted_days


@pytest.mark.slow
def test_cicloml_never_promotes_a_model_trained_on_the_champions_data(result: BacktestResult):
    for name in ("cicloml", ASKS_ON_ANY_DRIFT.name):
        policy = result.policy(name)
        assert policy.summary.promotions_same_data == 0
        assert not any(model.promoted_same_data for model in policy.models)
    # Asked on every drifted day, the requests find no new labels and wait instead of refitting the same data.
    asking = result.policy(ASKS_ON_ANY_DRIFT.name)
    asked = [row.day for row in asking.days if "drift" in row.requests]
    assert asked and days_where(asking, "skipped") == asked
    assert days_where(asking, "trained") == [0]
    assert asking.days[-1].pending == len(asked)


@pytest.mark.slow
def test_cicloml_does_not_retrain_on_price_rise_days_while_the_estimate_holds(result: BacktestResult):
    cicloml, every_drift = result.policy("cicloml"), result.policy("every_drift")
    models = {model.id: model for model in cicloml.models}
    bar = {model_id: model.test_roc_auc - result.settings["quality"]["max_drop"] for model_id, model in models.items()}
    holding = [
        row
        for row in cicloml.days
        if row.scenario == "price_rise"
        and row.drift
        and row.check == "drift"
        and row.estimated_interval is not None
        and row.estimated_interval[1] >= bar[row.model_id]
    ]
    assert holding, "the price rise should drift while the estimate holds"
    for row in holding:
        assert "drift" not in row.requests and not row.trained, row
        assert any(note.startswith("drift") and "holds" in note for note in row.notes), row.notes
    assert set(days_where(every_drift, "trained")) & {row.day for row in holding}  # the old rule retrained on them


@pytest.mark.slow
def test_every_day_records_what_was_served_estimated_and_realized(result: BacktestResult):
    for policy in result.policies:
        assert [row.day for row in policy.days] == list(range(SHORT.days))
        assert all(row.realized_roc_auc is not None and row.estimated_roc_auc is not None for row in policy.days)
        realized = [row.realized_roc_auc for row in policy.days]
        assert policy.summary.mean_roc_auc == pytest.approx(np.mean(realized))
        assert policy.summary.days_below_tolerance == sum(value < result.tolerance for value in realized)
        assert policy.summary.alerts == sum(row.alert for row in policy.days)


@pytest.mark.slow
def test_cicloml_learns_a_changed_world_from_the_labels_since_its_onset(spec: ProjectSpec):
    # Who churns changes on day 7; its labels mature from day 37. The quality check finds the run of degraded days
    # and its onset; the request waits until the labels since the onset can be split, trains on those alone, and
    # follows up once they have grown retraining.follow_up_growth times.
    world = BacktestWorld(weeks=8, customers=1000, timeline=[(7, None, "competitor_offer")])
    cicloml = run_backtest(spec, world, policies=["cicloml"]).policy("cicloml")
    assert all(row.day >= 37 for row in cicloml.days if row.requests)  # nothing to act on before the labels
    waited = [row for row in cicloml.days if row.skipped]
    assert waited and all(
        "since the onset" in row.notes[-1] and "do not suffice yet" in row.notes[-1] for row in waited
    )
    first, follow_up = [row for row in cicloml.days if row.trained and row.day > 0]
    assert "quality" in first.requests and first.promoted
    onset = world.start + timedelta(days=7)
    assert first.notes[-1].endswith(f"rows since the onset {onset:%Y-%m-%d}: promoted"), first.notes
    assert follow_up.requests == ["follow_up"] and follow_up.day > first.day
    first_rows, follow_up_rows = (sum(model.rows.values()) for model in cicloml.models[1:])
    assert follow_up_rows >= spec.retraining.follow_up_growth * first_rows
