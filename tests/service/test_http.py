"""The prediction service over real HTTP: `bentoml serve` in a subprocess, every endpoint, good and bad input."""

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from cicloml.contract import FeatureContract
from cicloml.feature_store import OnlineFeatureReader, open_store
from cicloml.registry import LoadedModel, ModelRegistry
from cicloml.settings import Settings
from tests.conftest import FEATURE_REPO, ciclo_environment
from tests.service.conftest import bento_server, serving_environment
from tests.service.state import build_served_state, push_rows

pytestmark = pytest.mark.slow

NOW = datetime.now(timezone.utc)
END = NOW.replace(minute=0, second=0, microsecond=0)  # data up to this hour: fresh for the activity view's 2-day TTL
KNOWN_IDS = list(range(1001, 1041))
UNKNOWN_ID = 5
MISSING_ID = 9_000_001  # a profile but no activity: activity features missing
STALE_ID = 9_000_002  # activity older than the view's TTL


@dataclass(frozen=True)
class Served:
    settings: Settings
    champion: LoadedModel
    reader: OnlineFeatureReader


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with ciclo_environment(tmp_path_factory.mktemp("service")) as settings:
        tag = build_served_state(settings, END)
        push_rows(settings, "customer_profile_push", [_profile(MISSING_ID), _profile(STALE_ID)])
        push_rows(settings, "customer_activity_push", [_activity(STALE_ID, NOW - timedelta(days=5))])
        champion = ModelRegistry(settings, "churn").load(tag)
        store = open_store(FEATURE_REPO, settings)
        yield Served(settings, champion, OnlineFeatureReader(store, FeatureContract.resolve(store, "churn_v1")))


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[httpx.Client]:
    log_path = served.settings.state_dir / "serve.log"
    with bento_server(serving_environment(served.settings.state_dir), log_path) as base_url:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            yield client


def _profile(entity: int) -> dict[str, Any]:
    return {
        "customer_id": entity,
        "plan": "basic",
        "contract": "month-to-month",
        "region": "north",
        "payment_method": "card",
        "senior_citizen": 0,
        "event_timestamp": NOW - timedelta(days=1),
        "created_timestamp": NOW,
    }


def _activity(entity: int, at: datetime) -> dict[str, Any]:
    return {
        "customer_id": entity,
        "tenure_days": 400,
        "monthly_charges": 55.0,
        "usage_minutes_7d": 120.0,
        "data_gb_30d": 3.5,
        "support_tickets_30d": 0,
        "payment_failures_90d": 0,
        "days_since_last_login": 2,
        "event_timestamp": at,
        "created_timestamp": at,
    }


def direct_scores(served: Served, frame: pd.DataFrame) -> np.ndarray:
    """The champion called in this process on the same features."""
    return served.champion.pipeline.predict_proba(frame[served.champion.lineage.features.features])[:, 1]


def online_rows(served: Served, ids: list[int]) -> list[dict[str, Any]]:
    """The feature vectors the store holds for `ids` (all must be ok), as the caller of /predict_features sends them."""
    online = served.reader.fetch(ids)
    assert online.ok, online.issues
    features = served.champion.lineage.features.features
    return online.frame()[features].to_dict(orient="records")


# --- health and metrics -----------------------------------------------------------------------------------------


def test_probes_answer_once_the_model_and_store_are_open(client: httpx.Client) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_each_response_carries_its_own_request_id(client: httpx.Client) -> None:
    """From the request's trace span (`bentos.tracing`), recorded or not."""
    responses = [client.post("/predict", json={"entity_ids": [KNOWN_IDS[0]]}) for _ in range(3)]
    request_ids = {response.headers["x-bentoml-request-id"] for response in responses}
    assert len(request_ids) == 3 and "0" * 16 not in request_ids


# --- predict by entity id ---------------------------------------------------------------------------------------


def test_predict_scores_known_entities_like_the_model_called_directly(client: httpx.Client, served: Served) -> None:
    assert served.champion.compiled is not None  # the service scores these 40 rows with the compiled trees
    response = client.post("/predict", json={"entity_ids": KNOWN_IDS})
    assert response.status_code == 200, response.text
    predictions = response.json()
    assert [row["entity_id"] for row in predictions] == KNOWN_IDS
    assert {row["model_tag"] for row in predictions} == {served.champion.tag}
    assert {row["status"] for row in predictions} == {"ok"}

    online = served.reader.fetch(KNOWN_IDS)
    expected = direct_scores(served, online.frame())
    scores = np.array([row["score"] for row in predictions])
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-9)
    threshold = served.champion.lineage.threshold
    assert [row["decision"] for row in predictions] == [bool(value >= threshold) for value in expected]
    assert all(row["reason"] is None for row in predictions)


def test_unknown_missing_and_stale_entities_get_a_status_and_reason_but_no_score(
    client: httpx.Client, served: Served
) -> None:
    ids = [UNKNOWN_ID, KNOWN_IDS[0], MISSING_ID, STALE_ID]
    response = client.post("/predict", json={"entity_ids": ids})
    assert response.status_code == 200, response.text
    unknown, known, missing, stale = response.json()

    assert known["status"] == "ok" and known["score"] is not None
    assert unknown == {
        "entity_id": UNKNOWN_ID,
        "status": "unknown_entity",
        "score": None,
        "decision": None,
        "reason": f"no features stored for entity {UNKNOWN_ID}",
        "model_tag": served.champion.tag,
    }
    assert (missing["status"], missing["score"], missing["decision"]) == ("missing_values", None, None)
    assert "tenure_days" in missing["reason"] and "missing" in missing["reason"]
    assert (stale["status"], stale["score"], stale["decision"]) == ("stale_values", None, None)
    assert "monthly_charges" in stale["reason"] and "older than their view's TTL" in stale["reason"]


# --- predict from supplied features -----------------------------------------------------------------------------


def test_predict_features_scores_supplied_vectors_like_the_model_called_directly(
    client: httpx.Client, served: Served
) -> None:
    rows = online_rows(served, KNOWN_IDS[:10])
    response = client.post("/predict_features", json={"rows": rows})
    assert response.status_code == 200, response.text
    predictions = response.json()
    assert all(row["status"] == "ok" and row["entity_id"] is None for row in predictions)
    expected = direct_scores(served, pd.DataFrame(rows))
    np.testing.assert_allclose([row["score"] for row in predictions], expected, rtol=0, atol=1e-9)
    # The same vectors by id give the same scores: the two endpoints agree.
    by_id = client.post("/predict", json={"entity_ids": KNOWN_IDS[:10]}).json()
    np.testing.assert_allclose([row["score"] for row in predictions], [row["score"] for row in by_id], atol=1e-12)


# --- the batchable variant --------------------------------------------------------------------------------------


def test_predict_batch_answers_each_concurrent_caller_with_its_own_rows(client: httpx.Client) -> None:
    """Concurrent requests are merged into batches by BentoML and split again: each caller gets exactly its ids."""
    requests = [KNOWN_IDS[start : start + size] for start, size in zip(range(0, 36, 3), [1, 2, 3, 4] * 3, strict=True)]
    requests.append([UNKNOWN_ID, KNOWN_IDS[0]])
    expected = {tuple(ids): client.post("/predict", json={"entity_ids": ids}).json() for ids in requests}

    def call(ids: list[int]) -> tuple[int, Any]:
        response = client.post("/predict_batch", json={"entity_ids": ids})
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        answers = list(pool.map(call, requests))
    for ids, (status, predictions) in zip(requests, answers, strict=True):
        assert status == 200, predictions
        assert predictions == expected[tuple(ids)]


# --- bad input: 4xx naming the field, never 500 -----------------------------------------------------------------


def _feature_row(served: Served) -> dict[str, Any]:
    return online_rows(served, [KNOWN_IDS[0]])[0]


Change = Callable[[dict[str, Any]], dict[str, Any]]


def _with(**changes: Any) -> Change:
    return lambda row: {**row, **changes}


def _without(name: str) -> Change:
    return lambda row: {key: value for key, value in row.items() if key != name}


INVALID_IDS = [
    # (body, loc, message fragment)
    pytest.param({"entity_ids": []}, ["entity_ids"], "at least 1 item", id="empty-list"),
    pytest.param({}, ["entity_ids"], "Field required", id="missing-field"),
    pytest.param({"entity_ids": ["1001"]}, ["entity_ids", 0], "valid integer", id="id-as-string"),
    pytest.param({"entity_ids": [1001.5]}, ["entity_ids", 0], "valid integer", id="id-as-float"),
    pytest.param({"entity_ids": [True]}, ["entity_ids", 0], "valid integer", id="id-as-boolean"),
    pytest.param({"entity_ids": [2**64]}, ["entity_ids", 0], "less than or equal to", id="id-beyond-int64"),
    pytest.param({"entity_ids": 1001}, ["entity_ids"], "valid array", id="not-a-list"),
    pytest.param({"entity_ids": list(range(1001))}, ["entity_ids"], "at most 1000", id="too-many-ids"),
    pytest.param([1001], [], "object", id="body-not-an-object"),
]


@pytest.mark.parametrize("path", ["/predict", "/predict_batch"])
@pytest.mark.parametrize(("body", "loc", "message"), INVALID_IDS)
def test_invalid_ids_are_400_naming_the_field(
    client: httpx.Client, path: str, body: Any, loc: list[Any], message: str
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 400, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == loc
    assert message in problem["msg"]


INVALID_ROWS = [
    pytest.param(_with(monthly_charges="50.5"), ["monthly_charges"], "valid number", id="number-as-string"),
    pytest.param(_with(senior_citizen=True), ["senior_citizen"], "valid number", id="number-as-boolean"),
    pytest.param(_with(monthly_charges=None), ["monthly_charges"], "valid number", id="null-feature"),
    pytest.param(_with(plan=7), ["plan"], "valid string", id="category-as-number"),
    pytest.param(_without("tenure_days"), ["tenure_days"], "Field required", id="missing-feature"),
    pytest.param(_with(favourite_colour="blue"), ["favourite_colour"], "Extra inputs", id="unknown-feature"),
]


@pytest.mark.parametrize(("change", "loc", "message"), INVALID_ROWS)
def test_invalid_feature_rows_are_400_naming_the_row_and_feature(
    client: httpx.Client, served: Served, change: Change, loc: list[str], message: str
) -> None:
    good = _feature_row(served)
    response = client.post("/predict_features", json={"rows": [good, change(good)]})
    assert response.status_code == 400, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["rows", 1, *loc]
    assert message in problem["msg"]


def test_non_finite_numbers_are_refused(client: httpx.Client, served: Served) -> None:
    # JSON has no NaN, but Python's json (and pydantic's parser) accept the extension: refuse it explicitly.
    body = json.dumps({"rows": [_feature_row(served) | {"monthly_charges": float("nan")}]})
    response = client.post("/predict_features", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["rows", 0, "monthly_charges"]
    assert "finite number" in problem["msg"]


def test_empty_feature_rows_are_400(client: httpx.Client) -> None:
    response = client.post("/predict_features", json={"rows": []})
    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"] == ["rows"]


@pytest.mark.parametrize("path", ["/predict", "/predict_batch", "/predict_features"])
def test_malformed_json_is_400(client: httpx.Client, path: str) -> None:
    response = client.post(path, content=b'{"entity_ids": [1001', headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    (problem,) = response.json()["detail"]
    assert problem["type"] == "json_invalid" and "Invalid JSON" in problem["msg"]


def test_pickle_payloads_are_refused(client: httpx.Client) -> None:
    response = client.post(
        "/predict", content=b"\x80\x04N.", headers={"content-type": "application/vnd.bentoml+pickle"}
    )
    assert response.status_code == 415
    # BentoML 1.4 wraps its own 4xx errors in a list (a stray tuple in its error handler).
    assert "not allowed" in json.dumps(response.json())


def test_oversized_bodies_are_413_with_or_without_content_length(client: httpx.Client) -> None:
    body = json.dumps({"entity_ids": [1001] * 300_000}).encode()  # ~1.8 MB, over the 1 MiB default
    declared = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert declared.status_code == 413
    assert declared.json() == {"error": "request body is larger than the limit of 1048576 bytes"}

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    chunked = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413


def test_the_worker_survives_all_of_it_and_metrics_count_lookups_and_statuses(client: httpx.Client) -> None:
    assert client.post("/predict", json={"entity_ids": [UNKNOWN_ID]}).status_code == 200
    assert client.get("/readyz").status_code == 200
    metrics = client.get("/metrics").text
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['cicloml_feature_lookup_seconds_count{feature_service="churn_v1"}'] >= 1
    assert samples['cicloml_prediction_rows_total{endpoint="predict",status="unknown_entity"}'] >= 1
    assert samples['cicloml_prediction_rows_total{endpoint="predict",status="ok"}'] >= len(KNOWN_IDS)
    # BentoML's own request metrics, including the 4xx answers above.
    requests = [name for name in samples if name.startswith("bentoml_service_request_total")]
    assert any('http_response_code="400"' in name for name in requests)
    assert not any('http_response_code="500"' in name and value > 0 for name, value in samples.items())


# --- bearer-token auth (on when the api_token setting is set) -----------------------------------------------------

TOKEN = "test-token-4f1c"


@pytest.fixture(scope="module")
def auth_client(served: Served) -> Iterator[httpx.Client]:
    environment = serving_environment(served.settings.state_dir, api_token=TOKEN)
    with bento_server(environment, served.settings.state_dir / "serve-auth.log") as base_url:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            yield client


@pytest.mark.parametrize(
    ("headers", "error"),
    [({}, "missing bearer token"), ({"Authorization": "Bearer wrong"}, "invalid bearer token")],
    ids=["missing", "wrong"],
)
def test_with_auth_on_a_missing_or_wrong_token_is_401(
    auth_client: httpx.Client, headers: dict[str, str], error: str
) -> None:
    response = auth_client.post("/predict", json={"entity_ids": KNOWN_IDS[:1]}, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": error}


def test_with_auth_on_the_token_opens_the_api_and_metrics_and_probes_stay_open(auth_client: httpx.Client) -> None:
    response = auth_client.post(
        "/predict", json={"entity_ids": KNOWN_IDS[:1]}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200 and response.json()[0]["status"] == "ok"
    for path in ("/livez", "/readyz"):
        assert auth_client.get(path).status_code == 200
    assert auth_client.get("/metrics").status_code == 401  # what the service counts is not for strangers
    assert auth_client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
