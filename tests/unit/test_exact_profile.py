"""`exact_profile` preprocesses float and string columns itself instead of through whylogs' per-value passes: its
profiles must hold what `why.log` makes of the same frame with the same schema and config, metric for metric."""

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
import whylogs as why

from cicloml import profiling
from cicloml.drift import compare_profiles
from cicloml.profiling import SCORE_COLUMN, DatasetProfileView, exact_profile
from cicloml.spec import DriftSpec

pytestmark = pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # whylogs' variance of a column with inf

FEATURES = ["tenure", "charges", "calls", "plan", "region"]
"""The kinds of column a replay profiles: floats with NaN (numbers as the feature store serves them), ints, and
categories as objects with missing values among them."""


def frame(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0, 300.0, size=rows) + shift * 300
    tenure[rng.random(rows) < 0.05] = np.nan
    charges = np.round(rng.normal(70 + shift * 20, 20, size=rows), 1)  # many ties
    charges[rng.random(rows) < 0.02] = np.nan
    charges[:3] = np.resize([np.inf, -np.inf, np.inf], min(rows, 3))
    plan = rng.choice(["basic", "premium", "standard"], size=rows, p=[0.5 - shift / 4, 0.3, 0.2 + shift / 4])
    plan = plan.astype(object)
    plan[rng.random(rows) < 0.03] = None
    plan[rng.random(rows) < 0.02] = np.nan
    plan[rng.random(rows) < 0.01] = pd.NA
    region = rng.choice(["north", "south", "east", "west"], size=rows).astype(object)
    return pd.DataFrame(
        {
            "tenure": tenure,
            "charges": charges,
            "calls": rng.poisson(3 + shift, size=rows),
            "plan": plan,
            "region": region,
            SCORE_COLUMN: rng.random(rows),
            # What else a caller might hand over: through whylogs' own preprocessing or special cases of ours.
            "all_nan": np.full(rows, np.nan),
            "all_missing": pattern([None, np.nan, pd.NA], rows),
            "mixed": pattern(["a", 1, 2.5, None, True, np.nan, "b", math.inf], rows),
            "numbers_and_nulls": pattern([1, 2.5, None, 3], rows),
            "float32": rng.normal(size=rows).astype(np.float32),
            "bools": rng.random(rows) < 0.3,
            "nullable_ints": pd.array(pattern([1, None, 3, 4], rows), dtype="Int64"),
            "string_dtype": pd.array(pattern(["p", None, "q", "r"], rows), dtype="string"),
        }
    )


def pattern(values: list[Any], rows: int) -> np.ndarray:
    """`values` repeated (and cut) to `rows` objects."""
    return np.array((values * rows)[:rows], dtype=object)


def whylogs_profile(data: pd.DataFrame) -> DatasetProfileView:
    """What `exact_profile` computed before it preprocessed columns itself: whylogs' logger over the whole frame."""
    return why.log(pandas=data, schema=profiling._schema(profiling._EXACT_METRIC_CONFIG)).view()


def summary(view: DatasetProfileView, column: str) -> dict[str, Any]:
    """A column's metrics as values, NaN made comparable (a mean over inf is NaN in both)."""
    values = view.get_column(column).to_summary_dict()
    return {key: "NaN" if isinstance(value, float) and math.isnan(value) else value for key, value in values.items()}


@pytest.mark.parametrize("rows", [1, 8, 800])
def test_an_exact_profile_holds_what_whylogs_makes_of_the_frame(rows: int) -> None:
    data = frame(rows, seed=rows)
    ours, theirs = exact_profile(data), whylogs_profile(data)

    assert list(ours.get_columns()) == list(theirs.get_columns()) == list(data.columns)
    for column in data.columns:
        mine, reference = ours.get_column(column), theirs.get_column(column)
        assert mine.get_metric_names() == reference.get_metric_names(), column
        assert summary(ours, column) == summary(theirs, column), column
        for name in reference.get_metric_names():  # every sketch too, value for value
            assert mine.get_metric(name).to_protobuf().SerializeToString(deterministic=True) == reference.get_metric(
                name
            ).to_protobuf().SerializeToString(deterministic=True), (column, name)
        sketch = reference.get_metric("distribution").kll.value
        if not sketch.is_empty():
            cuts = list(np.linspace(0, 1, 21))
            assert mine.get_metric("distribution").kll.value.get_quantiles(cuts) == sketch.get_quantiles(cuts), column

    # The counts whylogs keeps: NaN in a float column is null and NaN; None and pd.NA among strings only null.
    counts = {column: ours.get_column(column).get_metric("counts").to_summary_dict() for column in data.columns}
    assert counts["all_nan"]["null"] == counts["all_nan"]["nan"] == rows
    plan = data["plan"]
    assert counts["plan"]["null"] == plan.isna().sum()
    assert counts["plan"]["nan"] == sum(isinstance(value, float) for value in plan if pd.isna(value))
    assert counts["charges"]["inf"] == min(rows, 3)
    assert set(ours.get_column("plan").get_metric_names()) == {"counts", "types", "distribution", "frequent_items"}


def test_drift_between_exact_profiles_is_what_it_was_with_whylogs_profiles() -> None:
    reference, current = frame(2000, seed=1), frame(1000, seed=2, shift=0.4)
    for spec in (DriftSpec(), DriftSpec(method="hellinger", categorical_method="jensen_shannon")):
        reports = [
            compare_profiles(
                profile(reference), profile(current), features=FEATURES, spec=spec, model_tag="churn:test"
            ).model_dump_json()
            for profile in (exact_profile, whylogs_profile)
        ]
        assert reports[0] == reports[1]
    report = compare_profiles(
        exact_profile(reference), exact_profile(current), features=FEATURES, spec=DriftSpec(), model_tag="churn:test"
    )
    assert report.prediction is not None and report.features[0].score > 0


def test_an_empty_frame_gives_columns_with_empty_metrics_as_whylogs() -> None:
    data = frame(8, seed=0).iloc[:0]
    ours, theirs = exact_profile(data), whylogs_profile(data)
    for column in data.columns:
        assert summary(ours, column) == summary(theirs, column), column


def test_a_frame_beyond_the_exact_sketch_is_profiled_from_a_seeded_sample() -> None:
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"value": rng.normal(size=profiling.EXACT_PROFILE_ROWS + 10)})
    profile = exact_profile(data, seed=3)
    sample = data.sample(n=profiling.EXACT_PROFILE_ROWS, random_state=3).sort_index()
    assert summary(profile, "value") == summary(whylogs_profile(sample), "value")
    assert summary(profile, "value")["counts/n"] == profiling.EXACT_PROFILE_ROWS
