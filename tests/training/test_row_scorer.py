"""RowScorer replays the fitted preprocessing in numpy: it must give the pipeline's own probabilities."""

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from cicloml.models.preprocessing import FeatureSchema, build_preprocessor
from cicloml.models.row_scorer import VECTORIZE_FROM_ROWS, RowScorer, UnsupportedPipeline
from cicloml.training import fit_model, score
from tests.training.test_families import FAMILIES, data  # noqa: F401  (the module-scoped demo-data fixture)


def columns_of(frame: pd.DataFrame, schema: FeatureSchema) -> dict[str, list]:
    return {name: frame[name].tolist() for name in schema.features}


def awkward_rows(frame: pd.DataFrame, schema: FeatureSchema, count: int) -> pd.DataFrame:
    """Test rows with holes: missing numbers, None and NaN categories, a category never seen in training."""
    rows = frame[schema.features].head(count).copy().astype(object)
    rows.iloc[0:5, 0] = None
    rows.iloc[5:10, 1] = np.nan
    categorical = schema.categorical[0]
    rows.loc[rows.index[10:13], categorical] = None
    rows.loc[rows.index[13:16], categorical] = np.nan
    rows.loc[rows.index[16:20], categorical] = "a-category-never-seen"
    for name in schema.numeric:
        rows[name] = pd.to_numeric(rows[name])
    return rows


@pytest.mark.parametrize("family", FAMILIES)
def test_row_scorer_equals_the_pipeline_on_test_rows_and_on_rows_with_holes(data, family):  # noqa: F811
    """Both ways of matching categories are held to the pipeline: one by one (few rows) and in bulk (many)."""
    split, schema = data
    train = split.train.copy()
    train.loc[train.index[:30], schema.numeric[2]] = np.nan  # so the imputer fits indicators for one column
    train.loc[train.index[30:40], schema.categorical[0]] = None  # and the encoder a None category
    model = fit_model(train, "churned", schema, FAMILIES[family], seed=0)
    scorer = RowScorer(model, schema)

    test = split.test[schema.features]
    np.testing.assert_allclose(scorer.score(columns_of(test, schema)), score(model, test, schema), rtol=0, atol=1e-12)
    assert len(test) > VECTORIZE_FROM_ROWS
    for count in (VECTORIZE_FROM_ROWS - 1, 5 * VECTORIZE_FROM_ROWS):
        holes = awkward_rows(split.test, schema, count)
        expected = score(model, holes, schema)
        np.testing.assert_allclose(scorer.score(columns_of(holes, schema)), expected, rtol=0, atol=1e-12)
        # Columns may also be pandas Series (batch scoring passes the frame's columns).
        as_series = {name: holes[name] for name in schema.features}
        np.testing.assert_allclose(scorer.score(as_series), expected, rtol=0, atol=1e-12)
        # Or hold pandas' NA for a missing number (nullable integer columns from Feast).
        with_na = columns_of(holes, schema)
        with_na[schema.numeric[0]] = [pd.NA if pd.isna(value) else value for value in with_na[schema.numeric[0]]]
        np.testing.assert_allclose(scorer.score(with_na), expected, rtol=0, atol=1e-12)
    one = test.head(1)
    assert scorer.score(columns_of(one, schema)).shape == (1,)
    assert scorer.score({name: [] for name in schema.features}).shape == (0,)


def test_a_pipeline_of_another_shape_is_refused(data):  # noqa: F811
    split, schema = data
    other = ColumnTransformer([("numeric", MinMaxScaler(), list(schema.numeric))])
    model = Pipeline([("preprocess", other), ("classifier", LogisticRegression())])
    model.fit(split.train[schema.features].fillna(0), split.train["churned"])
    with pytest.raises(UnsupportedPipeline, match="MinMaxScaler"):
        RowScorer(model, schema)
    with pytest.raises(UnsupportedPipeline, match="classifier"):
        RowScorer(Pipeline([("preprocess", build_preprocessor(schema))]), schema)
