import hashlib
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from cicloml.demo.churn import LABEL_DELAY, SCENARIOS, generate_churn_data, generate_traffic, write_churn_data

END = datetime(2026, 11, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def tables():
    return generate_churn_data(END, customers=600, days=50, seed=3)


def digests(paths):
    return {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in paths.items()}


def test_same_seed_same_bytes_and_another_seed_differs(tmp_path):
    first = digests(write_churn_data(tmp_path / "a", END, customers=100, days=40, seed=1))
    again = digests(write_churn_data(tmp_path / "b", END, customers=100, days=40, seed=1))
    other = digests(write_churn_data(tmp_path / "c", END, customers=100, days=40, seed=2))
    assert first == again
    assert all(first[name] != other[name] for name in first)


def test_activity_is_one_snapshot_per_customer_per_day_up_to_end(tables):
    activity = tables.activity
    assert len(activity) == 600 * 50
    assert not activity.duplicated(["customer_id", "event_timestamp"]).any()
    assert activity["event_timestamp"].max() < pd.Timestamp(END)
    assert activity["event_timestamp"].max() >= pd.Timestamp(END) - timedelta(days=1)
    # Real feeds have gaps.
    assert 0.01 < activity["days_since_last_login"].isna().mean() < 0.1
    assert 0.005 < activity["monthly_charges"].isna().mean() < 0.05


def test_labels_arrive_thirty_days_after_the_observation(tables):
    labels = tables.labels
    assert (labels["label_timestamp"] - labels["event_timestamp"] == LABEL_DELAY).all()
    assert labels["label_timestamp"].max() <= pd.Timestamp(END)
    assert set(labels["churned"].unique()) == {0, 1}


def test_churn_depends_on_the_features(tables):
    contracts = tables.customers.drop_duplicates("customer_id", keep="first").set_index("customer_id")["contract"]
    labels = tables.labels.assign(contract=tables.labels["customer_id"].map(contracts))
    rate = labels.groupby("contract")["churned"].mean()
    assert rate["month-to-month"] > 2 * rate["two-year"]
    assert 0.05 < labels["churned"].mean() < 0.35


def test_contract_changes_are_later_profile_rows(tables):
    customers = tables.customers
    changed = customers[customers.duplicated("customer_id", keep=False)]
    assert 0 < changed["customer_id"].nunique() < 0.2 * 600
    first, later = changed.groupby("customer_id").nth(0), changed.groupby("customer_id").nth(1)
    assert (later["event_timestamp"].to_numpy() > first["event_timestamp"].to_numpy()).all()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_scenario_drifts_only_what_it_names(tables, scenario):
    at = END + timedelta(hours=2)
    normal = generate_traffic(tables, at, scenario="none", seed=5)
    drifted = generate_traffic(tables, at, scenario=scenario, seed=5)
    assert (drifted.activity["event_timestamp"] == pd.Timestamp(at)).all()
    assert len(drifted.activity) == 600
    charges_ratio = drifted.activity["monthly_charges"].mean() / normal.activity["monthly_charges"].mean()
    assert charges_ratio == pytest.approx(1.35 if scenario == "price_rise" else 1.0, rel=0.01)
    assert drifted.activity["payment_failures_90d"].isna().all() == (scenario == "broken_payment_feed")
    # One label per customer at the snapshot, known 30 days later.
    assert drifted.labels["customer_id"].is_unique and len(drifted.labels) == 600
    assert (drifted.labels["event_timestamp"] == pd.Timestamp(at)).all()
    assert (drifted.labels["label_timestamp"] == pd.Timestamp(at) + LABEL_DELAY).all()
    # The competitor's offer changes who churns: two-year customers, the safest before, leave several times as often.
    contract = tables.customers.drop_duplicates("customer_id", keep="last").set_index("customer_id")["contract"]
    two_year = drifted.labels["customer_id"].map(contract).eq("two-year").to_numpy()
    churn_ratio = drifted.labels["churned"][two_year].mean() / normal.labels["churned"][two_year].mean()
    assert (churn_ratio > 3) == (scenario == "competitor_offer"), churn_ratio
    moved = drifted.customers[drifted.customers["region"] == "central"]
    if scenario == "new_region":
        assert 0.3 < len(moved) / 600 < 0.5
    else:
        assert drifted.customers.empty


def test_unknown_scenario_lists_the_known_ones(tables):
    with pytest.raises(ValueError, match="unknown drift scenario 'meteor'; choose one of none, price_rise"):
        generate_traffic(tables, END, scenario="meteor")  # type: ignore[arg-type]
