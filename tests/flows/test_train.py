"""The train flow under Prefect: the gate promotes a better challenger, rejects a worse one, trains nothing on the
champion's own data and settings, and rollback works."""

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from cicloml.registry import ModelRegistry
from cicloml.spec import SklearnModelSpec
from flows.materialize_features import MaterializeParams, materialize_features
from flows.train import TrainParams, train
from tests.conftest import ciclo_environment

END = datetime(2026, 11, 1, 6, tzinfo=timezone.utc)
WEAK = SklearnModelSpec(params={"max_iter": 5, "max_depth": 1, "learning_rate": 0.1})


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    with ciclo_environment(tmp_path_factory.mktemp("train")) as settings:
        materialize_features(MaterializeParams(end=END, generate_demo_data=True, demo_customers=1500, demo_days=90))
        yield settings


def artifact(key: str) -> str:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return found[-1].data


def test_a_better_challenger_is_promoted_and_rollback_restores_the_previous_champion(settings):
    registry = ModelRegistry(settings, "churn")
    first = train(TrainParams(as_of=END, model=WEAK))
    assert first.promoted, first.decision.reasons
    assert registry.champion() == first.tag

    second = train(TrainParams(as_of=END))
    assert second.promoted, second.decision.reasons
    assert second.decision.champion_tag == first.tag
    assert second.decision.challenger.roc_auc > second.decision.champion.roc_auc
    # Judged on the same test rows, which the weak champion did not train on either, with a paired interval.
    comparison = second.decision.comparison
    assert comparison.rows == second.decision.challenger.rows and comparison.interval[0] > 0
    assert registry.lineage(second.tag).gate == second.decision
    assert registry.lineage(second.tag).calibration is not None
    assert registry.champion() == second.tag
    assert "| roc_auc |" in artifact("promotion-gate") and "data:image/png;base64," in artifact("evaluation")

    assert registry.rollback() == first.tag
    assert registry.champion() == first.tag
    registry.promote(second.tag)


def test_the_champions_own_data_and_settings_train_nothing(settings):
    registry = ModelRegistry(settings, "churn")
    champion, versions = registry.champion(), registry.versions()
    again = train(TrainParams(as_of=END))  # the champion's spec, the same labels
    assert (again.tag, again.promoted, again.decision) == (None, False, None)
    assert "the same data as the champion" in again.skipped and again.freshness.champion_tag == champion
    assert registry.versions() == versions and registry.champion() == champion


def test_a_challenger_trained_on_shuffled_labels_is_rejected_and_never_champion(settings):
    registry = ModelRegistry(settings, "churn")
    champion = registry.champion()
    assert champion is not None

    labels_path = settings.data_dir / "labels.parquet"
    labels = pd.read_parquet(labels_path)
    shuffled = labels.assign(churned=np.random.default_rng(0).permutation(labels["churned"].to_numpy()))
    shuffled.to_parquet(labels_path, index=False)
    try:
        result = train(TrainParams(as_of=END))
    finally:
        labels.to_parquet(labels_path, index=False)

    assert not result.promoted
    assert any(reason.startswith("failed: ROC AUC") for reason in result.decision.reasons)
    assert registry.champion() == champion
    assert registry.label(result.tag)["gate"] == "rejected"
    assert result.tag in [version.tag for version in registry.versions()]


def test_bad_training_data_fails_the_run_naming_column_and_rule(settings):
    labels_path = settings.data_dir / "labels.parquet"
    labels = pd.read_parquet(labels_path)
    labels.assign(churned=0).to_parquet(labels_path, index=False)
    try:
        with pytest.raises(Exception, match="churned: label_single_class: every label is 0"):
            train(TrainParams(as_of=END))
    finally:
        labels.to_parquet(labels_path, index=False)
