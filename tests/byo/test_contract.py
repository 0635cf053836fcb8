"""A feature service cicloml did not write, through the library: on-demand views computed with Feast's own
transformations (the same values in training frames and online), every Feast type given a role or refused, compound
keys looked up and scored in batch."""

from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from cicloml.contract import FeatureContract, inspect_service
from cicloml.errors import ConfigError, DataError
from cicloml.feature_store import (
    OnlineFeatureReader,
    apply_repo,
    fetch_feature_frame,
    fetch_latest_features,
    fetch_training_frame,
    materialize,
    open_store,
)
from cicloml.models.inputs import encode_columns
from cicloml.models.row_scorer import row_scoring
from cicloml.spec import LabelsSpec, SklearnModelSpec
from cicloml.training import encode_training_frame, fit_model
from tests.byo.conftest import END, EXCLUDED, Project, make_project, project_environment

LABELS = LabelsSpec(path="clicks.parquet", column="clicked", event_time="event_timestamp", available_time="known_at")
AT = END - timedelta(days=1, hours=12, seconds=30)
"""A moment no source row shares: the online store holds what the offline store knew then."""
ON_DEMAND = ["discounted_price", "evening", "affinity"]


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, object]]:
    project = make_project(tmp_path_factory.mktemp("byo"))
    with project_environment(project) as settings:
        store = open_store(project.repo, settings)
        apply_repo(store)
        materialize(store, AT)
        yield project, store


@pytest.fixture(scope="module")
def contract(applied: tuple[Project, object]) -> FeatureContract:
    return FeatureContract.resolve(applied[1], "click_v1", exclude=EXCLUDED)


def pairs_seen_before(project: Project, moment, count: int) -> pd.DataFrame:
    """The newest `count` user x item pairs with activity before `moment`, with request fields."""
    activity = project.world.interactions
    recent = activity[activity["event_timestamp"] < moment].drop_duplicates(["user_id", "item_id"], keep="last")
    rows = recent.tail(count)[["user_id", "item_id"]].reset_index(drop=True)
    return rows.assign(discount=np.resize([0.0, 0.1, 0.3], len(rows)), hour_of_day=np.resize([9, 19, 23], len(rows)))


def test_the_contract_reads_the_inputs_of_on_demand_views_and_gives_every_feature_a_role(contract):
    assert contract.join_keys == ("user_id", "item_id")
    assert list(contract.request_fields) == ["discount", "hour_of_day"]
    reads = {read.view.name: read.features for read in contract.views}
    assert reads["item_stats"] == ("price", "category", "popularity_7d")  # price: a feature, and an on-demand input
    assert reads["user_item_activity"] == ("clicks_30d", "last_rating")
    assert {step.view.name: step.view.mode for step in contract.on_demand} == {
        "price_at_request": "python",
        "affinity": "pandas",
    }
    roles = {feature.name: feature.role for feature in contract.inputs}
    assert roles == {
        "country": "category",
        "is_premium": "flag",
        "user_embedding": "vector",
        "signup_at": "timestamp",
        "price": "number",
        "category": "category",
        "popularity_7d": "number",
        "clicks_30d": "number",
        "last_rating": "number",
        "discounted_price": "number",
        "evening": "number",
        "affinity": "number",
    }


def test_features_no_model_can_read_are_refused_with_their_type_and_the_fix(applied):
    with pytest.raises(ConfigError) as refused:
        FeatureContract.resolve(applied[1], "click_v1")
    message = str(refused.value)
    assert "'preferences' (user_profile) has Feast type Map" in message
    assert "'attributes' (item_stats) has Feast type Json" in message
    assert message.count("add it to features.exclude") == 2
    inspection = inspect_service(applied[1], "click_v1", exclude=["preferences", "attributes", "no_such_feature"])
    assert inspection.problems == [
        "'no_such_feature' is not in feature service 'click_v1' (features.exclude in the project spec); it has: "
        "country, is_premium, user_embedding, preferences, signup_at, price, category, popularity_7d, attributes, "
        "clicks_30d, last_rating, discounted_price, evening, affinity"
    ]


def test_the_training_frame_keeps_every_label_and_computes_on_demand_features_as_feast_does(applied, contract):
    project, store = applied
    labels = project.world.labels
    frame = fetch_training_frame(store, contract, labels, LABELS, known_by=END + timedelta(days=2))
    assert len(frame) == len(labels)
    complete = frame.dropna(subset=["price", "clicks_30d", "last_rating"])
    np.testing.assert_allclose(complete["discounted_price"], complete["price"] * (1 - complete["discount"]))
    np.testing.assert_allclose(complete["affinity"], np.log1p(complete["clicks_30d"]) * complete["last_rating"])
    assert frame.loc[frame["last_rating"].isna(), "affinity"].isna().all()  # a missing input: a missing output
    # Feast's own point-in-time retrieval of the whole service, on the labels whose inputs are all there.
    sample = complete.head(50)
    entity_frame = sample[["user_id", "item_id", "event_timestamp", "discount", "hour_of_day"]]
    references = [f"{step.view.name}:{name}" for step in contract.on_demand for name in step.outputs]
    feast = store.get_historical_features(entity_df=entity_frame, features=references).to_df()
    merged = sample.merge(feast, on=["user_id", "item_id", "event_timestamp"], suffixes=("", "_feast"))
    assert len(merged) == len(sample)
    for name in ON_DEMAND:
        np.testing.assert_allclose(merged[name].astype(float), merged[f"{name}_feast"].astype(float), rtol=1e-12)


def test_on_demand_features_online_equal_the_training_frame_for_the_same_entity_and_time(applied, contract):
    """Training/serving parity: Feast's transformation of the same inputs, offline after the point-in-time join
    and online after the lookup, for the python-mode view (with request fields) and the pandas-mode view."""
    project, store = applied
    requests = pairs_seen_before(project, AT, 30)
    offline = fetch_feature_frame(store, contract, requests.assign(event_timestamp=AT))
    online = OnlineFeatureReader(store, contract).fetch(
        {name: requests[name].tolist() for name in contract.entity_fields}, now=AT
    )
    ok = [row for row, status in enumerate(online.statuses) if status == "ok"]
    assert len(ok) >= 20, online.statuses
    for name in [*ON_DEMAND, "price", "clicks_30d", "last_rating", "country"]:
        served = [online.columns[name][row] for row in ok]
        trained = offline[name].iloc[ok].tolist()
        if isinstance(served[0], str):
            assert served == trained, name
        else:
            np.testing.assert_allclose(np.asarray(served, dtype=float), np.asarray(trained, dtype=float), rtol=1e-12)
    missing = [issue for issue in online.issues if issue.status == "missing_values"]
    assert all(set(issue.features) <= {"clicks_30d", "last_rating"} for issue in missing)


def test_a_model_scores_the_same_rows_alike_from_the_training_frame_and_from_online_features(applied, contract):
    project, store = applied
    frame = fetch_training_frame(store, contract, project.world.labels, LABELS, known_by=END)
    encoded, schema = encode_training_frame(frame, contract.schema(), "event_timestamp")
    assert schema.numeric[:6] == (
        "is_premium",
        "user_embedding_0",
        "user_embedding_1",
        "user_embedding_2",
        "user_embedding_3",
        "signup_at_age_days",
    )
    first = frame.iloc[0]
    assert list(encoded.iloc[0][[f"user_embedding_{i}" for i in range(4)]]) == pytest.approx(first["user_embedding"])
    assert encoded.iloc[0]["is_premium"] == float(first["is_premium"])
    age = (first["event_timestamp"] - first["signup_at"]).total_seconds() / 86_400
    assert encoded.iloc[0]["signup_at_age_days"] == pytest.approx(age)

    model = fit_model(encoded, "clicked", schema, SklearnModelSpec(params={"max_iter": 40}), seed=0)
    requests = pairs_seen_before(project, AT, 30)
    offline = fetch_feature_frame(store, contract, requests.assign(event_timestamp=AT))
    offline_encoded = encode_training_frame(offline.assign(clicked=0), schema, "event_timestamp")[0]
    online = OnlineFeatureReader(store, contract).fetch(
        {name: requests[name].tolist() for name in contract.entity_fields}, now=AT
    )
    ok = [row for row, status in enumerate(online.statuses) if status == "ok"]
    raw = {name: [online.columns[name][row] for row in ok] for name in schema.input_names}
    columns, invalid = encode_columns(schema.feature_inputs, raw, AT)
    assert invalid == {}
    served = row_scoring(model, schema)(columns)
    trained = model.predict_proba(offline_encoded.iloc[ok][schema.features])[:, 1]
    np.testing.assert_allclose(served, trained, rtol=0, atol=1e-9)


def test_array_features_of_varying_length_are_a_data_error_naming_the_feature(applied, contract):
    project, store = applied
    frame = fetch_training_frame(store, contract, project.world.labels.head(300), LABELS, known_by=END)
    frame.at[frame.index[0], "user_embedding"] = np.array([1.0, 2.0], dtype=np.float32)
    with pytest.raises(DataError, match="'user_embedding' is an array.*lengths found: 2, 4"):
        encode_training_frame(frame, contract.schema(), "event_timestamp")


def test_compound_keys_online_say_which_pair_is_unknown_or_incomplete(applied, contract):
    project, store = applied
    known = pairs_seen_before(project, AT, 1).iloc[0]
    entities = {
        "user_id": [known["user_id"], "nobody", known["user_id"]],
        "item_id": [int(known["item_id"]), 10_000, 10_000],
        "discount": [0.1, 0.1, 0.1],
        "hour_of_day": [20, 20, 20],
    }
    online = OnlineFeatureReader(store, contract).fetch(entities, now=AT)
    assert online.statuses[1] == "unknown_entity"
    assert online.issues[-2].entity == {"user_id": "nobody", "item_id": 10_000}
    # A known user with an item nobody has heard of: the user's features are there, the item's and the pair's not.
    assert online.statuses[2] == "missing_values"
    assert {"price", "clicks_30d"} <= set(online.issues[-1].features)
    assert online.entity(0) == {"user_id": known["user_id"], "item_id": int(known["item_id"])}


def test_an_on_demand_output_that_comes_back_null_makes_its_row_missing_values(applied, contract):
    project, store = applied
    known = pairs_seen_before(project, AT, 1).iloc[0]
    entities = {
        "user_id": [known["user_id"]] * 2,
        "item_id": [int(known["item_id"])] * 2,
        "discount": [0.1, float("nan")],  # the service refuses NaN; a user's transformation may still return null
        "hour_of_day": [20, 20],
    }
    online = OnlineFeatureReader(store, contract).fetch(entities, now=AT)
    issue = next(issue for issue in online.issues if issue.row == 1)
    assert (issue.status, issue.features) == ("missing_values", ["discounted_price"])
    assert issue.entity == {"user_id": known["user_id"], "item_id": int(known["item_id"])}
    assert online.columns["discounted_price"][1] is None


def test_batch_scoring_takes_the_pairs_a_view_knows_and_refuses_request_fields(applied, contract):
    project, store = applied
    with pytest.raises(ConfigError, match="needs request field\\(s\\) discount, hour_of_day .* score it online"):
        fetch_latest_features(store, contract, AT)
    pairs = FeatureContract.resolve(store, "affinity_v1")
    latest = fetch_latest_features(store, pairs, AT)
    activity = project.world.interactions
    live = activity[(activity["event_timestamp"] < AT) & (activity["event_timestamp"] >= AT - timedelta(days=30))]
    assert len(latest) == len(live.drop_duplicates(["user_id", "item_id"]))  # the pairs, not users x items
    assert list(latest.columns) == ["user_id", "item_id", *pairs.features]
    row = latest.dropna().iloc[0]
    assert row["affinity"] == pytest.approx(np.log1p(row["clicks_30d"]) * row["last_rating"])
