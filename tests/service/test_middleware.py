"""The service's ASGI middleware in process (fast), on a tiny app that echoes the body it received."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bentos.middleware import BearerTokenAuth, BodySizeLimit, KnownFieldsOnly, TruthfulOpenAPI
from bentos.openapi import truthful


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def call(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(run())


@pytest.fixture
def guarded() -> Any:
    return BearerTokenAuth(BodySizeLimit(echo, max_bytes=100), token="s3cret")


def test_the_right_token_passes_and_the_body_arrives_intact(guarded: Any) -> None:
    response = call(guarded, "POST", "/predict", content=b"x" * 100, headers={"Authorization": "Bearer s3cret"})
    assert (response.status_code, response.content) == (200, b"x" * 100)


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, "missing bearer token"),
        ({"Authorization": "Bearer wrong"}, "invalid bearer token"),
        ({"Authorization": "s3cret"}, "invalid bearer token"),
        ({"Authorization": "Basic s3cret"}, "invalid bearer token"),
    ],
)
def test_a_missing_or_wrong_token_is_401(guarded: Any, headers: dict[str, str], error: str) -> None:
    response = call(guarded, "POST", "/predict", content=b"{}", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": error}
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/healthz"])
def test_probes_need_no_token(guarded: Any, path: str) -> None:
    assert call(guarded, "GET", path).status_code == 200


def test_metrics_need_the_token_when_one_is_set(guarded: Any) -> None:
    assert call(guarded, "GET", "/metrics").status_code == 401
    assert call(guarded, "GET", "/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_auth_is_checked_before_the_body_size(guarded: Any) -> None:
    assert call(guarded, "POST", "/predict", content=b"x" * 1000).status_code == 401


def test_a_declared_length_over_the_limit_is_413_before_reading() -> None:
    response = call(BodySizeLimit(echo, max_bytes=10), "POST", "/predict", content=b"x" * 11)
    assert response.status_code == 413
    assert response.json() == {"error": "request body is larger than the limit of 10 bytes"}


def test_a_chunked_body_over_the_limit_is_413() -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: sent in pieces
        for _ in range(5):
            yield b"x" * 4

    response = call(BodySizeLimit(echo, max_bytes=10), "POST", "/predict", content=chunks())
    assert response.status_code == 413


def test_a_chunked_body_within_the_limit_arrives_whole() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in (b"ab", b"cd", b"ef"):
            yield chunk

    response = call(BodySizeLimit(echo, max_bytes=10), "POST", "/predict", content=chunks())
    assert (response.status_code, response.content) == (200, b"abcdef")


def test_a_malformed_content_length_is_400() -> None:
    app = BodySizeLimit(echo, max_bytes=10)
    scope = {"type": "http", "path": "/predict", "headers": [(b"content-length", b"ten")]}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 400


def test_an_empty_token_is_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="non-empty token"):
        BearerTokenAuth(echo, token="")


FIELDS = {"/predict": frozenset({"entity_ids"})}


def test_an_unknown_top_level_field_is_a_400_naming_it_and_a_known_body_arrives_intact() -> None:
    app = KnownFieldsOnly(echo, FIELDS)
    refused = call(app, "POST", "/predict", json={"entity_ids": [1], "entity_idz": [2]})
    assert refused.status_code == 400
    assert refused.json()["detail"] == [
        {"type": "extra_forbidden", "loc": ["entity_idz"], "msg": "Extra inputs are not permitted"}
    ]
    assert call(app, "POST", "/predict", json={"entity_ids": [1]}).json() == {"entity_ids": [1]}
    # Not JSON, or not an object: left to the service's own validation; other paths are not looked at.
    assert call(app, "POST", "/predict", content=b"[1, 2").content == b"[1, 2"
    assert call(app, "POST", "/other", json={"anything": 1}).status_code == 200


def test_the_openapi_document_says_what_the_service_answers() -> None:
    generated = {
        "paths": {
            "/predict": {
                "post": {
                    "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                    "responses": {"200": {}, "400": {"description": "detail as a string"}},
                }
            },
            "/readyz": {"get": {"responses": {"200": {}}}},
        }
    }

    async def bentoml_docs(scope: Any, receive: Any, send: Any) -> None:
        body = json.dumps(generated).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    served = call(TruthfulOpenAPI(bentoml_docs, lambda doc: truthful(doc, token=True)), "GET", "/docs.json").json()
    predict = served["paths"]["/predict"]["post"]
    assert predict["requestBody"]["required"] is True
    assert predict["requestBody"]["content"]["application/json"]["schema"]["additionalProperties"] is False
    assert {"400", "401", "413", "415"} <= set(predict["responses"])
    bad_request = served["components"]["schemas"]["BadRequest"]["properties"]["detail"]["anyOf"]
    assert bad_request[0]["type"] == "array" and bad_request[1]["type"] == "string"
    assert "401" not in served["paths"]["/readyz"]["get"]["responses"]  # probes stay open
    assert "401" not in truthful(generated, token=False)["paths"]["/predict"]["post"]["responses"]
