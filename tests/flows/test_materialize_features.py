"""The materialize-features flow end to end under Prefect, against a temporary state folder."""

import hashlib
from datetime import datetime, timezone

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from cicloml.contract import FeatureContract
from cicloml.errors import ConfigError
from cicloml.feature_store import OnlineFeatureReader, open_store
from flows.materialize_features import MaterializeParams, materialize_features
from tests.conftest import FEATURE_REPO, ciclo_environment

END = datetime(2026, 11, 1, 6, tzinfo=timezone.utc)
PARAMS = MaterializeParams(end=END, generate_demo_data=True, demo_customers=30, demo_days=40)


def snapshot(settings):
    files = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in settings.data_dir.iterdir()}
    store = open_store(FEATURE_REPO, settings)
    reader = OnlineFeatureReader(store, FeatureContract.resolve(store, "churn_v1"))
    return files, reader.fetch(list(range(1001, 1031)), now=END).columns


def test_the_flow_materializes_once_and_a_rerun_changes_nothing(tmp_path):
    with ciclo_environment(tmp_path / "state") as settings:
        first = materialize_features(PARAMS)
        assert {view.view: view.rows for view in first.views} == {"customer_profile": 30, "customer_activity": 30}
        state = snapshot(settings)

        second = materialize_features(PARAMS)
        assert second.rows == 0
        assert snapshot(settings) == state

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["materialize-summary"]))
        )
    assert artifacts, "the flow publishes a run summary artifact"
    assert "| customer_activity |" in artifacts[-1].data and "rows** materialized" in artifacts[-1].data


def test_a_bad_spec_fails_before_any_work(tmp_path):
    spec = tmp_path / "cicloml.yaml"
    spec.write_text("name: churn\nfeatures: {entity: customer}\nlabels: {path: x.parquet, column: churned}\n")
    with ciclo_environment(tmp_path / "state", spec_path=str(spec)) as settings:
        with pytest.raises(ConfigError, match="features.feature_service: required key is missing"):
            materialize_features(PARAMS)
        assert not settings.data_dir.exists()
