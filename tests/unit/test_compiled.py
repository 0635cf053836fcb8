"""Compiled tree inference: the compiled trees give the pipeline's probabilities, or a version goes without them."""

import logging
import pickle
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from cicloml.lineage import Lineage, library_versions
from cicloml.models.compiled import (
    COMPILED_FILE,
    PARITY_TOLERANCE,
    CompiledClassifier,
    compile_pipeline,
    edge_rows,
)
from cicloml.models.preprocessing import FeatureSchema
from cicloml.models.row_scorer import RowScorer
from cicloml.models.sklearn import build_sklearn_pipeline
from cicloml.profiling import profile_frame
from cicloml.registry import ModelRegistry
from cicloml.spec import SklearnModelSpec
from tests.conftest import ciclo_environment

SCHEMA = FeatureSchema(
    entity_keys=("customer_id",), numeric=("charges", "tenure", "calls"), categorical=("plan", "region")
)
TREES = {
    "hist_gradient_boosting": {"max_iter": 60, "learning_rate": 0.1, "max_leaf_nodes": 15},
    "gradient_boosting": {"n_estimators": 40, "max_depth": 3},
    "random_forest": {"n_estimators": 40, "max_depth": 8},
}


def churn_frame(rows: int, seed: int) -> pd.DataFrame:
    """Numbers with missing values (so the imputer adds indicators), categories with missing ones, a binary label."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "charges": rng.normal(60, 20, rows),
            "tenure": rng.exponential(300, rows),
            "calls": rng.integers(0, 12, rows).astype(np.float64),
            "plan": rng.choice(["basic", "premium", "family"], rows).astype(object),
            "region": rng.choice(["north", "south", None], rows).astype(object),
        }
    )
    signal = (frame["charges"] - 60) / 20 - frame["tenure"] / 300 + (frame["plan"] == "basic") + rng.normal(0, 1, rows)
    frame["churned"] = (signal > 0).astype(int)
    frame.loc[frame.index[::7], "tenure"] = np.nan
    frame.loc[frame.index[::11], "plan"] = None
    return frame


TRAIN, TEST = churn_frame(800, seed=1), churn_frame(300, seed=2)


def fitted(estimator: str) -> Pipeline:
    spec = SklearnModelSpec(estimator=estimator, params=TREES.get(estimator, {}))
    return build_sklearn_pipeline(SCHEMA, spec, seed=0).fit(TRAIN[SCHEMA.features], TRAIN["churned"])


def lineage() -> Lineage:
    moment = datetime(2026, 10, 1, tzinfo=timezone.utc)
    return Lineage(
        family="sklearn",
        feature_service="churn_v1",
        features=SCHEMA,
        label="churned",
        training_window=(moment, moment),
        test_window=(moment, moment),
        rows={"train": len(TRAIN), "validation": 0, "test": len(TEST)},
        data_fingerprint="compiled",
        params={},
        threshold=0.5,
        metrics={},
        library_versions=library_versions(),
        code_revision="test",
    )


def register(registry: ModelRegistry, pipeline: Pipeline) -> str:
    reference = profile_frame(TRAIN[SCHEMA.features])
    return registry.register(pipeline, lineage(), reference, {"gate": "passed"}, check_frame=TEST)


def columns(frame: pd.DataFrame) -> dict[str, list]:
    return {name: frame[name].tolist() for name in SCHEMA.features}


@pytest.mark.parametrize("estimator", TREES)
def test_compiled_trees_give_the_pipelines_probabilities_on_test_and_edge_rows(settings, estimator):
    pipeline = fitted(estimator)
    registry = ModelRegistry(settings, "churn")
    tag = register(registry, pipeline)

    report = registry.compilation(tag)
    assert report is not None and report.compiled, report
    edges = edge_rows(SCHEMA, TEST)
    assert report.rows_checked == len(TEST) + len(edges)
    assert report.max_difference <= PARITY_TOLERANCE
    loaded = registry.load(tag)
    assert loaded.compiled is not None and (loaded.path / COMPILED_FILE).is_file()

    # What serving does: the replayed preprocessing, then the compiled trees, a call of a few rows at a time.
    scorer = RowScorer(loaded.pipeline, SCHEMA, loaded.compiled)
    for frame in (TEST, edges):
        expected = pipeline.predict_proba(frame[SCHEMA.features])[:, 1]
        chunks = [frame.iloc[start : start + 10] for start in range(0, len(frame), 10)]
        got = np.concatenate([scorer.score(columns(chunk)) for chunk in chunks])
        np.testing.assert_allclose(got, expected, rtol=0, atol=PARITY_TOLERANCE)
    # A model travels to a Dask worker pickled: the compiled trees go as their checkpoint.
    again = pickle.loads(pickle.dumps(loaded.compiled))
    matrix = scorer.transform(columns(edges))
    np.testing.assert_array_equal(again.predict_positive(matrix), loaded.compiled.predict_positive(matrix))


def test_edge_rows_vary_each_feature_to_missing_extreme_and_unseen():
    edges = edge_rows(SCHEMA)  # no check frame: one base row
    assert len(edges) == 3 * len(SCHEMA.numeric) + 2 * len(SCHEMA.categorical) + 1
    assert edges["charges"].isna().sum() == 2 and set(edges["charges"].dropna()) == {0.0, 1e12, -1e12}
    assert "cicloml-parity-unseen-category" in set(edges["plan"])
    assert edges.iloc[-1].isna().all()


def test_compiled_trees_that_disagree_are_left_out_and_the_version_says_why(settings, monkeypatch, caplog):
    exact = CompiledClassifier.predict_positive
    monkeypatch.setattr(CompiledClassifier, "predict_positive", lambda self, matrix: exact(self, matrix) + 1e-3)
    registry = ModelRegistry(settings, "churn")
    with caplog.at_level(logging.WARNING, logger="cicloml.registry"):
        tag = register(registry, fitted("hist_gradient_boosting"))

    report = registry.compilation(tag)
    assert report is not None and not report.compiled
    assert report.max_difference == pytest.approx(1e-3)
    assert "differed from the pipeline by up to 0.001" in report.reason
    assert "without compiled trees" in caplog.text and report.reason in caplog.text
    loaded = registry.load(tag)
    assert loaded.compiled is None and not (loaded.path / COMPILED_FILE).exists()


def test_with_the_setting_off_the_pipeline_scores(tmp_path, monkeypatch):
    with ciclo_environment(tmp_path / "state", compiled_inference="false") as settings:
        registry = ModelRegistry(settings, "churn")
        pipeline = fitted("hist_gradient_boosting")
        tag = register(registry, pipeline)
        assert registry.compilation(tag).compiled  # still made at registration: the setting decides serving only
        loaded = registry.load(tag)
    assert loaded.compiled is None

    def refuse(self: CompiledClassifier, matrix: np.ndarray) -> np.ndarray:
        raise AssertionError("the compiled trees were used")

    monkeypatch.setattr(CompiledClassifier, "predict_positive", refuse)
    one = TEST.head(1)
    score = RowScorer(loaded.pipeline, SCHEMA, loaded.compiled).score(columns(one))
    np.testing.assert_allclose(score, pipeline.predict_proba(one[SCHEMA.features])[:, 1], rtol=0, atol=1e-12)


def test_large_batches_go_to_the_pipelines_classifier(monkeypatch):
    pipeline = fitted("hist_gradient_boosting")
    compiled, _ = compile_pipeline(pipeline, SCHEMA, TEST)
    assert compiled is not None
    calls: list[int] = []
    exact = CompiledClassifier.predict_positive
    monkeypatch.setattr(
        CompiledClassifier, "predict_positive", lambda self, matrix: calls.append(len(matrix)) or exact(self, matrix)
    )
    scorer = RowScorer(pipeline, SCHEMA, compiled)
    below = compiled.faster_below_rows
    scorer.score(columns(TEST.head(below - 1)))
    scorer.score(columns(TEST.head(below)))
    assert calls == [below - 1]


def test_a_model_treelite_cannot_take_is_registered_without_compiled_trees(settings):
    registry = ModelRegistry(settings, "churn")
    tag = register(registry, fitted("logistic_regression"))
    report = registry.compilation(tag)
    assert report is not None and not report.compiled and report.max_difference is None
    assert report.reason == "LogisticRegression is not a tree ensemble cicloml compiles"
    assert registry.load(tag).compiled is None


def test_compiled_trees_that_cannot_be_read_leave_the_pipeline_scoring(settings, caplog):
    registry = ModelRegistry(settings, "churn")
    tag = register(registry, fitted("hist_gradient_boosting"))
    (registry.load(tag).path / COMPILED_FILE).write_bytes(b"not a treelite checkpoint")
    with caplog.at_level(logging.WARNING, logger="cicloml.registry"):
        assert registry.load(tag).compiled is None
    assert "could not load the compiled trees" in caplog.text
