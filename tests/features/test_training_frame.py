"""Offline retrieval: point-in-time correctness of the training frame, through Feast's file offline store."""

from datetime import timedelta

import pandas as pd
import pytest

from cicloml.contract import FeatureContract
from cicloml.errors import ConfigError, DataError
from cicloml.feature_store import fetch_feature_frame, fetch_latest_features, fetch_training_frame, open_store
from cicloml.spec import LabelsSpec
from tests.conftest import ROOT
from tests.features.conftest import END, activity_row, applied_store, profile_row, tables_from

LABELS = LabelsSpec(path="labels.parquet", column="churned", available_time="label_timestamp")
T0 = END - timedelta(days=10)


def label(customer_id: int, at, churned: int = 0, known_after=timedelta(days=30)) -> dict:
    return {"customer_id": customer_id, "event_timestamp": at, "churned": churned, "label_timestamp": at + known_after}


@pytest.fixture
def store(settings):
    tables = tables_from(
        profiles=[
            profile_row(1, T0 - timedelta(days=100), contract="month-to-month"),
            profile_row(1, T0 + timedelta(days=1, hours=18), contract="two-year"),
            profile_row(2, T0 - timedelta(days=100), contract="one-year"),
        ],
        activity=[
            activity_row(1, T0, monthly_charges=50.0),
            activity_row(1, T0 + timedelta(days=2), monthly_charges=80.0),
            activity_row(2, T0, monthly_charges=20.0),
        ],
    )
    return applied_store(settings, tables)


def test_a_label_never_sees_a_feature_value_from_after_its_time(store):
    labels = pd.DataFrame(
        [
            # Between the two snapshots and before the contract change: the newer values would leak.
            label(1, T0 + timedelta(days=1, hours=12)),
            # After both: sees the newer values.
            label(1, T0 + timedelta(days=2, hours=19)),
            # Before customer 2's only snapshot: no activity known yet.
            label(2, T0 - timedelta(hours=1)),
        ]
    )
    frame = fetch_training_frame(store, FeatureContract.resolve(store, "churn_v1"), labels, LABELS)
    rows = frame.set_index(["customer_id", "event_timestamp"])
    early = rows.loc[(1, pd.Timestamp(T0 + timedelta(days=1, hours=12)))]
    late = rows.loc[(1, pd.Timestamp(T0 + timedelta(days=2, hours=19)))]
    assert (early["monthly_charges"], early["contract"]) == (50.0, "month-to-month")
    assert (late["monthly_charges"], late["contract"]) == (80.0, "two-year")
    before = rows.loc[(2, pd.Timestamp(T0 - timedelta(hours=1)))]
    assert pd.isna(before["monthly_charges"]) and before["contract"] == "one-year"


def test_values_older_than_the_view_ttl_are_not_joined(store):
    # customer_activity has a 2-day TTL; the last snapshot is 3 days before this label.
    frame = fetch_training_frame(
        store, FeatureContract.resolve(store, "churn_v1"), pd.DataFrame([label(1, T0 + timedelta(days=5))]), LABELS
    )
    assert pd.isna(frame.loc[0, "monthly_charges"])
    assert frame.loc[0, "contract"] == "two-year"  # the profile view's TTL is ten years


def test_only_labels_known_by_the_cutoff_are_used(store):
    labels = pd.DataFrame(
        [label(1, T0 + timedelta(days=1)), label(2, T0 + timedelta(hours=1), known_after=timedelta(days=40))]
    )
    frame = fetch_training_frame(
        store, FeatureContract.resolve(store, "churn_v1"), labels, LABELS, known_by=T0 + timedelta(days=35)
    )
    assert frame["customer_id"].tolist() == [1]


def test_a_missing_label_column_is_named(store):
    labels = pd.DataFrame([label(1, T0)]).drop(columns="churned")
    with pytest.raises(DataError, match="label data is missing column\\(s\\) churned; it has customer_id"):
        fetch_training_frame(store, FeatureContract.resolve(store, "churn_v1"), labels, LABELS)


def test_an_empty_training_window_is_an_error(store):
    with pytest.raises(DataError, match="no labels in the training window"):
        fetch_training_frame(
            store, FeatureContract.resolve(store, "churn_v1"), pd.DataFrame([label(1, T0)]), LABELS, known_by=T0
        )


def test_an_unknown_feature_service_lists_the_registered_ones(store):
    with pytest.raises(
        ConfigError,
        match="feature service 'churn_v9' is not registered; registered in project 'cicloml_churn': churn_v1",
    ):
        fetch_training_frame(store, FeatureContract.resolve(store, "churn_v9"), pd.DataFrame([label(1, T0)]), LABELS)


def test_a_missing_feast_repo_says_which_setting_names_it(settings, tmp_path):
    with pytest.raises(
        ConfigError, match="Feast repository not found: .*feature_store.yaml does not exist .*features.repo"
    ):
        open_store(tmp_path / "no-repo", settings)


def test_the_repo_config_may_only_use_variables_cicloml_provides(settings, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(
        (ROOT / "features" / "feature_store.yaml").read_text() + "\n# ${CICLO_NOPE}\n"
    )
    with pytest.raises(ConfigError, match=r"unknown variable \$\{CICLO_NOPE\}; cicloml provides CICLO_STATE_DIR"):
        open_store(repo, settings)


def test_other_variables_in_the_repo_config_come_from_the_environment(settings, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    config = (ROOT / "features" / "feature_store.yaml").read_text().replace("cicloml_churn", "${TEAM_PROJECT}")
    (repo / "feature_store.yaml").write_text(config)
    with pytest.raises(ConfigError, match=r"\$\{TEAM_PROJECT\} is not set; set it in the environment"):
        open_store(repo, settings)
    monkeypatch.setenv("TEAM_PROJECT", "team_churn")
    assert open_store(repo, settings).project == "team_churn"


def test_latest_features_as_of_a_moment_equal_the_point_in_time_join(store):
    as_of = T0 + timedelta(days=1, hours=12)
    latest = fetch_latest_features(store, FeatureContract.resolve(store, "churn_v1"), as_of)
    assert latest["customer_id"].tolist() == [1, 2]
    joined = fetch_feature_frame(
        store, FeatureContract.resolve(store, "churn_v1"), latest[["customer_id"]].assign(event_timestamp=as_of)
    )
    columns = [column for column in latest.columns if column != "customer_id"]
    pd.testing.assert_frame_equal(latest[columns], joined[columns], check_dtype=False)
    assert latest["monthly_charges"].tolist() == [50.0, 20.0]


def test_an_entity_with_only_some_views_live_keeps_them_and_gets_nulls_for_the_rest(store):
    # Three days after T0 customer 2's only activity snapshot is past the 2-day TTL; its profile is live.
    latest = fetch_latest_features(store, FeatureContract.resolve(store, "churn_v1"), T0 + timedelta(days=3)).set_index(
        "customer_id"
    )
    assert latest.loc[2, "contract"] == "one-year" and pd.isna(latest.loc[2, "monthly_charges"])
    assert latest.loc[1, "monthly_charges"] == 80.0
