"""build-bento under Prefect: the bento pins the champion, is tagged with its version, and is recorded on it."""

from datetime import datetime, timezone

import pytest

from cicloml.registry import ModelRegistry
from flows.build_bento import BuildBentoParams, build_bento
from flows.materialize_features import MaterializeParams, materialize_features
from flows.train import TrainParams, train
from tests.conftest import ciclo_environment

END = datetime(2026, 11, 1, 6, tzinfo=timezone.utc)


def test_the_champion_is_built_once_and_recorded_and_deploying_says_it_skipped(tmp_path, monkeypatch):
    monkeypatch.delenv("BENTO_CLOUD_API_KEY", raising=False)
    with ciclo_environment(tmp_path / "state") as settings:
        with pytest.raises(Exception, match="no champion for 'churn' yet"):
            build_bento()
        materialize_features(MaterializeParams(end=END, generate_demo_data=True, demo_customers=300, demo_days=60))
        champion = train(TrainParams(as_of=END)).tag

        first = build_bento()
        assert (first.model_tag, first.bento_tag, first.built) == (champion, champion, True)  # named like the model
        assert (settings.bentoml_home / "bentos" / "churn" / champion.split(":")[1] / "bento.yaml").is_file()
        assert ModelRegistry(settings, "churn").bentos(champion) == [first.bento_tag]
        # No BentoCloud credentials here: the deploy step ran, did nothing, and says how to configure them.
        assert (first.deployment.status, first.deployment.deployment) == ("skipped", "cicloml-churn")
        assert "BENTO_CLOUD_API_KEY" in first.deployment.message and "cloud login" in first.deployment.message

        again = build_bento(BuildBentoParams(model_tag=champion, deploy=False))
        assert (again.bento_tag, again.built, again.deployment) == (first.bento_tag, False, None)
