"""Both model families on the demo data, through the real feature store: they learn, and they are repeatable."""

from datetime import datetime, timezone

import numpy as np
import pytest

from cicloml.contract import FeatureContract
from cicloml.demo.churn import write_churn_data
from cicloml.feature_store import apply_repo, feature_schema, fetch_training_frame, materialize, open_store
from cicloml.spec import LightningModelSpec, SearchSpec, SklearnModelSpec, load_spec
from cicloml.training import (
    evaluate_model,
    fit_model,
    read_labels,
    recency_weights,
    split_by_time,
    tune_threshold,
)
from tests.conftest import FEATURE_REPO, ROOT, ciclo_environment

END = datetime(2026, 11, 1, tzinfo=timezone.utc)
FAMILIES = {
    "sklearn": SklearnModelSpec(params={"max_iter": 100, "learning_rate": 0.05, "max_leaf_nodes": 15}),
    "lightning": LightningModelSpec(family="lightning", hidden_sizes=(32, 16), max_epochs=15, patience=3),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    spec = load_spec(ROOT / "cicloml.yaml")
    with ciclo_environment(tmp_path_factory.mktemp("families")) as settings:
        write_churn_data(settings.data_dir, END, customers=800, days=90, seed=21)
        store = open_store(FEATURE_REPO, settings)
        apply_repo(store)
        materialize(store, END)
        schema = feature_schema(store, "churn_v1")
        frame = fetch_training_frame(
            store,
            FeatureContract.resolve(store, "churn_v1"),
            read_labels(settings, spec.labels),
            spec.labels,
            known_by=END,
        )
    split = split_by_time(frame, "event_timestamp", validation_fraction=0.15, test_fraction=0.2)
    return split, schema


def train_and_evaluate(data, family: str, seed: int, half_life_days: float | None = None):
    split, schema = data
    weights = recency_weights(split.train["event_timestamp"], half_life_days)
    model = fit_model(split.train, "churned", schema, FAMILIES[family], seed, sample_weight=weights)
    threshold = tune_threshold(model, split.validation, schema, "churned")
    return evaluate_model(model, split.test, schema, "churned", threshold=threshold, slices=["region"])


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_beats_a_trivial_baseline_by_a_clear_margin(data, family):
    report = train_and_evaluate(data, family, seed=0).report
    # A constant score has ROC AUC 0.5 and PR AUC equal to the positive rate.
    assert report.overall.roc_auc > 0.70
    assert report.overall.pr_auc > 1.5 * report.overall.positive_rate
    assert {slice_.column for slice_ in report.slices} == {"region"}


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_and_data_give_the_same_metrics(data, family):
    first, again = train_and_evaluate(data, family, seed=5), train_and_evaluate(data, family, seed=5)
    np.testing.assert_array_equal(first.scores, again.scores)
    assert first.report == again.report


@pytest.mark.parametrize("family", FAMILIES)
def test_recency_weights_reach_each_family_and_it_still_learns(data, family):
    unweighted = train_and_evaluate(data, family, seed=0)
    weighted = train_and_evaluate(data, family, seed=0, half_life_days=14.0)
    assert not np.array_equal(weighted.scores, unweighted.scores)
    assert weighted.report.overall.roc_auc > 0.70


def test_a_randomized_search_over_time_series_splits_refits_the_best_pipeline(data):
    split, schema = data
    spec = SklearnModelSpec(
        params={"max_iter": 30},
        search=SearchSpec(n_iter=2, splits=2, params={"learning_rate": [0.05, 0.2], "max_leaf_nodes": [7, 15]}),
    )
    model = fit_model(split.train, "churned", schema, spec, seed=0)
    classifier = model.named_steps["classifier"]
    assert classifier.learning_rate in (0.05, 0.2) and classifier.max_leaf_nodes in (7, 15)
    assert classifier.max_iter == 30
    assert model.predict_proba(split.test[schema.features]).shape == (len(split.test), 2)
