"""Someone else's Feast repository the whole way, through the real parts: `cicloml init` → check → apply →
materialize → train (both families) → register → build the bento → serve it on its own from an empty folder →
`/predict` with request fields → `cicloml serve` → traffic → drift check → retrain → the new champion served."""

import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import yaml
from prefect.testing.utilities import prefect_test_harness

from cicloml.cli import main
from cicloml.demo.live import ServeProcess, fresh_window, send_traffic, wait_for_window
from cicloml.prediction_log import read_prediction_log
from cicloml.registry import ModelRegistry
from cicloml.spec import LightningModelSpec, SklearnModelSpec
from flows.build_bento import BuildBentoParams, build_bento
from flows.detect_drift import DetectDriftParams, detect_drift
from flows.materialize_features import MaterializeParams, materialize_features
from flows.train import TrainParams, train
from tests.byo.conftest import make_project, project_environment
from tests.conftest import ROOT
from tests.service.conftest import bento_server

pytestmark = pytest.mark.slow

WINDOW_SECONDS = 12
# Midnight: the seeded world is the same every day (its hours of day are), and its newest rows are fresh now.
END = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module", autouse=True)
def prefect_server() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


def entities(pairs: list[tuple[str, int]], *, discount: float | None = None, hour: int | None = None) -> list[dict]:
    """Request rows: each pair with request fields as the world draws them, or fixed (drifted) ones."""
    return [
        {
            "user_id": user,
            "item_id": item,
            "discount": [0.0, 0.1, 0.2, 0.3][index % 4] if discount is None else discount,
            "hour_of_day": index % 24 if hour is None else hour,
        }
        for index, (user, item) in enumerate(pairs)
    ]


def test_a_repository_cicloml_did_not_write_goes_the_whole_way(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", end=END)
    with project_environment(project, profile_window_seconds=str(WINDOW_SECONDS)) as settings:
        # init → check (not applied yet) → apply → check passes.
        arguments = ["--feature-service", "click_v1", "--labels", str(project.labels_path)]
        assert main(["init", "--feast-repo", str(project.repo), *arguments]) == 1
        assert main(["apply"]) == 0 and main(["check"]) == 0
        spec = yaml.safe_load(project.spec_path.read_text())
        name = spec["name"]
        # This user retrains on every drift rather than on its estimated impact (drift.retrain_when), and trains a
        # logistic regression (the clicks follow a logistic model of the features: it beats gradient boosting here).
        spec.setdefault("drift", {})["retrain_when"] = "any_drift"
        spec["model"] = {"family": "sklearn", "estimator": "logistic_regression"}
        project.spec_path.write_text(yaml.safe_dump(spec))

        # Materialize (no demo data asked for: the repository's own sources), train both families.
        materialized = materialize_features(MaterializeParams())
        assert {view.view for view in materialized.views} == {"user_profile", "item_stats", "user_item_activity"}
        assert not settings.data_dir.exists()  # nothing of the churn demo's written
        # A first champion of another model than the spec's, shallow trees: the retraining below, on three more days
        # of labels and the spec's model, has something to beat on the rows neither trained on.
        shallow = SklearnModelSpec(params={"max_iter": 20, "max_depth": 2, "learning_rate": 0.1})
        first = train(TrainParams(as_of=END - timedelta(days=3), model=shallow))
        assert first.promoted and first.tag.startswith(f"{name}:")
        lightning = train(
            TrainParams(
                as_of=END - timedelta(days=3),
                model=LightningModelSpec(family="lightning", hidden_sizes=(16,), max_epochs=8),
            )
        )
        registry = ModelRegistry(settings, name)
        families = {version.tag: version.lineage.family for version in registry.versions()}
        assert families == {first.tag: "sklearn", lightning.tag: "lightning"}
        features = registry.lineage(first.tag).features
        assert "user_embedding_3" in features.numeric and "signup_at_age_days" in features.numeric
        assert {"preferences", "attributes"}.isdisjoint(features.input_names)
        champion = registry.champion()

        bento = build_bento(BuildBentoParams(model_tag=champion, deploy=False))
        assert bento.bento_tag == champion

        activity = project.world.interactions
        pairs = list(
            activity[activity["event_timestamp"] > END - timedelta(days=20)]
            .drop_duplicates(["user_id", "item_id"])[["user_id", "item_id"]]
            .itertuples(index=False, name=None)
        )
        pairs = [(str(user), int(item)) for user, item in pairs][:400]

        # The bento on its own, as a container runs it: an empty folder, nothing but BentoML's home (the online
        # store's path is in the bento). No CICLO_SPEC_PATH, no project checkout on the path.
        empty = tmp_path / "elsewhere"
        empty.mkdir()
        environment = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
        environment["BENTOML_HOME"] = str(settings.bentoml_home)
        with bento_server(environment, tmp_path / "standalone.log", target=champion, cwd=empty) as url:
            answered = httpx.post(f"{url}/predict", json={"entities": entities(pairs[:20])}, timeout=30)
            assert answered.status_code == 200, answered.text
            rows = answered.json()
            assert [row["entity_id"] for row in rows] == [{"user_id": u, "item_id": i} for u, i in pairs[:20]]
            assert {row["model_tag"] for row in rows} == {champion}
            scored = [row for row in rows if row["status"] == "ok"]
            assert len(scored) >= 10 and all(0 <= row["score"] <= 1 for row in scored)
            assert all(row["status"] in ("ok", "missing_values") for row in rows)

            unknown = httpx.post(f"{url}/predict", json={"entities": entities([("nobody", 99_999)])}).json()
            assert unknown[0]["status"] == "unknown_entity"
            no_discount = [
                {key: value for key, value in row.items() if key != "discount"} for row in entities(pairs[:1])
            ]
            refused = httpx.post(f"{url}/predict", json={"entities": no_discount})
            assert refused.status_code == 400 and refused.json()["detail"][0]["loc"] == ["entities", 0, "discount"]
            wrong_type = entities(pairs[:1], hour=12)
            wrong_type[0]["hour_of_day"] = "noon"
            refused = httpx.post(f"{url}/predict", json={"entities": wrong_type})
            assert refused.status_code == 400 and refused.json()["detail"][0]["loc"] == ["entities", 0, "hour_of_day"]

            # Features the caller has: the service's features as Feast returns them, on-demand outputs included.
            row = {
                "country": "se",
                "is_premium": True,
                "user_embedding": [0.1, -0.2, 0.3, 0.0],
                "signup_at": (END - timedelta(days=200)).isoformat(),
                "price": 20.0,
                "category": "books",
                "popularity_7d": 12.5,
                "clicks_30d": 3,
                "last_rating": 4.0,
                "discounted_price": 18.0,
                "evening": 1,
                "affinity": 5.5,
            }
            by_features = httpx.post(f"{url}/predict_features", json={"rows": [row]})
            assert by_features.status_code == 200 and by_features.json()[0]["status"] == "ok", by_features.text
            short = httpx.post(f"{url}/predict_features", json={"rows": [{**row, "user_embedding": [0.1]}]})
            assert short.status_code == 400 and short.json()["detail"][0]["loc"] == ["rows", 0, "user_embedding"]

        # `cicloml serve` on the user's spec: traffic, the drift check, a retrain, the switch.
        with ServeProcess(settings, ROOT, tmp_path / "serve.log") as server:
            server.wait_serving(champion, timeout_s=240)
            normal = fresh_window(WINDOW_SECONDS, needed_s=6)
            sent = send_traffic(server.url, entities(pairs))
            assert sent.failed_requests == 0 and sent.model_tags.keys() == {champion}
            wait_for_window(settings, champion, normal, timeout_s=30)

            drifted = fresh_window(WINDOW_SECONDS, needed_s=6)
            sent = send_traffic(server.url, entities(pairs, discount=0.9, hour=21))
            assert sent.failed_requests == 0
            wait_for_window(settings, champion, drifted, timeout_s=30)

            skew = detect_drift(DetectDriftParams(window_start=normal, retrain_in_process=True))
            assert skew.check == "skew" and skew.retrain in ("none", "off")  # skew is alerted, never retrained
            found = detect_drift(DetectDriftParams(window_start=drifted, retrain_in_process=True))
            assert found.check == "drift" and found.drifted
            assert {"discounted_price", "evening"} <= set(found.drifted_features)
            assert found.retrain == "ran" and found.retrain_reason == "drift.retrain_when: any_drift"

            newest = registry.champion()
            assert newest != champion and registry.versions()[-1].tag == newest
            gate = registry.lineage(newest).gate
            assert gate.comparison.difference >= 0.005 and gate.comparison.interval[0] >= -0.01, gate.reasons
            server.wait_serving(newest, timeout_s=240)
            after = httpx.post(f"{server.url}/predict", json={"entities": entities(pairs[:5])}, timeout=30).json()
            assert {row["model_tag"] for row in after} == {newest}

        # What the service logged for the delayed-label join: one column per join key.
        logged = read_prediction_log(settings.prediction_log_dir, champion)
        assert {"user_id", "item_id", "score"} <= set(logged.columns)
        assert set(zip(logged["user_id"], logged["item_id"], strict=True)) <= set(pairs)
