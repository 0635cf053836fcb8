"""Online path through the real stores (SQLite, and a real redis-server): materialize, push, read, check."""

from datetime import timedelta

import pandas as pd
import pytest

from cicloml.contract import FeatureContract
from cicloml.demo.churn import generate_churn_data
from cicloml.feature_store import OnlineFeatureReader, apply_repo, materialize, push_features
from tests.features.conftest import END, activity_row, applied_store

CUSTOMERS = 40


@pytest.fixture
def demo(online_settings):
    tables = generate_churn_data(END, customers=CUSTOMERS, days=40, seed=11)
    store = applied_store(online_settings, tables)
    return store, tables


def latest(frame: pd.DataFrame, before) -> pd.DataFrame:
    frame = frame[frame["event_timestamp"] < pd.Timestamp(before)]
    return frame.sort_values("event_timestamp").groupby("customer_id").tail(1).set_index("customer_id")


def online_values(store, ids, now=END):
    return OnlineFeatureReader(store, FeatureContract.resolve(store, "churn_v1")).fetch(ids, now=now)


def test_materialize_then_lookup_returns_each_entitys_latest_values(demo):
    store, tables = demo
    report = materialize(store, END)
    assert {view.view: view.rows for view in report.views} == {
        "customer_profile": CUSTOMERS,
        "customer_activity": CUSTOMERS,
    }

    ids = sorted(tables.activity["customer_id"].unique())
    result = online_values(store, ids)
    got = result.frame().set_index("customer_id")
    expected_activity, expected_profile = latest(tables.activity, END), latest(tables.customers, END)
    pd.testing.assert_series_equal(got["tenure_days"], expected_activity["tenure_days"].loc[ids], check_dtype=False)
    pd.testing.assert_series_equal(
        got["monthly_charges"], expected_activity["monthly_charges"].loc[ids], check_dtype=False
    )
    pd.testing.assert_series_equal(got["contract"], expected_profile["contract"].loc[ids], check_dtype=False)
    # Whatever is not ok is a null in the latest snapshot, named.
    for issue in result.issues:
        assert issue.status == "missing_values"
        assert all(pd.isna(expected_activity.loc[issue.entity, name]) for name in issue.features)


def test_a_second_run_is_a_no_op(demo):
    store, tables = demo
    materialize(store, END)
    ids = sorted(tables.activity["customer_id"].unique())
    before = online_values(store, ids).columns
    again = materialize(store, END)
    assert again.rows == 0
    assert all(view.start == view.end for view in again.views)
    assert online_values(store, ids).columns == before


def test_applying_twice_changes_no_registered_object(demo):
    store, _ = demo
    materialize(store, END)
    before = {view.name: view.last_updated_timestamp for view in store.list_feature_views()}
    assert apply_repo(store).changed == []
    store.refresh_registry()
    assert {view.name: view.last_updated_timestamp for view in store.list_feature_views()} == before


def test_unknown_entities_are_reported_not_returned_as_nulls(demo):
    store, _ = demo
    materialize(store, END)
    result = online_values(store, [1001, 424242, 1002])
    assert result.statuses[1] == "unknown_entity"
    assert [issue.entity for issue in result.issues if issue.status == "unknown_entity"] == [424242]
    assert "no features stored for entity 424242" in result.issues[-1].reason or any(
        issue.reason == "no features stored for entity 424242" for issue in result.issues
    )


def test_an_older_window_never_overwrites_newer_online_values(demo):
    store, tables = demo
    materialize(store, END)
    ids = sorted(tables.activity["customer_id"].unique())
    newest = online_values(store, ids).columns
    old = materialize(store, END - timedelta(days=10), start=END - timedelta(days=20))
    assert old.rows > 0  # the old window really was written through the store
    assert online_values(store, ids).columns == newest


def test_values_older_than_the_view_ttl_are_reported_stale(demo):
    store, _ = demo
    materialize(store, END)
    result = online_values(store, [1001], now=END + timedelta(days=3))
    assert result.statuses == ["stale_values"]
    (issue,) = result.issues
    assert "monthly_charges" in issue.features and "contract" not in issue.features  # activity TTL 2d, profile 10y
    assert "older than their view's TTL" in issue.reason


def test_pushed_rows_go_online_and_older_pushes_are_ignored(demo):
    store, _ = demo
    materialize(store, END)
    fresh = pd.DataFrame(
        [activity_row(1001, END + timedelta(hours=1), monthly_charges=999.0, days_since_last_login=None)]
    )
    fresh["days_since_last_login"] = fresh["days_since_last_login"].astype("Int64")
    assert push_features(store, "customer_activity_push", fresh) == 1
    result = online_values(store, [1001], now=END + timedelta(hours=2))
    assert result.columns["monthly_charges"] == [999.0]
    assert result.statuses == ["missing_values"] and result.issues[0].features == ["days_since_last_login"]

    stale_push = pd.DataFrame([activity_row(1001, END - timedelta(days=5), monthly_charges=1.0)])
    push_features(store, "customer_activity_push", stale_push)
    assert online_values(store, [1001], now=END + timedelta(hours=2)).columns["monthly_charges"] == [999.0]


def feast_reference(store, reader: OnlineFeatureReader, ids, now) -> tuple[dict, list]:
    """Feast's own lookup, with the unknown / stale / missing rules applied to its `to_dict` answer."""
    (join_key,) = reader.join_keys
    response = store.get_online_features(
        features=store.get_feature_service(reader.contract.service), entity_rows=[{join_key: entity} for entity in ids]
    ).to_dict(include_event_timestamps=True)
    ttl_seconds = {
        name: read.ttl.total_seconds() if read.ttl else None for read in reader.contract.views for name in read.features
    }
    checked = []
    for row in range(len(ids)):
        stamps = {name: response[f"{name}__ts"][row] for name in reader.features}
        stale = [
            name
            for name, ttl in ttl_seconds.items()
            if ttl is not None and stamps[name] and now.timestamp() - stamps[name] > ttl
        ]
        missing = [name for name in reader.features if response[name][row] is None]
        if not any(stamps.values()):
            checked.append(("unknown_entity", []))
        elif stale:
            checked.append(("stale_values", stale))
        elif missing:
            checked.append(("missing_values", missing))
        else:
            checked.append(("ok", []))
    return {name: response[name] for name in [*reader.join_keys, *reader.features]}, checked


@pytest.mark.parametrize("later", [timedelta(0), timedelta(days=3)], ids=["fresh", "activity_stale"])
def test_the_reader_answers_what_feasts_own_lookup_answers(demo, later):
    store, tables = demo
    materialize(store, END)
    # Half the entities get only a fresh activity row: known to one view, not to the other.
    fresh = pd.DataFrame(
        [activity_row(9000 + n, END + timedelta(hours=1), days_since_last_login=None) for n in range(3)]
    )
    fresh["days_since_last_login"] = fresh["days_since_last_login"].astype("Int64")
    push_features(store, "customer_activity_push", fresh)
    known = sorted(int(entity) for entity in tables.activity["customer_id"].unique())
    ids = [*known, 9000, 9001, 424242, known[0], 9002, known[3]]  # unknown and repeated ids too
    now = END + timedelta(hours=2) + later

    reader = OnlineFeatureReader(store, FeatureContract.resolve(store, "churn_v1"))
    result = reader.fetch(ids, now=now)
    columns, checked = feast_reference(store, reader, ids, now)

    assert result.columns == columns
    for name, values in columns.items():
        assert [type(value) for value in result.columns[name]] == [type(value) for value in values], name
    assert result.statuses == [status for status, _ in checked]
    expected_issues = [(entity, *check) for entity, check in zip(ids, checked, strict=True) if check[0] != "ok"]
    assert [(issue.entity, issue.status, issue.features) for issue in result.issues] == expected_issues
    # Stale values are reported before missing ones, so with stale activity no entity is "missing_values".
    assert set(result.statuses) == (
        {"stale_values", "unknown_entity"} if later else {"ok", "missing_values", "unknown_entity"}
    )


def test_the_reader_answers_an_empty_request_with_empty_columns(demo):
    store, _ = demo
    materialize(store, END)
    reader = OnlineFeatureReader(store, FeatureContract.resolve(store, "churn_v1"))
    result = reader.fetch([])
    assert result.columns == {name: [] for name in [*reader.join_keys, *reader.features]}
    assert result.statuses == [] and result.ok
