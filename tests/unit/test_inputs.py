"""Feast values to model columns: flags as 0/1, vectors one column per position (of the learned length),
timestamps as their age in days at the moment of prediction, missing values kept missing."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from cicloml.errors import DataError
from cicloml.models.inputs import FeatureInput, encode_columns, encode_frame, learn_vector_widths
from cicloml.models.preprocessing import FeatureSchema

NOW = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)
INPUTS = (
    FeatureInput("plan", "category"),
    FeatureInput("charges", "number"),
    FeatureInput("active", "flag"),
    FeatureInput("embedding", "vector", width=3),
    FeatureInput("signup", "timestamp"),
)


def test_each_role_becomes_its_columns_and_missing_stays_missing():
    columns = {
        "plan": ["basic", None],
        "charges": [10.5, None],
        "active": [True, None],
        "embedding": [[1.0, 2.0, 3.0], None],
        "signup": [NOW - timedelta(days=2, hours=12), None],
    }
    encoded, invalid = encode_columns(INPUTS, columns, NOW)
    assert invalid == {}
    assert encoded["plan"] == ["basic", None] and encoded["charges"] == [10.5, None]  # passed through as they are
    assert encoded["active"][0] == 1.0 and np.isnan(encoded["active"][1])
    assert [encoded[f"embedding_{i}"][0] for i in range(3)] == [1.0, 2.0, 3.0]
    assert all(np.isnan(encoded[f"embedding_{i}"][1]) for i in range(3))
    assert encoded["signup_age_days"][0] == pytest.approx(2.5) and np.isnan(encoded["signup_age_days"][1])


def test_a_vector_of_another_length_is_reported_and_left_missing():
    columns = {"plan": ["a", "b"], "charges": [1.0, 2.0], "active": [False, True], "signup": [NOW, NOW]}
    columns["embedding"] = [[1.0, 2.0], [1.0, 2.0, 3.0]]
    encoded, invalid = encode_columns(INPUTS, columns, NOW)
    assert invalid == {0: ["embedding"]}
    assert np.isnan(encoded["embedding_0"][0]) and encoded["embedding_0"][1] == 1.0


def test_naive_timestamps_are_utc_and_each_row_can_have_its_own_moment():
    moments = [NOW, NOW + timedelta(days=1)]
    ages, _ = encode_columns([FeatureInput("signup", "timestamp")], {"signup": [NOW.replace(tzinfo=None)] * 2}, moments)
    assert list(ages["signup_age_days"]) == [0.0, 1.0]


def test_widths_are_learned_from_the_frame_and_must_agree():
    frame = pd.DataFrame({"embedding": [np.zeros(4), None, np.ones(4)]})
    (learned,) = learn_vector_widths([FeatureInput("embedding", "vector")], frame)
    assert learned.width == 4 and learned.columns == [f"embedding_{i}" for i in range(4)]
    frame.at[1, "embedding"] = np.ones(2)
    with pytest.raises(DataError, match="'embedding' is an array.*lengths found: 2, 4.*features.exclude"):
        learn_vector_widths([FeatureInput("embedding", "vector")], frame)


def test_a_frame_gets_the_model_columns_in_place_of_the_features_and_the_schema_lists_them():
    frame = pd.DataFrame(
        {
            "plan": ["basic"],
            "charges": [3.0],
            "active": [True],
            "embedding": [[0.5, 0.25, 0.0]],
            "signup": [NOW - timedelta(days=1)],
            "at": [NOW],
        }
    )
    encoded = encode_frame(INPUTS, frame, "at")
    schema = FeatureSchema.from_inputs(("id",), INPUTS)
    assert schema.numeric == ("charges", "active", "embedding_0", "embedding_1", "embedding_2", "signup_age_days")
    assert schema.categorical == ("plan",)
    assert set(schema.features) <= set(encoded.columns) and "embedding" not in encoded.columns
    assert encoded.loc[0, "signup_age_days"] == 1.0 and encoded.loc[0, "embedding_1"] == 0.25


def test_a_schema_from_before_roles_reads_its_columns_as_they_are():
    old = FeatureSchema(entity_keys=("id",), numeric=("charges",), categorical=("plan",))
    assert old.feature_inputs == (FeatureInput("charges", "number"), FeatureInput("plan", "category"))
    assert old.input_names == ["charges", "plan"] and old.features == ["charges", "plan"]
